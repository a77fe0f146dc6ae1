import KilnIR

/// What happens to a node that no selected backend takes.
public enum FallbackPolicy: String, Sendable, CaseIterable, CustomStringConvertible {
    /// It runs on the fallback backend; the report says so.
    case allow
    /// It runs on the fallback backend and the plan carries a warning listing such nodes.
    case warn
    /// Partitioning fails with an error listing every such node and why each selected backend rejected it.
    case deny

    /// `allow`, `warn` or `deny`.
    public var description: String { rawValue }
}

/// How the host splits a graph among backends.
public struct PartitionOptions: Sendable, Hashable {
    /// Groups of a selected backend with fewer nodes than this run on the fallback instead (1: keep every
    /// group); nil: each backend's own `Backend.minimumGroupSize`.
    public var minGroupSize: Int?
    /// Ops never given to a selected backend: `Softmax` (any domain) or `domain.Op` (`com.microsoft.Gelu`,
    /// `ai.onnx.Softmax`).
    public var deny: [String]
    /// What to do with nodes that no selected backend takes.
    public var fallback: FallbackPolicy
    /// Nodes a backend claimed and then refused when compiling or preparing them (backend name → node index →
    /// why): the partitioner treats them as that backend's rejections, and the report says the backend's
    /// compile refused them. `Partitioner.plan(_:building:)` fills it in.
    public var extraRejections: [String: [Int: String]]

    /// Options; by default each backend's own minimum group size, nothing is denied and fallbacks are warned about.
    public init(minGroupSize: Int? = nil, deny: [String] = [], fallback: FallbackPolicy = .warn,
                extraRejections: [String: [Int: String]] = [:]) {
        self.minGroupSize = minGroupSize
        self.deny = deny
        self.fallback = fallback
        self.extraRejections = extraRejections
    }

    /// Whether `op` is on the deny list.
    public func denies(_ op: OpID) -> String? {
        deny.first { entry in
            entry == op.name || entry == op.description || (op.domain.isEmpty && entry == "ai.onnx.\(op.name)")
        }
    }
}

/// The host-side partitioner: backends only say which nodes they can run (`Backend.rejections(in:)`);
/// the partitioner decides.
///
/// 1. Each node goes to the first selected backend (user priority) that does not reject it, unless its
///    op is denied; otherwise to the first fallback backend that runs it (the host's backends, then the reference
///    backend: `BackendRegistry.selection(target:backends:)`).
///    A node that no backend runs is an `.unsupported` error listing every such node at once.
/// 2. The fallback policy is applied to nodes no selected backend took (`deny` makes them an error).
/// 3. Nodes are grouped, in topological order, into groups of one backend whose quotient graph stays
///    acyclic — so each group is convex (no path leaves a group and re-enters it) and the groups can run
///    one after another. A node that reads no value another node produces (a weight's DequantizeLinear, a
///    Constant) is taken just before its first consumer, so that it joins that consumer's group. A node joins a group of its backend only when that keeps the groups acyclic;
///    otherwise it starts a new group (this is where a group that would wrap around another is split).
/// 4. Groups of a selected backend smaller than `minGroupSize` move to the fallback; steps 3–4 repeat
///    until nothing moves.
/// 5. The groups are sorted topologically into partitions with their inputs and outputs.
public struct Partitioner: Sendable {
    /// The backends the user selected, highest priority first.
    public var selected: [any Backend]
    /// The backends that take what the selected ones do not, in order of preference.
    public var fallbacks: [any Backend]
    /// Minimum group size, deny list, fallback policy.
    public var options: PartitionOptions

    /// A partitioner over `selected` (priority order) falling back to `fallbacks`.
    public init(selected: [any Backend], fallbacks: [any Backend], options: PartitionOptions = PartitionOptions()) {
        self.selected = selected
        self.fallbacks = fallbacks
        self.options = options
    }

    /// A partitioner over the backends `registry` selects for `target` (or over `backends`, highest
    /// priority first, when given), falling back to the host's backends and then the reference backend
    /// (`BackendRegistry.selection(target:backends:)`). An unknown target or backend, a backend named
    /// twice, or a bad option is `.invalidArgument`.
    public init(target: String = BackendRegistry.hostTarget, backends: [String] = [], registry: BackendRegistry,
                options: PartitionOptions = PartitionOptions()) throws {
        if let size = options.minGroupSize, size < 1 {
            throw KilnError(.invalidArgument, "minimum group size \(size) is not at least 1")
        }
        if let empty = options.deny.first(where: { $0.isEmpty || $0.contains(",") }) {
            throw KilnError(.invalidArgument, "deny list entry '\(empty)' is not an op name")
        }
        let selection = try registry.selection(target: target, backends: backends)
        self.init(selected: selection.selected, fallbacks: selection.fallbacks, options: options)
    }

