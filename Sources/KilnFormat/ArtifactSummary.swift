import KilnIR

extension Artifact {
    /// What an artifact says about itself, as plain Swift values: who produced it from what, for which
    /// targets, its signature, its partitions and where each node runs. This is the public view of the
    /// manifest (whose protobuf types are Kiln's own business).
    public struct Summary: Sendable {
        /// One partition: the backend that runs it and what it was compiled into.
        public struct Partition: Sendable, Hashable {
            /// The backend's name (`kiln.cpu`, `acme.npu`).
            public var backend: String
            /// The backend's version when it compiled the payload.
            public var backendVersion: String
            /// What a loader must be able to read (`kiln.cpu/1/x86_64-avx2`).
            public var compat: String
            /// Indices of the graph's top-level nodes it runs, ascending.
            public var nodes: [Int]
            /// The values it reads from outside itself.
            public var inputs: [String]
            /// The values it produces for later partitions or the graph's outputs.
            public var outputs: [String]
            /// The index of its payload section, or nil when it has no payload.
            public var payloadSection: Int?
        }

        /// One node's line of the partition report.
        public struct ReportEntry: Sendable, Hashable {
            /// Index of the node among the graph's top-level nodes.
            public var node: Int
            /// The backend that runs it.
            public var backend: String
            /// Why (`claimed by kiln.cpu`, `rejected by kiln.cpu: …; fallback kiln.reference`).
            public var reason: String
        }

        /// The producing tool and its version (`kiln`, `0.1.0`).
        public var producer: (name: String, version: String)
        /// The source model's format (`onnx`, `kiln-ir`).
        public var sourceFormat: String
        /// The source model's file name, when it was compiled from a file.
        public var sourceFileName: String
        /// The SHA-256 of the source model's bytes (empty when unknown).
        public var sourceSHA256: [UInt8]
        /// The targets it was compiled for (`host`).
        public var targets: [String]
        /// The optimization level the graph was compiled at.
        public var optLevel: Int
        /// The inputs a caller supplies, with their types.
        public var inputs: [Value]
        /// The outputs it returns, with their types.
        public var outputs: [Value]
        /// Its partitions, in execution order.
        public var partitions: [Partition]
        /// Where every node runs and why.
        public var report: [ReportEntry]
        /// The metadata the user attached at compile time.
        public var metadata: [String: String]
    }

    /// The manifest as plain Swift values. A signature type the runtime cannot read is `.invalidArtifact`.
    public func summary() throws -> Summary {
        let m = manifest
        let decoder = Decoder(resolve: nil)
        return Summary(
            producer: (m.producer.name, m.producer.version),
            sourceFormat: m.source.format, sourceFileName: m.source.fileName, sourceSHA256: [UInt8](m.source.sha256),
            targets: m.targets.map(\.name), optLevel: Int(m.optLevel),
            inputs: try m.inputs.map { try decoder.decode($0, what: "\(origin): manifest input") },
            outputs: try m.outputs.map { try decoder.decode($0, what: "\(origin): manifest output") },
            partitions: m.partitions.map { p in
                Summary.Partition(backend: p.backend, backendVersion: p.backendVersion, compat: p.compat, nodes: p.nodes.map { Int($0) },
                                  inputs: p.inputs, outputs: p.outputs, payloadSection: p.hasPayloadSection ? Int(p.payloadSection) : nil)
            },
            report: m.partitionReport.entries.map { Summary.ReportEntry(node: Int($0.node), backend: $0.backend, reason: $0.reason) },
            metadata: m.userMetadata)
    }
}
