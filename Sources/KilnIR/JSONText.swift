/// Writing JSON text without Foundation, for the profiles, traces and pictures Kiln emits.
public enum JSONText {
    /// `s` as a JSON string literal, quotes included. Quotes, backslashes and control characters are escaped,
    /// and so is `<`, so the literal can sit inside an HTML `<script>` element without ending it.
    public static func string(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "<": out += "\\u003c"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