    /// Splits `model`'s main graph; errors name ops as `(domain, op, opset)` with the model's opsets.
    public func partition(_ model: Model) throws -> PartitionPlan {
        try partition(model.graph, opsets: model.opsets)
    }

    /// Splits `graph` (whose nodes are in topological order) into partitions; see the type's description.
    public func partition(_ graph: Graph, opsets: [String: Int] = [:]) throws -> PartitionPlan {
        let count = graph.nodes.count
        let selectedNames = selected.map(\.info.name)
        if count == 0 {
            guard let backend = selected.first ?? fallbacks.first else {
                throw KilnError(.invalidArgument, "no backend to partition the graph for")
            }
            let whole = Partition(backend: backend, nodes: [], inputs: graph.inputs.map(\.name), outputs: graph.outputs.map(\.name))
            return PartitionPlan(partitions: [whole], report: PartitionReport(partitions: [backend.info.name]))
        }

        // 1. Claims. Each backend is asked once, about the whole graph (it may need the context).
        // Nodes a backend's compile refused after it claimed them count as its rejections.
        let refused = options.extraRejections
        func rejections(of backend: any Backend) -> [Int: String] {
            var result = Self.rejections(of: backend, in: graph)
            for (node, why) in refused[backend.info.name] ?? [:] where node >= 0 && node < count && result[node] == nil {
                result[node] = Self.refusalPrefix + why
            }
            return result
        }
        let selectedRejections = selected.map { rejections(of: $0) }
        var fallbackRejections: [[Int: String]?] = Array(repeating: nil, count: fallbacks.count)
        func fallback(for index: Int, excluding excluded: Set<String> = []) -> Int? {
            for f in fallbacks.indices where !excluded.contains(fallbacks[f].info.name) {
                if fallbackRejections[f] == nil { fallbackRejections[f] = rejections(of: fallbacks[f]) }
                if fallbackRejections[f]![index] == nil { return f }
            }
            return nil
        }

        var assigned = [any Backend](repeating: selected.first ?? fallbacks[0], count: count)
        var reasons = [String](repeating: "", count: count)
        var unsupported: [(node: Int, reasons: [String])] = []
        var notTaken: [(node: Int, reasons: [String])] = []
        for (index, node) in graph.nodes.enumerated() {
            if let entry = options.denies(node.op), !selected.isEmpty {
                // A denied op runs on none of the selected backends, even one that is also a fallback.
                if let f = fallback(for: index, excluding: Set(selectedNames)) {
                    assigned[index] = fallbacks[f]
                    reasons[index] = "denied by --deny \(entry); fallback \(fallbacks[f].info.name)"
                } else {
                    unsupported.append((index, ["denied by --deny \(entry)"] + fallbackReasons(index, fallbackRejections)))
                }
                continue
            }
            let fallbackIndex = fallback(for: index)
            let fallbackText = fallbackIndex.map { "fallback \(fallbacks[$0].info.name)" } ?? ""
            var refusals: [String] = []
            var taker: Int?
            var alsoClaimed: [String] = []
            for (s, rejected) in selectedRejections.enumerated() {
                if let why = rejected[index] {
                    if taker == nil { refusals.append(Self.rejectionText(selectedNames[s], why)) }
                } else if taker == nil {
                    taker = s
                } else {
                    alsoClaimed.append(selectedNames[s])
                }
            }
            if let s = taker {
                assigned[index] = selected[s]
                var reason = "claimed by \(selectedNames[s])"
                if !alsoClaimed.isEmpty { reason += " (priority over \(alsoClaimed.joined(separator: ", ")), which also claim\(alsoClaimed.count == 1 ? "s" : "") it)" }
                if !refusals.isEmpty { reason += "; " + refusals.joined(separator: "; ") }
                reasons[index] = reason
            } else if let f = fallbackIndex {
                assigned[index] = fallbacks[f]
                reasons[index] = (refusals.isEmpty ? ["no backend selected"] : refusals).joined(separator: "; ") + "; " + fallbackText
                if !selected.isEmpty { notTaken.append((index, refusals)) }
            } else {
                unsupported.append((index, refusals + fallbackReasons(index, fallbackRejections)))
            }
        }
        if !unsupported.isEmpty {
            let names = (selectedNames + fallbacks.map(\.info.name)).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            // Grouped by op as `(domain, op, opset) at nodes: …` (as a single backend reports them), then each node's reasons.
            let grouped = Rejection.error(unsupported.map { Rejection(node: $0.node, reason: "") }, in: Model(graph: graph, opsets: opsets), backend: "")
            let byOp = grouped.message.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().joined(separator: "\n")
            throw KilnError(.unsupported, "no backend (\(names.joined(separator: ", "))) can run \(unsupported.count) node(s) of this model:\n"
                            + byOp + "\nwhy:\n" + Self.describe(unsupported, graph: graph, opsets: opsets))
        }

        // 2. Fallback policy.
        var warnings: [String] = []
        if !notTaken.isEmpty {
            let list = Self.describe(notTaken, graph: graph, opsets: opsets)
            switch options.fallback {
            case .allow: break
            case .deny:
                throw KilnError(.unsupported, "fallback policy deny: \(notTaken.count) node(s) are not taken by the selected backend\(selected.count == 1 ? "" : "s") (\(selectedNames.joined(separator: ", "))):\n" + list)
            case .warn:
                let counts = Dictionary(grouping: notTaken.map { assigned[$0.node].info.name }, by: { $0 }).mapValues(\.count)
                let onto = counts.keys.sorted().map { "\(counts[$0]!) on \($0)" }.joined(separator: ", ")
                warnings.append("\(notTaken.count) node(s) not taken by \(selectedNames.joined(separator: ", ")) run on the fallback (\(onto)):\n" + list)
            }
        }

        // 3–4. Group; move groups below the minimum size to the fallback; repeat until stable.
        let selectedSet = Set(selectedNames)
        // Which node produces each value, for the neighbours of a group (a backend's own minimum applies only to
        // groups between nodes of other backends: there the boundary copies are what moving the group saves).
        var producerOf: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() { for name in node.outputs where !name.isEmpty { producerOf[name] = index } }
        func touchesAnotherBackend(_ members: [Int]) -> Bool {
            let mine = Set(members), backend = assigned[members[0]].info.name
            for index in members {
                for name in graph.nodes[index].valuesRead {
                    if let p = producerOf[name], !mine.contains(p), assigned[p].info.name != backend { return true }
                }
            }
            let produced = Set(members.flatMap { graph.nodes[$0].outputs })
            for (index, node) in graph.nodes.enumerated() where !mine.contains(index) && assigned[index].info.name != backend {
                if node.valuesRead.contains(where: produced.contains) { return true }
            }
            return false
        }
        var groups: Grouping
        var movedBefore = [Bool](repeating: false, count: count)  // each node moves at most once
        while true {
            groups = Grouping(graph: graph, backends: assigned.map(\.info.name))
            var moved = false
            for members in groups.members {
                let owner = assigned[members[0]], backend = owner.info.name
                // A backend's own minimum applies only where fallback is allowed: under `deny` (and
                // `--backend NAME`) nothing moves unless the user asks for a minimum.
                let minimum = options.minGroupSize ?? (options.fallback == .deny ? 1 : owner.minimumGroupSize)
                guard members.count < minimum, selectedSet.contains(backend) else { continue }
                // A whole graph (or a group with no neighbour on another backend) saves no copies by moving.
                if options.minGroupSize == nil && !touchesAnotherBackend(members) { continue }
                let rule = options.minGroupSize == nil
                    ? "\(backend)'s minimum group size \(minimum) (what moving values to its device costs; --min-group-size sets another)"
                    : "--min-group-size \(minimum)"
                for index in members where !movedBefore[index] {
                    guard let f = fallback(for: index, excluding: [backend]) else { continue }
                    movedBefore[index] = true
                    let target = fallbacks[f]
                    assigned[index] = target
                    reasons[index] = "\(reasons[index]), but its group of \(members.count) node\(members.count == 1 ? "" : "s") is below \(rule); fallback \(target.info.name)"
                    moved = true
                }
            }
            if !moved { break }
        }

        // 5. Order and connect.
        let order = groups.topologicalOrder()
        var partitions: [Partition]
        if order.count == 1 {
            partitions = [Partition(backend: assigned[0], nodes: Array(0..<count), inputs: graph.inputs.map(\.name), outputs: graph.outputs.map(\.name))]
        } else {
            partitions = Self.connect(order.map { groups.members[$0] }, backends: order.map { assigned[groups.members[$0][0]] }, graph: graph)
        }
        let entries = graph.nodes.enumerated().map { index, node in
            PartitionReport.Entry(node: index, name: node.name, op: node.op.description, backend: assigned[index].info.name, reason: reasons[index])
        }
        let names = partitions.map(\.backend.info.name)
        return PartitionPlan(partitions: partitions, report: PartitionReport(entries: entries, warnings: warnings, partitions: names))
    }

