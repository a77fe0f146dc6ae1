#if canImport(Glibc)
import Glibc
#endif

/// Seconds since an arbitrary start (monotonic).
func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
/// The subfolder names of `path`, sorted; nil if it is not a folder.
func subfolders(_ path: String) -> [String]? {
    guard let dir = opendir(path) else { return nil }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        // Read the name in place: copying `d_name` reads all 256 bytes, past a short record (ASan).
        let name = String(cString: UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
            .assumingMemoryBound(to: CChar.self))
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }
