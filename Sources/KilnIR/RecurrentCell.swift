/// The recurrent cells of ONNX's `RNN`, `GRU` and `LSTM` operators: the facts of their definitions that
/// every backend running them needs.
public enum RecurrentCell: Sendable {
    case rnn, gru, lstm

    /// The cell of the ONNX operator called `opName` (`RNN`, `GRU` or `LSTM`), or nil.
    public init?(opName: String) {
        switch opName {
        case "RNN": self = .rnn
        case "GRU": self = .gru
        case "LSTM": self = .lstm
        default: return nil
        }
    }

    /// Gate blocks stacked in the W, R and B inputs (RNN: 1; GRU: z, r, h; LSTM: i, o, f, c).
    public var gates: Int {
        switch self {
        case .rnn: 1
        case .gru: 3
        case .lstm: 4
        }
    }

    /// ONNX's default activation functions of one direction (also how many the `activations` attribute
    /// lists per direction).
    public var defaultActivations: [String] {
        switch self {
        case .rnn: ["Tanh"]
        case .gru: ["Sigmoid", "Tanh"]
        case .lstm: ["Sigmoid", "Tanh", "Tanh"]
        }
    }
}