    /// `backend`'s rejections of `graph`'s nodes by index (indices outside the graph are ignored).
    private static func rejections(of backend: any Backend, in graph: Graph) -> [Int: String] {
        var result: [Int: String] = [:]
        for r in backend.rejections(in: graph) where r.node >= 0 && r.node < graph.nodes.count && result[r.node] == nil {
            result[r.node] = r.reason
        }
        return result
    }

    private func fallbackReasons(_ index: Int, _ rejections: [[Int: String]?]) -> [String] {
        fallbacks.indices.compactMap { f in rejections[f].flatMap { $0[index] }.map { Self.rejectionText(fallbacks[f].info.name, $0) } }
    }

    /// Marks a rejection that comes from `PartitionOptions.extraRejections` (a refusal at compile time).
    private static let refusalPrefix = "\u{1}refused: "

    /// `rejected by NAME: why`, or `claimed by NAME, but its compile refused it: why` for a refusal.
    private static func rejectionText(_ backend: String, _ why: String) -> String {
        if why.hasPrefix(refusalPrefix) { return "claimed by \(backend), but its compile refused it: \(why.dropFirst(refusalPrefix.count))" }
        return "rejected by \(backend): \(why)"
    }

    /// One line per node: `  node 3 'softmax' (ai.onnx, Softmax, 13): rejected by acme.npu: …` (the first 50).
    private static func describe(_ nodes: [(node: Int, reasons: [String])], graph: Graph, opsets: [String: Int]) -> String {
        var lines = nodes.prefix(50).map { item -> String in
            let node = graph.nodes[item.node]
            let domain = node.op.domain.isEmpty ? "ai.onnx" : node.op.domain
            let opset = opsets[node.op.domain].map(String.init) ?? "?"
            let name = node.name.isEmpty ? "" : " '\(node.name)'"
            return "  node \(item.node)\(name) (\(domain), \(node.op.name), \(opset)): \(item.reasons.isEmpty ? "no backend selected" : item.reasons.joined(separator: "; "))"
        }
        if nodes.count > 50 { lines.append("  … and \(nodes.count - 50) more") }
        return lines.joined(separator: "\n")
    }

