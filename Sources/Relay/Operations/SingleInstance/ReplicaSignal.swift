/// What one replica signal saw (docs/architecture.md (v1 = single-instance)). The evidence is operator-facing text; it names PIDs,
/// counts and paths but never an environment value's content.
public enum ReplicaSignalAnswer: Equatable, Sendable {
    case single(evidence: String)
    case multiple(evidence: String)
    case unknown(evidence: String)

    /// `single`, `multiple` or `unknown`: the logfmt value.
    public var word: String {
        switch self {
        case .single: "single"
        case .multiple: "multiple"
        case .unknown: "unknown"
        }
    }

    public var evidence: String {
        switch self {
        case .single(let e), .multiple(let e), .unknown(let e): e
        }
    }
}

/// One source of evidence about how many relays serve the same users.
/// A *platform* signal (Fly, Kubernetes) speaks for the deploy substrate: its `unknown` refuses
/// without the operator's assertion; the same-host signal's `unknown` alone refuses nothing.
public protocol ReplicaSignal {
    /// The logfmt key and evidence prefix: `same_host`, `fly`, `kubernetes`.
    var name: String { get }
    var isPlatform: Bool { get }
    func probe() -> ReplicaSignalAnswer
}

/// One row of the check's report: the input of the pure decision.
public struct SignalReport: Equatable, Sendable {
    public let signal: String
    public let isPlatform: Bool
    public let answer: ReplicaSignalAnswer

    public init(signal: String, isPlatform: Bool, answer: ReplicaSignalAnswer) {
        self.signal = signal
        self.isPlatform = isPlatform
        self.answer = answer
    }
}
