/// The outcome of docs/architecture.md (v1 = single-instance)'s decision, before anything is printed.
public enum SingleInstanceDecision: Equatable, Sendable {
    /// `PYRYCODE_RELAY_SINGLE_INSTANCE=1`: start with a WARN; no signal was probed.
    case bypass
    case start(report: [SignalReport])
    case refuse(reason: String, report: [SignalReport])
}

/// docs/architecture.md (v1 = single-instance)'s decision, in order; pure so every combination can be tested without I/O.
/// Signals that do not apply (no `FLY_APP_NAME`, no `KUBERNETES_SERVICE_HOST`) are absent
/// from `answers`.
public func decideSingleInstance(env: EnvironmentConfig, answers: [SignalReport]) -> SingleInstanceDecision {
    // 1. The bypass wins unconditionally (emergencies, migration windows).
    if env.bypassSingleInstance { return .bypass }
    // 2. Positive evidence of another replica refuses even with the assertion: the assertion
    //    is a claim, the evidence is an observation.
    if let m = answers.first(where: { if case .multiple = $0.answer { true } else { false } }) {
        return .refuse(reason: "\(m.signal) signal saw another replica", report: answers)
    }
    // 3. A multi-replica-capable platform that cannot tell needs the operator's assertion.
    if !env.assertSingleInstance,
       let u = answers.first(where: { if $0.isPlatform, case .unknown = $0.answer { true } else { false } }) {
        return .refuse(
            reason: "\(u.signal) signal cannot count replicas and \(EnvironmentConfig.assertSingleInstanceVar)=true is not set",
            report: answers)
    }
    // 4. Production must be asserted single-instance by its deploy manifest.
    if env.production && !env.assertSingleInstance {
        return .refuse(
            reason: "\(EnvironmentConfig.productionVar)=1 requires \(EnvironmentConfig.assertSingleInstanceVar)=true",
            report: answers)
    }
    return .start(report: answers)
}