    /// Partitions for `groups` (already in execution order): inputs are the values read from outside the
    /// group that are not plain initializers; outputs are the values read by other groups or returned.
    private static func connect(_ groups: [[Int]], backends: [any Backend], graph: Graph) -> [Partition] {
        var producerGroup: [String: Int] = [:]
        for (g, members) in groups.enumerated() {
            for index in members { for name in graph.nodes[index].outputs where !name.isEmpty { producerGroup[name] = g } }
        }
        let graphInputs = Set(graph.inputs.map(\.name))
        var inputs = [[String]](repeating: [], count: groups.count)
        var readElsewhere = Set<String>()
        for (g, members) in groups.enumerated() {
            var seen = Set<String>()
            for index in members {
                for name in graph.nodes[index].valuesRead where producerGroup[name] != g && seen.insert(name).inserted {
                    if producerGroup[name] == nil && graph.initializers[name] != nil && !graphInputs.contains(name) { continue }
                    inputs[g].append(name)
                    readElsewhere.insert(name)
                }
            }
        }
        // A value read only inside its own group is not an output, unless the graph returns it.
        let needed = readElsewhere.union(graph.outputs.map(\.name))
        return groups.enumerated().map { g, members in
            var outputs: [String] = []
            for index in members {
                for name in graph.nodes[index].outputs where !name.isEmpty && needed.contains(name) && !outputs.contains(name) {
                    outputs.append(name)
                }
            }
            return Partition(backend: backends[g], nodes: members, inputs: inputs[g], outputs: outputs)
        }
    }
}

