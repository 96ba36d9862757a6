/// `s` cut to at most `maxBytes` UTF-8 bytes on a code point boundary (docs/protocol.md §2–§3: device names are
/// logged truncated to 64 bytes; a cut through a multi-byte character must not drop the name).
package func truncatedUTF8(_ s: String, maxBytes: Int) -> String {
    var end = s.utf8.startIndex
    for i in s.unicodeScalars.indices {
        let next = s.unicodeScalars.index(after: i)
        if s.utf8.distance(from: s.utf8.startIndex, to: next) > maxBytes { break }
        end = next
    }
    return String(s[..<end])
}
