import Kiln
import KilnIR

/// Reads a folder of calibration samples for `kiln compile --quantize int8 --calibration DIR`.
///
/// Two layouts, one per folder:
/// * a folder per sample, holding one `INPUT.npy` per model input (`DIR/0001/input_ids.npy`,
///   `DIR/0001/attention_mask.npy`, …); an input name's characters other than `A-Z a-z 0-9 . _ -` are
///   written `_`;
/// * for a model with one input, one `.npy` file per sample (`DIR/0001.npy`, `DIR/0002.npy`, …).
/// Samples are taken in name order; names starting with `.` are ignored. An empty folder, a folder mixing
/// both layouts, a file that is not `.npy`, an empty sample folder or a file that is not a valid `.npy` is
/// an `.invalidArgument` (or `.io`) error naming the path; whether the files fit the model's inputs is
/// checked by the compiler (`Compiler.calibrationInputs`), which names the file too.
public enum CalibrationDirectory {
    /// The samples in the folder at `path`.
    public static func load(path: String) throws -> [CalibrationSample] {
        guard FileSystem.exists(path) else { throw KilnError(.invalidArgument, "calibration folder '\(path)' does not exist") }
        guard FileSystem.isDirectory(path) else { throw KilnError(.invalidArgument, "calibration folder '\(path)' is not a folder") }
        let names = try FileSystem.list(path).filter { !$0.hasPrefix(".") }
        guard !names.isEmpty else { throw KilnError(.invalidArgument, "calibration folder '\(path)' is empty: it needs one folder (or, for a one-input model, one .npy file) per sample") }
        let folders = names.filter { FileSystem.isDirectory(path + "/" + $0) }
        if !folders.isEmpty && folders.count != names.count {
            let file = names.first { !folders.contains($0) }!
            throw KilnError(.invalidArgument, "calibration folder '\(path)' mixes sample folders with files ('\(path)/\(file)'): use one layout")
        }
        if folders.isEmpty {
            return try names.map { name in
                let file = path + "/" + name
                try requireNPY(file)
                return CalibrationSample(name: file, inputs: ["": try NPY.read(path: file)], files: ["": file])
            }
        }
        return try folders.map { folder in
            let sampleFolder = path + "/" + folder
            let files = try FileSystem.list(sampleFolder).filter { !$0.hasPrefix(".") }
            guard !files.isEmpty else { throw KilnError(.invalidArgument, "calibration sample '\(sampleFolder)' is empty: it needs one INPUT.npy per model input") }
            var inputs: [String: Tensor] = [:], paths: [String: String] = [:]
            for name in files {
                let file = sampleFolder + "/" + name
                try requireNPY(file)
                let key = String(name.dropLast(4))
                inputs[key] = try NPY.read(path: file)
                paths[key] = file
            }
            return CalibrationSample(name: sampleFolder, inputs: inputs, files: paths)
        }
    }

    private static func requireNPY(_ file: String) throws {
        guard file.hasSuffix(".npy"), !FileSystem.isDirectory(file) else {
            throw KilnError(.invalidArgument, "calibration file '\(file)' is not a .npy file")
        }
    }
}
