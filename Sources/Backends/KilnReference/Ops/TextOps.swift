import KilnIR

/// String ops: StringConcat, StringSplit, StringNormalizer, RegexFullMatch, and the n-gram counter
/// TfIdfVectorizer (over integer or string tokens).
enum TextOps {
    /// Adds this family's kernels to `table`.
    static func register(into table: inout KernelTable) {
        table.add("StringConcat") { ctx in [.tensor(try stringConcat(ctx))] }
        table.add("StringSplit") { ctx in try stringSplit(ctx) }
        table.add("StringNormalizer") { ctx in [.tensor(try stringNormalizer(ctx))] }
        table.add("RegexFullMatch") { ctx in [.tensor(try regexFullMatch(ctx))] }
        table.add("TfIdfVectorizer") { ctx in [.tensor(try tfIdfVectorizer(ctx))] }
    }

    /// Input `index`, which must be a string tensor.
    static func strings(_ ctx: KernelContext, _ index: Int) throws -> Tensor {
        let t = try ctx.tensor(index)
        guard t.dtype == .string else { throw ctx.fail("input \(index) must be a string tensor, got \(t.dtype)") }
        return t
    }

    /// StringConcat: elementwise concatenation with broadcasting.
    static func stringConcat(_ ctx: KernelContext) throws -> Tensor {
        let a = try strings(ctx, 0), b = try strings(ctx, 1)
        let shape = try ctx.broadcastShape([a, b])
        let ai = Broadcast.sourceIndices(from: a.shape, to: shape)
        let bi = Broadcast.sourceIndices(from: b.shape, to: shape)
        let x = a.strings, y = b.strings
        return Tensor(shape: shape, strings: (0..<ai.count).map { x[ai[$0]] + y[bi[$0]] })
    }

    /// Splits `s` like Python's `str.split`: on every occurrence of `delimiter`, or, when it is nil, on runs of
    /// whitespace with leading and trailing whitespace ignored; at most `maxSplit` splits when given.
    static func split(_ s: String, delimiter: String?, maxSplit: Int?) -> [String] {
        let limit = maxSplit.map { $0 < 0 ? Int.max : $0 } ?? Int.max
        var parts: [String] = []
        if let delimiter {
            let text = Array(s.unicodeScalars), d = Array(delimiter.unicodeScalars)
            var current = String.UnicodeScalarView()
            var i = 0
            while i < text.count {
                if parts.count < limit && i + d.count <= text.count && Array(text[i..<(i + d.count)]) == d {
                    parts.append(String(current))
                    current = String.UnicodeScalarView()
                    i += d.count
                } else {
                    current.append(text[i])
                    i += 1
                }
            }
            parts.append(String(current))
            return parts
        }
        let text = Array(s.unicodeScalars)
        var i = 0
        func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }
        while i < text.count {
            while i < text.count && isSpace(text[i]) { i += 1 }
            if i == text.count { break }
            if parts.count == limit {
                // The rest, with leading whitespace already skipped, is one last part.
                var rest = String.UnicodeScalarView()
                rest.append(contentsOf: text[i...])
                parts.append(String(rest))
                break
            }
            var word = String.UnicodeScalarView()
            while i < text.count && !isSpace(text[i]) { word.append(text[i]); i += 1 }
            parts.append(String(word))
        }
        return parts
    }

    /// StringSplit: splits every element; returns the parts padded with "" to the longest split
    /// (shape `X.shape + [max parts]`) and the number of parts of each element.
    static func stringSplit(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let x = try strings(ctx, 0)
        let delimiter = try ctx.string("delimiter").flatMap { $0.isEmpty ? nil : $0 }
        let maxSplit = try ctx.int("maxsplit")
        let parts = x.strings.map { split($0, delimiter: delimiter, maxSplit: maxSplit) }
        let width = parts.map(\.count).max() ?? 0
        var flat: [String] = []
        flat.reserveCapacity(parts.count * width)
        for p in parts { flat += p + Array(repeating: "", count: width - p.count) }
        return [.tensor(Tensor(shape: x.shape + [width], strings: flat)),
                .tensor(Tensor(shape: x.shape, parts.map { Int64($0.count) }))]
    }

    /// StringNormalizer: drops the elements equal to a stop word (compared case-insensitively unless
    /// `is_case_sensitive`), then applies `case_change_action` (LOWER, UPPER or NONE). Input `[C]` or `[1, C]`;
    /// when every element is dropped the output is one empty string.
    static func stringNormalizer(_ ctx: KernelContext) throws -> Tensor {
        let x = try strings(ctx, 0)
        guard x.rank == 1 || (x.rank == 2 && x.shape[0] == 1) else {
            throw ctx.fail("input must have shape [C] or [1, C], got \(x.shape)")
        }
        let action = try ctx.string("case_change_action", "NONE")
        guard ["NONE", "LOWER", "UPPER"].contains(action) else { throw ctx.fail("unknown case_change_action '\(action)'") }
        let caseSensitive = try ctx.int("is_case_sensitive", 0) != 0
        let stopwords = try ctx.strings("stopwords") ?? []
        let stops = Set(caseSensitive ? stopwords : stopwords.map { $0.lowercased() })
        var kept: [String] = []
        for s in x.strings where !stops.contains(caseSensitive ? s : s.lowercased()) {
            switch action {
            case "LOWER": kept.append(s.lowercased())
            case "UPPER": kept.append(s.uppercased())
            default: kept.append(s)
            }
        }
        if kept.isEmpty { kept = [""] }
        return Tensor(shape: x.rank == 1 ? [kept.count] : [1, kept.count], strings: kept)
    }

    /// RegexFullMatch: whether each element matches `pattern` in full (RE2-like: ASCII character
    /// classes and simple word boundaries, matching by Unicode scalar).
    static func regexFullMatch(_ ctx: KernelContext) throws -> Tensor {
        let x = try strings(ctx, 0)
        guard let pattern = try ctx.string("pattern") else { throw ctx.fail("attribute 'pattern' is required") }
        let regex: Regex<AnyRegexOutput>
        do {
            regex = try Regex(pattern)
                .matchingSemantics(.unicodeScalar)
                .asciiOnlyWordCharacters()
                .asciiOnlyDigits()
                .asciiOnlyWhitespace()
                .wordBoundaryKind(.simple)
        } catch {
            throw ctx.fail("invalid pattern '\(pattern)': \(error)")
        }
        let results = x.strings.map { $0.wholeMatch(of: regex) != nil }
        return Tensor(shape: x.shape, results)
    }

    // MARK: TfIdfVectorizer

    /// A token of TfIdfVectorizer's pool: an integer or a string.
    enum Token: Hashable {
        case integer(Int64)
        case string(String)
    }

    /// TfIdfVectorizer: counts the pool's n-grams (of `min_gram_length`…`max_gram_length` tokens, with up to
    /// `max_skip_count` tokens skipped between consecutive ones) in each row of X, then weights the counts
    /// by `mode` (TF: counts; IDF: weight (or 1) where present; TFIDF: weight × count).
    static func tfIdfVectorizer(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let minGram = try ctx.int("min_gram_length", 1), maxGram = try ctx.int("max_gram_length", 1)
        let maxSkip = try ctx.int("max_skip_count", 0)
        let mode = try ctx.string("mode", "TF")
        guard ["TF", "IDF", "TFIDF"].contains(mode) else { throw ctx.fail("unknown mode '\(mode)'") }
        guard minGram >= 1, maxGram >= minGram, maxSkip >= 0 else {
            throw ctx.fail("need 1 <= min_gram_length <= max_gram_length and max_skip_count >= 0")
        }
        guard let counts = try ctx.ints("ngram_counts"), let indexes = try ctx.ints("ngram_indexes") else {
            throw ctx.fail("attributes ngram_counts and ngram_indexes are required")
        }
        let pool: [Token]
        if let p = try ctx.ints("pool_int64s") {
            pool = p.map { .integer(Int64($0)) }
        } else if let p = try ctx.strings("pool_strings") {
            pool = p.map { .string($0) }
        } else {
            throw ctx.fail("pool_int64s or pool_strings is required")
        }
        let weights = (try ctx.floats("weights") ?? []).map(Double.init)
        guard indexes.allSatisfy({ $0 >= 0 && $0 < maxTensorElements }) else {
            throw ctx.fail("ngram_indexes must be non-negative output columns")
        }
        let outputSize = (indexes.max() ?? -1) + 1
        // No n-gram is longer than the pool has levels, and no gap wider than a row.
        let longest = min(maxGram, counts.count)

        // Each n-gram of the pool, in order, gets the next id; its output column is ngram_indexes[id].
        var gramColumn: [[Token]: Int] = [:]
        var id = 0
        for level in 0..<counts.count {
            let size = level + 1
            let start = counts[level]
            let end = level + 1 < counts.count ? counts[level + 1] : pool.count
            guard start >= 0, start <= end, end <= pool.count else { throw ctx.fail("ngram_counts are out of range") }
            for g in 0..<((end - start) / size) {
                guard id < indexes.count else { throw ctx.fail("ngram_indexes has too few entries") }
                if size >= minGram && size <= maxGram {
                    gramColumn[Array(pool[(start + g * size)..<(start + (g + 1) * size)])] = indexes[id]
                }
                id += 1
            }
        }

        // Rows of tokens.
        let tokens: [Token]
        if x.dtype == .string {
            tokens = x.strings.map { .string($0) }
        } else if x.dtype.isInteger {
            tokens = x.asInt64s().map { .integer($0) }
        } else {
            throw ctx.unsupported("element type \(x.dtype)")
        }
        guard x.rank <= 2 else { throw ctx.fail("input must have shape [C] or [B, C], got \(x.shape)") }
        let rows = x.rank == 2 ? x.shape[0] : 1
        let columns = x.rank == 0 ? 1 : x.shape.last!
        try ctx.checkedCount([rows, outputSize])
        let skip = min(maxSkip, columns)
        var frequency = [Double](repeating: 0, count: rows * outputSize)
        if !gramColumn.isEmpty && columns > 0 && minGram <= longest {
            for r in 0..<rows {
                let row = tokens[(r * columns)..<((r + 1) * columns)]
                let base = row.startIndex
                for size in minGram...longest {
                    // Unigrams have no gaps to skip.
                    let distances = size == 1 ? 1...1 : 1...(skip + 1)
                    for d in distances {
                        var start = 0
                        while start + (size - 1) * d < columns {
                            let gram = (0..<size).map { row[base + start + $0 * d] }
                            if let c = gramColumn[gram] { frequency[r * outputSize + c] += 1 }
                            start += 1
                        }
                    }
                }
            }
        }
        var out = frequency
        for i in 0..<out.count {
            let column = i % max(outputSize, 1)
            let w = column < weights.count ? weights[column] : 1
            switch mode {
            case "IDF": out[i] = frequency[i] > 0 ? w : 0
            case "TFIDF": out[i] = w * frequency[i]
            default: break
            }
        }
        return Tensor(dtype: .float32, shape: x.rank == 2 ? [rows, outputSize] : [outputSize], doubles: out)
    }
}
