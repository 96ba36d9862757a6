/// docs/architecture.md (v1 = single-instance) Kubernetes signal: a multi-replica-capable platform with no cheap replica count →
/// `unknown`, except a StatefulSet pod whose `HOSTNAME` ends in an ordinal > 0 (`relay-1`):
/// ordinal 0 exists too, so that pod is one of several → `multiple`.
public struct KubernetesSignal: ReplicaSignal {
    public let name = "kubernetes"
    public let isPlatform = true
    package let hostname: String?

    /// nil when `KUBERNETES_SERVICE_HOST` is unset or empty: the signal does not apply.
    public init?(env: [String: String]) {
        guard let h = env["KUBERNETES_SERVICE_HOST"], !h.isEmpty else { return nil }
        hostname = env["HOSTNAME"]
    }

    public func probe() -> ReplicaSignalAnswer {
        let noSignal = "Kubernetes can run several replicas and gives no cheap count"
        guard let h = hostname, let dash = h.lastIndex(of: "-") else {
            return .unknown(evidence: noSignal)
        }
        let suffix = h[h.index(after: dash)...]
        guard !suffix.isEmpty, suffix.count <= 9, suffix.allSatisfy({ $0.isASCII && $0.isNumber }),
              suffix == "0" || suffix.first != "0",  // ordinals have no leading zeros
              let ordinal = Int(suffix) else {
            return .unknown(evidence: noSignal)
        }
        // A Deployment pod's name ends in 5 random characters from "bcdfghjklmnpqrstvwxz2456789"
        // (k8s.io/apimachinery rand.String): all-digit draws such as "24567" look like ordinals.
        if suffix.count == 5 && suffix.allSatisfy({ "2456789".contains($0) }) {
            return .unknown(evidence: "\(noSignal); the HOSTNAME suffix may be a Deployment's random suffix")
        }
        if ordinal > 0 {
            return .multiple(evidence: "HOSTNAME ends in StatefulSet ordinal \(ordinal); ordinal 0 exists too")
        }
        return .unknown(evidence: "\(noSignal) (StatefulSet ordinal 0)")
    }
}
