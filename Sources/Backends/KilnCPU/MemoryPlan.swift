/// Places buffers with known lifetimes in one arena: two buffers share bytes only when their lifetimes
/// (first and last step that touch them) do not overlap.
struct MemoryPlan {
    /// A buffer to place: `bytes` long, live from step `first` through step `last`.
    struct Request {
        var bytes: Int
        var first: Int
        var last: Int
    }

    /// Byte offset of each request, in request order.
    var offsets: [Int]
    /// Bytes the arena needs.
    var arenaBytes: Int
    /// Bytes the requests would take without reuse (for reports).
    var unsharedBytes: Int

    /// Every offset is a multiple of this.
    static let alignment = 64

    /// Places `requests` greedily, largest first, each at the lowest offset that fits between the
    /// buffers already placed whose lifetimes overlap its own.
    init(_ requests: [Request]) {
        func aligned(_ n: Int) -> Int { (n + Self.alignment - 1) / Self.alignment * Self.alignment }
        offsets = Array(repeating: 0, count: requests.count)
        var placed: [(offset: Int, end: Int, first: Int, last: Int)] = []
        let order = requests.indices.sorted {
            requests[$0].bytes != requests[$1].bytes ? requests[$0].bytes > requests[$1].bytes : $0 < $1
        }
        var top = 0
        for i in order {
            let r = requests[i]
            let size = aligned(max(r.bytes, 1))
            let conflicts = placed.filter { $0.first <= r.last && r.first <= $0.last }.sorted { $0.offset < $1.offset }
            var offset = 0
            for c in conflicts {
                if offset + size <= c.offset { break }
                offset = max(offset, c.end)
            }
            offsets[i] = offset
            placed.append((offset, offset + size, r.first, r.last))
            top = max(top, offset + size)
        }
        arenaBytes = top
        unsharedBytes = requests.reduce(0) { $0 + aligned(max($1.bytes, 1)) }
    }
}
