import Foundation
import Testing

/// The layering of Documentation/Architecture.md, enforced on the real `import` lines of every target under
/// Sources/ and on the dependencies Package.swift declares: dependencies point down, a backend never imports a
/// frontend, the runtime never imports a frontend, a pass or a backend, and every target declares what it imports.
@Suite struct LayeringTests {
    /// The package targets each target may import. A target missing here fails the test: a new target must
    /// first be given its place in the architecture.
    static let allowed: [String: Set<String>] = [
        "KilnIR": [],
        "KilnFrontends": ["KilnIR"],
        "KilnPasses": ["KilnIR"],
        "KilnFormat": ["KilnIR", "CZstd", "CKilnChecksum", "Crypto"],
        "KilnBackend": ["KilnIR", "KilnFormat", "CKilnABI"],
        "KilnPluginHost": ["KilnIR", "KilnFormat", "KilnBackend", "CKilnABI"],
        "KilnReference": ["KilnIR", "KilnBackend"],
        "KilnCPU": ["KilnIR", "KilnBackend", "CKilnKernels"],
        "KilnGPU": ["KilnIR", "KilnBackend"],  // OpenCL is dlopen'ed: no C target, no link
        "KilnCompiler": ["KilnIR", "KilnFrontends", "KilnPasses", "KilnFormat", "KilnBackend"],
        "KilnRuntime": ["KilnIR", "KilnFormat", "KilnBackend"],
        "Kiln": ["KilnIR", "KilnFrontends", "KilnPasses", "KilnFormat", "KilnBackend", "KilnPluginHost", "KilnReference",
                 "KilnCPU", "KilnGPU", "KilnCompiler", "KilnRuntime"],
        "KilnTooling": ["Kiln", "KilnIR", "KilnFormat", "KilnFrontends", "KilnRuntime"],
        "KilnC": ["Kiln", "KilnIR", "KilnFormat", "KilnFrontends", "KilnBackend", "KilnPluginHost", "KilnCompiler", "KilnRuntime", "KilnTooling", "CKilnABI"],
        "KilnCLI": ["Kiln", "KilnTooling", "ArgumentParser"],
        "CKilnKernels": [], "CKilnABI": [], "CZstd": [], "CKilnChecksum": [],
        "KilnDSP": [],  // plugins/dsp: C kernels of the DSP sample plugin; nothing in the SDK imports it
    ]

    /// Modules of the toolchain or of dependencies that any target may import.
    static let everywhere: Set<String> = ["Glibc", "Darwin", "FoundationEssentials", "Synchronization", "SwiftProtobuf"]

