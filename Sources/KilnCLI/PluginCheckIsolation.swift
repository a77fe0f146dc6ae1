#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Kiln

/// What a `plugin-check` child reports on its report descriptor, one line per event:
/// `B<TAB>check` when a check starts, `E<TAB>result<TAB>detail` when it ends, `D` when every check ran.
struct ChildReport {
    let fd: Int32

    func begin(_ check: String) { send("B\t" + Self.clean(check)) }
    func end(_ outcome: (PluginCheck.Row.Result, String)) { send("E\t\(outcome.0.rawValue)\t" + Self.clean(outcome.1)) }
    func done() { send("D") }

    private func send(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        var at = 0
        while at < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + at, $0.count - at) }
            if written <= 0 { if errno == EINTR { continue }; return }
            at += written
        }
    }

    /// One line: tabs and line breaks become spaces.
    static func clean(_ text: String) -> String {
        String(text.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}

/// Runs the checks in child processes of this executable (`kiln plugin-check --child-report-fd 3`), so
/// that a plugin that crashes or hangs fails the check it was in: the child is then replaced by a new one
/// told to skip that check, which runs the checks again from the start (earlier results are kept, the
/// repeated ones ignored) and carries on past it.
struct IsolatedRun {
    /// `plugin-check PATH ...`, without the child options.
    let arguments: [String]
    /// Seconds one check may take.
    let timeout: Int

    /// At most this many children (one per crash or hang, plus the last).
    static let maximumChildren = 200

    func rows() throws -> [PluginCheck.Row] {
        var rows: [PluginCheck.Row] = []
        var seen: Set<String> = []
        var skipped: [String] = []
        for _ in 0..<Self.maximumChildren {
            let outcome = try runChild(skipping: skipped) { row in
                if seen.insert(row.check).inserted { rows.append(row) }
            }
            switch outcome {
            case .finished:
                return rows
            case .failed(let check, let why):
                if seen.insert(check).inserted { rows.append(PluginCheck.Row(check: check, result: .fail, detail: why)) }
                skipped.append(check)
            case .diedOutsideACheck(let why):
                rows.append(PluginCheck.Row(check: "plugin-check child process", result: .fail, detail: why))
                return rows
            }
        }
        rows.append(PluginCheck.Row(check: "plugin-check child process", result: .fail, detail: "gave up after \(Self.maximumChildren) crashed or hung checks"))
        return rows
    }

    enum ChildOutcome {
        /// Every check ran and reported.
        case finished
        /// The child crashed or hung inside `check`.
        case failed(check: String, why: String)
        /// The child stopped without finishing and outside any check.
        case diedOutsideACheck(String)
    }

    /// The path of this executable.
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length > 0 { return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return CommandLine.arguments[0]
    }

    /// Runs one child; calls `row` for every check it completes.
    func runChild(skipping skipped: [String], row: (PluginCheck.Row) -> Void) throws -> ChildOutcome {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw KilnError(.io, "plugin-check: cannot create a pipe: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        let reportFD: Int32 = 3
        let executable = Self.executablePath()
        let argv = [executable] + arguments + ["--child-report-fd", "\(reportFD)"] + skipped.flatMap { ["--skip-check", $0] }
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // In this order: the read end may be the very number the report descriptor gets.
        posix_spawn_file_actions_addclose(&actions, readEnd)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, reportFD)
        // The child's standard output carries nothing of the protocol: send it to standard error.
        posix_spawn_file_actions_adddup2(&actions, 2, 1)
        var pid: pid_t = 0
        // The child's crash is the plugin's: no Swift backtrace for it, unless asked for.
        // Under a sanitizer (a `scripts/test --sanitize address|thread|undefined` build), its handlers would
        // turn the plugin's SIGSEGV or SIGABRT into an ordinary exit: let the signal reach this process as it
        // would without the sanitizer, so that the report is the same.
        let keepSignals = "handle_segv=0:handle_sigbus=0:handle_abort=0"
        var unseen = ["ASAN_OPTIONS=", "TSAN_OPTIONS=", "UBSAN_OPTIONS="]
        var environment: [UnsafeMutablePointer<CChar>?] = []
        var at = environ
        while let entry = at.pointee {
            let text = String(cString: entry)
            if let k = unseen.firstIndex(where: { text.hasPrefix($0) }) {
                environment.append(strdup(text + (text == unseen[k] ? "" : ":") + keepSignals))
                unseen.remove(at: k)
            } else {
                environment.append(strdup(entry))
            }
            at += 1
        }
        for name in unseen { environment.append(strdup(name + keepSignals)) }
        if getenv("SWIFT_BACKTRACE") == nil { environment.append(strdup("SWIFT_BACKTRACE=enable=no")) }
        environment.append(nil)
        defer { for pointer in environment { free(pointer) } }
        let status = posix_spawn(&pid, executable, &actions, nil, &cArguments, &environment)
        close(writeEnd)
        guard status == 0 else {
            close(readEnd)
            throw KilnError(.io, "plugin-check: cannot start '\(executable)': \(String(cString: strerror(status)))")
        }
        defer { close(readEnd) }

        var running: String?
        var finished = false
        var pending: [UInt8] = []
        var timedOut = false
        var chunk = [UInt8](repeating: 0, count: 4096)
        reading: while true {
            var poller = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(clamping: timeout * 1000))
            if ready < 0 { if errno == EINTR { continue }; break }
            if ready == 0 {
                guard running != nil else { continue }
                timedOut = true
                kill(pid, SIGKILL)
                break
            }
            let count = chunk.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count < 0 { if errno == EINTR { continue }; break }
            if count == 0 { break }
            pending += chunk[0..<count]
            while let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                let fields = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
                switch fields.first {
                case "B" where fields.count >= 2:
                    running = fields[1]
                case "E" where fields.count >= 2:
                    if let check = running {
                        let result = PluginCheck.Row.Result(rawValue: fields[1]) ?? .fail
                        row(PluginCheck.Row(check: check, result: result, detail: fields.count > 2 ? fields[2] : ""))
                    }
                    running = nil
                case "D":
                    finished = true
                    break reading
                default:
                    continue
                }
            }
        }
        var waitStatus: Int32 = 0
        while waitpid(pid, &waitStatus, 0) < 0 && errno == EINTR {}
        if finished { return .finished }
        let how = timedOut ? "hung: no answer within \(timeout) s (killed)" : Self.describe(waitStatus)
        if let check = running { return .failed(check: check, why: "the plugin \(how)") }
        return .diedOutsideACheck("the child process \(how) outside any check")
    }

    /// `crashed with signal 11 (SIGSEGV: Segmentation fault)` or `exited with status 3`.
    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        if signal != 0 {
            let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGILL: "SIGILL", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGTRAP: "SIGTRAP"]
            let text = strsignal(signal).map { String(cString: $0) } ?? "signal \(signal)"
            return "crashed with signal \(signal) (\(names[signal].map { "\($0): " } ?? "")\(text))"
        }
        return "exited with status \((status >> 8) & 0xff) without finishing"
    }
}
