import KilnIR

/// Imports a model file of any format Kiln reads, recognized by its contents (not its name): an XGBoost
/// model as JSON (an object with a `"learner"`) or UBJSON (starting with `{` and a UBJSON length marker), a
/// LightGBM text model (starting with `tree` or `version=`), otherwise ONNX.
public enum ModelFile {
    /// The formats `ModelFile` recognizes.
    public enum Format: String, Sendable {
        case onnx
        case xgboostJSON = "xgboost-json"
        case xgboostUBJSON = "xgboost-ubjson"
        case lightGBM = "lightgbm"
    }

    /// The format of `bytes`, judged from their first bytes.
    public static func format(of bytes: UnsafeRawBufferPointer) -> Format {
        var i = 0
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        guard i < bytes.count else { return .onnx }
        if bytes[i] == UInt8(ascii: "{") {
            // UBJSON: `{` then a key length marker (i, U, I, l, L) or a container option ($, #).
            if i == 0, bytes.count > 1, Array("iUIlL$#".utf8).contains(bytes[1]) { return .xgboostUBJSON }
            return .xgboostJSON
        }
        let head = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[i..<min(bytes.count, i + 16)]), as: UTF8.self)
        if head.hasPrefix("tree\n") || head.hasPrefix("tree\r\n") || head.hasPrefix("version=") { return .lightGBM }
        return .onnx
    }

    /// Imports the model at `path` in whichever format its contents are; returns it with the format.
    public static func importModel(path: String) throws -> (model: Model, format: Format) {
        let file = try MappedFile(path: path)
        let bytes = file.bytes
        let format = format(of: bytes)
        let model: Model
        switch format {
        case .onnx: model = try ONNXImporter().importModel(path: path)
        case .xgboostJSON: model = try withExtendedLifetime(file) { try XGBoostImporter().importModel(bytes: bytes, binary: false, source: path) }
        case .xgboostUBJSON: model = try withExtendedLifetime(file) { try XGBoostImporter().importModel(bytes: bytes, binary: true, source: path) }
        case .lightGBM: model = try withExtendedLifetime(file) { try LightGBMImporter().importModel(bytes: bytes, source: path) }
        }
        return (model, format)
    }
}