/// Nodes grouped by backend in topological order so that the quotient graph of the groups is acyclic.
struct Grouping {
    /// Each group's nodes, ascending.
    var members: [[Int]] = []
    /// Each group's successor groups.
    var successors: [Set<Int>] = []

    init(graph: Graph, backends: [String]) {
        var producer: [String: Int] = [:]
        var groupOf = [Int](repeating: -1, count: graph.nodes.count)
        var latest: [String: Int] = [:]
        for index in Self.order(graph) {
            let node = graph.nodes[index]
            let backend = backends[index]
            var predecessors: [Int] = []
            for name in node.valuesRead {
                if let p = producer[name], groupOf[p] >= 0, !predecessors.contains(groupOf[p]) { predecessors.append(groupOf[p]) }
            }
            // Candidates: groups of this backend that feed the node (latest first), then the backend's latest group.
            var candidates = predecessors.filter { backends[members[$0][0]] == backend }.sorted(by: >)
            if let last = latest[backend], !candidates.contains(last) { candidates.append(last) }
            var chosen: Int?
            for candidate in candidates {
                let reachable = descendants(of: candidate)
                if predecessors.allSatisfy({ $0 == candidate || !reachable.contains($0) }) {
                    chosen = candidate
                    break
                }
            }
            let group: Int
            if let chosen {
                group = chosen
                members[group].append(index)
            } else {
                group = members.count
                members.append([index])
                successors.append([])
                latest[backend] = group
            }
            groupOf[index] = group
            for p in predecessors where p != group { successors[p].insert(group) }
            for name in node.outputs where !name.isEmpty { producer[name] = index }
        }
        for g in members.indices { members[g].sort() }
    }

    /// The order nodes are grouped in: `graph`'s (topological) order, except that a node reading no value
    /// another node produces (a DequantizeLinear of a quantized weight, a Constant, a Shape of a graph
    /// input) is taken just before its first consumer. Such a node then joins its consumer's group instead
    /// of whichever group of its backend happens to be open at the top of the graph, so a weight's
    /// DequantizeLinear stays in the partition of the layer that reads it.
    static func order(_ graph: Graph) -> [Int] {
        var producer: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() {
            for name in node.outputs where !name.isEmpty && producer[name] == nil { producer[name] = index }
        }
        var isSource = [Bool](repeating: false, count: graph.nodes.count)
        var firstConsumer = [Int?](repeating: nil, count: graph.nodes.count)
        for (index, node) in graph.nodes.enumerated() {
            let read = node.valuesRead.compactMap { producer[$0] }.filter { $0 != index }
            isSource[index] = read.isEmpty
            for p in read where firstConsumer[p] == nil || firstConsumer[p]! > index { firstConsumer[p] = index }
        }
        var before: [Int: [Int]] = [:]
        for index in graph.nodes.indices where isSource[index] {
            if let c = firstConsumer[index], c > index { before[c, default: []].append(index) }
        }
        var order: [Int] = []
        order.reserveCapacity(graph.nodes.count)
        for index in graph.nodes.indices {
            if isSource[index], let c = firstConsumer[index], c > index { continue }
            order.append(contentsOf: before[index] ?? [])
            order.append(index)
        }
        return order
    }

    /// The groups reachable from `group` (excluding itself unless on a cycle, which cannot happen).
    func descendants(of group: Int) -> Set<Int> {
        var seen = Set<Int>()
        var stack = Array(successors[group])
        while let g = stack.popLast() {
            if seen.insert(g).inserted { stack.append(contentsOf: successors[g]) }
        }
        return seen
    }

    /// The groups in an order where every group comes after the groups it reads from; among ready groups,
    /// the one whose first node comes first.
    func topologicalOrder() -> [Int] {
        var indegree = [Int](repeating: 0, count: members.count)
        for s in successors { for g in s { indegree[g] += 1 } }
        var ready = members.indices.filter { indegree[$0] == 0 }
        var order: [Int] = []
        while !ready.isEmpty {
            let next = ready.min { members[$0][0] < members[$1][0] }!
            ready.removeAll { $0 == next }
            order.append(next)
            for g in successors[next] {
                indegree[g] -= 1
                if indegree[g] == 0 { ready.append(g) }
            }
        }
        return order
    }
}
