import Kiln
import KilnTooling

/// The facts `kiln inspect` prints about a `.kiln` artifact's container and manifest.
struct ArtifactSummary {
    let artifact: Artifact
    /// Whether the partition report lists every node (`kiln inspect --partitions`) or only a summary.
    let fullReport: Bool

    init(_ artifact: Artifact, fullReport: Bool = false) {
        self.artifact = artifact
        self.fullReport = fullReport
    }

    /// The manifest's partition report, with node names and ops from the graph when it decodes.
    var report: PartitionReport {
        let graph = (try? artifact.model())?.graph
        let entries = artifact.manifest.partitionReport.entries.map { e in
            let node = graph.flatMap { Int(e.node) < $0.nodes.count ? $0.nodes[Int(e.node)] : nil }
            return PartitionReport.Entry(node: Int(e.node), name: node?.name ?? "", op: node?.op.description ?? "",
                                         backend: e.backend, reason: e.reason)
        }
        return PartitionReport(entries: entries, partitions: artifact.manifest.partitions.map(\.backend))
    }

    private func names(_ values: [String]) -> String {
        values.isEmpty ? "(none)" : values.prefix(8).joined(separator: ", ") + (values.count > 8 ? ", … (\(values.count))" : "")
    }

    /// The report, one fact per line.
    var text: String {
        let m = artifact.manifest
        let bytes = ModelSummary(Model(graph: Graph()))
        var lines: [String] = []
        lines.append("artifact: format \(artifact.formatVersion.major).\(artifact.formatVersion.minor), flags 0x\(hex(artifact.flags, width: 8))")
        lines.append("producer: \(m.producer.name.isEmpty ? "(none)" : m.producer.name) \(m.producer.version)")
        let digest = Array(m.source.sha256)
        lines.append("source: \(m.source.format.isEmpty ? "(unknown)" : m.source.format) \(m.source.fileName.isEmpty ? "(no file name)" : m.source.fileName), sha256 \(digest.isEmpty ? "(none)" : SHA256.hex(digest))")
        let targets = m.targets.map { t in t.name + (t.requiredFeatures.isEmpty ? "" : " (requires \(t.requiredFeatures.joined(separator: ", ")))") }
        lines.append("targets: \(targets.isEmpty ? "(none)" : targets.joined(separator: ", "))")
        lines.append("opt level: \(m.optLevel)")
        for (key, value) in m.userMetadata.sorted(by: { $0.key < $1.key }) {
            lines.append("user metadata: \(key) = \(value)")
        }
        lines.append("partitions (\(m.partitions.count)):")
        for (i, p) in m.partitions.enumerated() {
            let payload = p.hasPayloadSection ? "payload section \(p.payloadSection)" : "no payload"
            lines.append("  \(i): \(p.backend) \(p.backendVersion), compat \(p.compat), \(p.nodes.count) node\(p.nodes.count == 1 ? "" : "s"), \(payload)")
            if m.partitions.count > 1 {
                lines.append("     in: \(names(p.inputs)); out: \(names(p.outputs))")
            }
        }
        lines += PartitionReportText.lines(report, full: fullReport)
        lines.append("signature:")
        for v in m.inputs { lines.append("  input \(v.name): \(typeText(v))") }
        for v in m.outputs { lines.append("  output \(v.name): \(typeText(v))") }
        lines.append("sections (\(artifact.sections.count)):")
        for (i, s) in artifact.sections.enumerated() {
            let kind = s.kind?.description ?? "kind \(s.kindCode) (unknown)"
            let codec = s.codec?.description ?? "codec \(s.codecCode)"
            lines.append("  \(i): \(kind), \(codec), stored \(bytes.byteText(Int(clamping: s.storedLength))), raw \(bytes.byteText(Int(clamping: s.rawLength))), crc32c \(hex(s.checksum, width: 8)), offset \(s.offset)")
        }
        // Ed25519 signatures (format 1.1): who signed and whether it matches; trust is `kiln verify`'s question.
        switch Result(catching: { try artifact.signatures() }) {
        case .success(let signatures) where signatures.isEmpty:
            lines.append("signed: no")
        case .success(let signatures):
            for s in signatures { lines.append("signed: by key \(s.publicKey.keyIDText), \(s.isValid ? "valid" : "INVALID (does not match the contents)")") }
        case .failure(let error):
            lines.append("signed: unreadable signature section (\((error as? KilnError)?.message ?? "\(error)"))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The type of a signature value (`f32[1,3,224,224]`), decoded through the IR.
    private func typeText(_ value: Kiln_Ir_Value) -> String {
        var graph = Kiln_Ir_Graph()
        graph.inputs = [value]
        guard let decoded = try? IRProto.graph(from: graph), let type = decoded.inputs.first?.type else { return "?" }
        return "\(type)"
    }

    private func hex(_ v: UInt32, width: Int) -> String {
        let digits = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