    /// Targets on the runtime path: they may import `Foundation` only as the fallback of
    /// `#if canImport(FoundationEssentials)` (full Foundation brings ICU, ~60 MB).
    static let runtimePath: Set<String> = ["KilnIR", "KilnFormat", "KilnBackend", "KilnPluginHost", "KilnReference", "KilnCPU", "KilnGPU", "KilnRuntime", "KilnC"]

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Each target's folder under Sources/ (Sources/X, or Sources/Backends/X).
    static func targetFolders() throws -> [String: URL] {
        let sources = root.appendingPathComponent("Sources")
        var result: [String: URL] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: sources.path) where !name.hasPrefix(".") {
            let folder = sources.appendingPathComponent(name)
            if name == "Backends" {
                for backend in try FileManager.default.contentsOfDirectory(atPath: folder.path) where !backend.hasPrefix(".") {
                    result[backend] = folder.appendingPathComponent(backend)
                }
            } else {
                result[name] = folder
            }
        }
        return result
    }

    /// Every module `import`ed by the Swift files in `folder`, with the file that imports it.
    static func imports(in folder: URL) throws -> [(module: String, file: String, guarded: Bool)] {
        var found: [(String, String, Bool)] = []
        let files = FileManager.default.enumerator(atPath: folder.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        for file in files {
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            let guarded = text.contains("canImport(FoundationEssentials)")
            for line in text.split(separator: "\n") {
                var words = line.split(separator: " ").map(String.init)
                while let first = words.first, first.hasPrefix("@") { words.removeFirst() }
                guard words.count >= 2, words[0] == "import" else { continue }
                let kinds: Set<String> = ["struct", "class", "enum", "protocol", "func", "var", "let", "typealias"]
                let path = kinds.contains(words[1]) && words.count >= 3 ? words[2] : words[1]
                found.append((String(path.split(separator: ".")[0]), file, guarded))
            }
        }
        return found
    }

    @Test func everyImportIsAnEdgeTheArchitectureAllows() throws {
        let folders = try Self.targetFolders()
        #expect(folders.count >= 14, "found only \(folders.keys.sorted())")
        var violations: [String] = []
        for (target, folder) in folders.sorted(by: { $0.key < $1.key }) {
            guard let allowed = Self.allowed[target] else {
                violations.append("\(target): not in the architecture's table (add it to LayeringTests.allowed and Documentation/Architecture.md)")
                continue
            }
            for (module, file, guarded) in try Self.imports(in: folder) {
                if module == target || allowed.contains(module) || Self.everywhere.contains(module) { continue }
                if module == "Foundation", !Self.runtimePath.contains(target) || guarded { continue }
                violations.append("\(target)/\(file) imports \(module)")
            }
        }
        #expect(violations.isEmpty, "edges the architecture does not allow:\n\(violations.joined(separator: "\n"))")
    }

    @Test func theRuntimeNeverReachesAFrontendAPassOrABackend() {
        for forbidden in ["KilnFrontends", "KilnPasses", "KilnReference", "KilnCPU", "KilnGPU", "KilnCompiler"] {
            #expect(!Self.allowed["KilnRuntime"]!.contains(forbidden))
        }
        for backend in ["KilnReference", "KilnCPU", "KilnGPU"] {
            #expect(Self.allowed[backend]!.isDisjoint(with: ["KilnFrontends", "KilnPasses", "KilnCompiler", "KilnRuntime", "Kiln"]))
        }
        #expect(!Self.allowed["KilnCompiler"]!.contains("KilnReference") && !Self.allowed["KilnCompiler"]!.contains("KilnCPU"))
    }

    /// Package.swift's dependencies of each target (package targets and products), parsed from its text.
    static func declaredDependencies() throws -> [String: Set<String>] {
        let text = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        var result: [String: Set<String>] = [:]
        var rest = Substring(text)
        while let start = rest.firstRange(of: /\.(target|executableTarget|systemLibrary)\(/) {
            // The call's text up to its balanced closing parenthesis.
            var depth = 0
            var end = start.upperBound
            var index = rest.index(before: start.upperBound)
            while index < rest.endIndex {
                if rest[index] == "(" { depth += 1 } else if rest[index] == ")" { depth -= 1; if depth == 0 { end = index; break } }
                index = rest.index(after: index)
            }
            let call = rest[start.upperBound..<end]
            if let name = call.firstMatch(of: /name: "([^"]+)"/)?.1 {
                var deps = Set<String>()
                if let list = call.firstMatch(of: /dependencies: \[([^\]]*)\]/)?.1 {
                    for match in list.matches(of: /(?:name: )?"([^"]+)"/) where !list[match.range].hasPrefix("package") {
                        deps.insert(String(match.1))
                    }
                    deps.subtract(list.matches(of: /package: "([^"]+)"/).map { String($0.1) })
                }
                result[String(name)] = deps
            }
            rest = rest[end...]
        }
        return result
    }

    @Test func everyTargetDeclaresWhatItImports() throws {
        let declared = try Self.declaredDependencies()
        var missing: [String] = []
        for (target, folder) in try Self.targetFolders().sorted(by: { $0.key < $1.key }) {
            guard let deps = declared[target] else {
                missing.append("\(target): no target of that name in Package.swift")
                continue
            }
            let modules = Set(try Self.imports(in: folder).map(\.module)).subtracting([target]).subtracting(Self.everywhere.subtracting(["SwiftProtobuf"]))
                .subtracting(["Foundation"])
            for module in modules.sorted() where !deps.contains(module) {
                missing.append("\(target) imports \(module) but Package.swift does not declare it")
            }
        }
        #expect(missing.isEmpty, "\(missing.joined(separator: "\n"))")
        #expect(declared["KilnCompiler"]?.contains("KilnReference") == false, "the compiler takes its evaluator by injection")
        #expect(declared["KilnRuntime"]?.contains("KilnReference") == false)
    }
}
