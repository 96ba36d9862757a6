extension Substring {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace, RFC 9110 §5.6.3;
    /// also the whitespace of a WebSocket extension header, RFC 6455 §9.1).
    package func trimmingASCIISpaces() -> Substring {
        var u = utf8[...]
        while let f = u.first, HTTPGrammar.isOWS(f) { u = u.dropFirst() }
        while let l = u.last, HTTPGrammar.isOWS(l) { u = u.dropLast() }
        return Substring(u)
    }
}
