import RelayCodecs

/// The server-id registry of docs/protocol.md §5 as a pure state machine: no sockets, no clocks. The
/// caller feeds events (claims, pongs, disconnects, timer expiries, phone arrivals and
/// departures) with the current time in milliseconds and performs the returned actions.
///
/// State per server-id: the binary holding it (live, or dead and in grace), its phones, and the
/// newcomers probing a live holder. Lookups on the forwarding path (`route(phone:)`,
/// `phone(connID:ofBinary:)`) are an array index and at most one hash lookup, and allocate nothing.
///
/// One thread only (the reactor's).
public final class Registry {
    public let graceMs: Int64
    public let probeTimeoutMs: Int64
    /// Phones per server-id; `<= 0` disables the cap (as Go's `RegisterPhoneCapped`).
    public let maxPhonesPerServer: Int

    /// One per server-id that has a binary or is in grace. The small fields fill the tail of the
    /// 17-byte `phones`: 72 bytes in all, a 72-byte malloc block where 80 took 88 (one per idle
    /// binary, docs/benchmarks.md M1).
    package final class Slot {
        package let serverID: String
        /// The binary holding the id, live or (when `!live`) in grace.
        package var holder: ConnHandle
        /// Newcomers probing the live holder, in arrival order.
        package var pending: [PendingClaim] = []
        /// Keyed by the 32-bit suffix of the phone's conn id, unique within the slot.
        package var phones = SlotPhones()
        package var live = true
        package var graceToken: UInt32 = 0

        package init(serverID: String, holder: ConnHandle) {
            self.serverID = serverID
            self.holder = holder
        }
    }

    /// One reference, so a binary's entry is 8 bytes beside its key; what a probe needs lives in
    /// the slot's `pending` list while it runs (docs/benchmarks.md, M1).
    package enum BinaryState {
        /// Holds (live) the slot.
        case holder(Slot)
        /// Waiting for a claim probe: its `PendingClaim` is in `slot.pending`.
        case pending(Slot)
    }

    /// What the registry holds for one connection: one reference, 8 bytes (M1).
    ///
    /// A registered phone is its slot alone. Its conn id is not stored: it is
    /// `client-<server-id>-<key>`, its key found beside its handle in `slot.phones` on the rare
    /// paths that need it (a close notice), so an idle phone's entry holds no String and no key.
    /// Nor is the binary it registered with (docs/protocol.md §8 notice rule): a slot changes
    /// holder only by a reclaim or takeover, which evict every phone first, so while the phone
    /// is listed that binary is `slot.holder`.
    package enum Member {
        case binary(BinaryState)
        case phone(Slot)
    }

    /// A newcomer probing the holder `incumbent`, which held the slot when it arrived.
    package struct PendingClaim {
        package let newcomer: ConnHandle
        package let token: UInt32
        package let incumbent: ConnHandle
    }

    private var slots = SlotSet()
    /// Live holders, pending newcomers and registered phones, in one array by handle index (8
    /// bytes a connection, docs/benchmarks.md M1). A binary in grace is no longer here.
    private var members = HandleSlots<Member>()
    private var phoneCount = 0
    private var liveBinaries = 0
    /// Timer tokens wrap after 2^32: a stale timer could only be mistaken for a live one if that
    /// many claims and disconnects happened within one grace or probe window.
    private var lastToken: UInt32 = 0

    public init(
        graceMs: Int64 = Limits.graceMs,
        probeTimeoutMs: Int64 = Limits.claimProbeTimeoutMs,
        maxPhonesPerServer: Int = Limits.phonesPerServerID
    ) {
        self.graceMs = graceMs
        self.probeTimeoutMs = probeTimeoutMs
        self.maxPhonesPerServer = maxPhonesPerServer
    }

    // MARK: Counts (docs/protocol.md §5, docs/operations.md)

    /// Binaries holding a server-id and connected; binaries in grace are excluded.
    public var connectedBinaries: Int { liveBinaries }
    /// Registered phones, including those whose binary is in grace.
    public var connectedPhones: Int { phoneCount }

    // MARK: Binaries

    /// A binary finished its upgrade on `/v1/server` (docs/protocol.md §5 "Binary claim").
    public func claimBinary(_ binary: ConnHandle, serverID: String, now: Int64) -> [RegistryAction] {
        precondition(members[binary] == nil, "handle reused")
        guard let slot = slots[serverID] else {
            // 1. Slot free.
            let slot = Slot(serverID: serverID, holder: binary)
            slots.insert(slot)
            var actions: [RegistryAction] = []
            install(binary, in: slot, kind: .fresh, &actions)
            return actions
        }
        if !slot.live {
            // 1. Slot in grace: reclaim.
            var actions: [RegistryAction] = []
            install(binary, in: slot, kind: .reclaim, &actions)
            return actions
        }
        // 2. Held by a live binary: probe it.
        let token = nextToken()
        members[binary] = .binary(.pending(slot))
        slot.pending.append(PendingClaim(newcomer: binary, token: token, incumbent: slot.holder))
        return [
            .probeIncumbent(slot.holder),
            .armTimer(.probe(newcomer: binary, token: token), atMs: now + probeTimeoutMs),
        ]
    }

    /// A pong arrived from `binary`. If newcomers are probing it, they lose: 4409.
    public func incumbentAnswered(_ binary: ConnHandle, now: Int64) -> [RegistryAction] {
        guard case .holder(let slot)? = binaryState(binary), !slot.pending.isEmpty else { return [] }
        var actions: [RegistryAction] = []
        refuseAllPending(in: slot, &actions)
        return actions
    }

    /// A timer armed by an `armTimer` action fired. Stale timers do nothing.
    public func timerFired(_ timer: RegistryTimer, now: Int64) -> [RegistryAction] {
        switch timer {
        case .grace(let serverID, let token): return graceExpired(serverID: serverID, token: token)
        case .probe(let newcomer, let token): return probeExpired(newcomer: newcomer, token: token)
        }
    }

    /// The binary's connection is gone, whatever the cause (docs/protocol.md §5 "Binary disconnect").
    /// Grace is armed only if this connection still holds the slot.
    public func binaryDisconnected(_ binary: ConnHandle, now: Int64) -> [RegistryAction] {
        guard let state = removeBinary(binary) else { return [] }
        switch state {
        case .pending(let slot):
            slot.pending.removeAll { $0.newcomer == binary }
            return []
        case .holder(let slot):
            liveBinaries -= 1
            slot.live = false
            var actions: [RegistryAction] = []
            if !slot.pending.isEmpty {
                // A newcomer was probing: the silent incumbent is now certainly gone, so the
                // first newcomer takes over at once (Go: its ping fails, TakeoverServer succeeds)
                // and the others find the slot changed hands (4409).
                let winner = slot.pending.removeFirst().newcomer
                takeOver(by: winner, in: slot, &actions)
                return actions
            }
            slot.graceToken = nextToken()
            actions.append(.armTimer(.grace(serverID: slot.serverID, token: slot.graceToken), atMs: now + graceMs))
            return actions
        }
    }

    /// The registry's own copy of `serverID` while a slot holds it (else `serverID` itself), so
    /// that the records of one server-id share one string: a long id is one heap block per
    /// server-id, not one per connection (docs/benchmarks.md, M1).
    public func sharedServerID(_ serverID: String) -> String {
        slots[serverID]?.serverID ?? serverID
    }

    /// The binary that holds `serverID` now and is connected.
    public func liveBinary(serverID: String) -> ConnHandle? {
        guard let slot = slots[serverID], slot.live else { return nil }
        return slot.holder
    }

    /// The phones of the server-id `binary` holds (live), for pausing and resuming them
    /// together (docs/protocol.md §7.5). Allocates: called only when the binary crosses a water mark.
    public func phones(ofBinary binary: ConnHandle) -> [ConnHandle] {
        guard case .holder(let slot)? = binaryState(binary) else { return [] }
        return slot.phones.handles
    }

    /// Whether `binary` is waiting for a claim probe (the caller should not read from it yet).
    public func isPending(_ binary: ConnHandle) -> Bool {
        if case .pending? = binaryState(binary) { return true }
        return false
    }

    // MARK: Phones

    /// A phone finished its upgrade on `/v1/client` (docs/protocol.md §5 "Phone registration").
    /// `random` is 32 CSPRNG bits for its conn id; should they collide with a phone already on
    /// this id, the next free value is used, so ids stay unique per server-id. The answer carries
    /// the value used: the conn id is `ConnectionID.make(role: .phone, serverID:, random: suffix)`,
    /// built by whoever needs it as text.
    public func registerPhone(_ phone: ConnHandle, serverID: String, random: UInt32) -> PhoneRegistration {
        precondition(members[phone] == nil, "handle reused")
        // No binary and no grace (a slot exists exactly while one of them does).
        guard let slot = slots[serverID] else {
            return .rejected(code: .noServer, reason: RegistryReason.noServer)
        }
        if maxPhonesPerServer > 0 && slot.phones.count >= maxPhonesPerServer {
            return .rejected(code: .tooManyPhones, reason: RegistryReason.tooManyPhones)
        }
        var key = random
        while slot.phones[key] != nil { key &+= 1 }
        slot.phones[key] = phone
        members[phone] = .phone(slot)
        phoneCount += 1
        return .registered(suffix: key)
    }

    /// Where a message from `phone` goes (docs/protocol.md §7.1; during grace the phone is closed 1000).
    @inline(__always)
    public func route(phone: ConnHandle) -> PhoneRoute {
        guard let slot = phoneSlot(phone) else { return .unknown }
        return slot.live ? .forward(binary: slot.holder) : .closePhone(code: .normal, reason: "")
    }

    /// The phone a binary's envelope addresses (docs/protocol.md §7.2): `connID` is the decoded conn_id
    /// bytes; it must name a phone of the server-id `binary` holds live. Allocation-free.
    @inline(__always)
    public func phone(connID: UnsafeRawBufferPointer, ofBinary binary: ConnHandle) -> ConnHandle? {
        guard case .holder(let slot)? = binaryState(binary),
            let key = ConnectionID.phoneSuffix(of: connID, serverID: slot.serverID)
        else { return nil }
        return slot.phones[key]
    }

    public func phone(connID: String, ofBinary binary: ConnHandle) -> ConnHandle? {
        var id = connID
        return id.withUTF8 { phone(connID: UnsafeRawBufferPointer($0), ofBinary: binary) }
    }

    /// The conn id a registered phone was given.
    public func connID(ofPhone phone: ConnHandle) -> String? {
        guard let slot = phoneSlot(phone), let key = slot.phones.key(of: phone) else { return nil }
        return ConnectionID.make(role: .phone, serverID: slot.serverID, random: key)
    }

    /// The phone's connection ended, or is being closed (docs/protocol.md §8). `closeCode` is the code of
    /// the close it sent (nil when it sent none, dropped, or sent non-JSON → notice 1001).
    /// `closedByBinary`: the binary's own close directive ended it (no notice).
    /// Returns the close notice when one is due: the phone was still registered (not evicted or
    /// expired), and the binary it registered with still holds the id and is connected.
    public func phoneLeft(_ phone: ConnHandle, closeCode: UInt16?, closedByBinary: Bool) -> [RegistryAction] {
        // A listed phone is in its slot's `phones` too (an eviction takes it out of both).
        guard let slot = removePhone(phone), let key = slot.phones.key(of: phone) else { return [] }
        slot.phones[key] = nil
        // The notice goes to the binary the phone registered with: `slot.holder` (`Member`),
        // if it is connected and still holds the id.
        guard !closedByBinary, slot.live, slots.holds(slot) else { return [] }
        let connID = ConnectionID.make(role: .phone, serverID: slot.serverID, random: key)
        return [.sendCloseNotice(binary: slot.holder, phoneConnID: connID, code: closeCode ?? CloseCode.goingAway.rawValue)]
    }

    // MARK: Internals

    private func binaryState(_ h: ConnHandle) -> BinaryState? {
        if case .binary(let state)? = members[h] { return state }
        return nil
    }

    private func phoneSlot(_ h: ConnHandle) -> Slot? {
        if case .phone(let slot)? = members[h] { return slot }
        return nil
    }

    /// Forgets `h` if it is a binary (never a phone's entry).
    @discardableResult
    private func removeBinary(_ h: ConnHandle) -> BinaryState? {
        guard let state = binaryState(h) else { return nil }
        members[h] = nil
        return state
    }

    /// Forgets `h` if it is a phone (never a binary's entry).
    @discardableResult
    private func removePhone(_ h: ConnHandle) -> Slot? {
        guard let slot = phoneSlot(h) else { return nil }
        members[h] = nil
        phoneCount -= 1
        return slot
    }

    private func nextToken() -> UInt32 {
        lastToken &+= 1
        return lastToken
    }

    /// Makes `binary` the live holder. For a reclaim or takeover, every phone of the id is
    /// removed at once and closed 4404 (docs/protocol.md §5 "Reclaim"); none gets a close notice.
    private func install(_ binary: ConnHandle, in slot: Slot, kind: ClaimKind, _ actions: inout [RegistryAction]) {
        if kind != .fresh {
            evictPhones(of: slot, code: .noServer, reason: RegistryReason.reclaimed, &actions)
        }
        slot.holder = binary
        slot.live = true
        slot.graceToken = 0
        members[binary] = .binary(.holder(slot))
        liveBinaries += 1
        actions.append(.claimed(binary, serverID: slot.serverID, kind: kind))
    }

    /// Removes every phone of `slot` and closes each (ordered by handle, for determinism).
    private func evictPhones(of slot: Slot, code: CloseCode, reason: String, _ actions: inout [RegistryAction]) {
        guard !slot.phones.isEmpty else { return }
        let evicted = slot.phones.handles.sorted { $0.raw < $1.raw }
        slot.phones.removeAll()
        for p in evicted {
            removePhone(p)
            actions.append(.closeConn(p, code: code, reason: reason))
        }
    }

    private func refuseAllPending(in slot: Slot, _ actions: inout [RegistryAction]) {
        let losers = slot.pending
        slot.pending.removeAll()
        for claim in losers { refuse(claim.newcomer, slot: slot, &actions) }
    }

    private func refuse(
        _ newcomer: ConnHandle, slot: Slot, _ actions: inout [RegistryAction]
    ) {
        guard case .pending? = removeBinary(newcomer) else { return }
        actions.append(.closeConn(newcomer, code: .alreadyClaimed, reason: RegistryReason.alreadyClaimed))
        actions.append(.claimRefused(newcomer, serverID: slot.serverID))
    }

    /// `winner` (already removed from `slot.pending`) takes the slot from its incumbent, with
    /// reclaim semantics; the other newcomers find it changed hands and get 4409.
    private func takeOver(
        by winner: ConnHandle, in slot: Slot, _ actions: inout [RegistryAction]
    ) {
        guard case .pending? = binaryState(winner) else { return }
        let incumbent = slot.holder
        if slot.live {
            // Still connected but silent: close it the way its heartbeat would have.
            removeBinary(incumbent)
            liveBinaries -= 1
            actions.append(.closeConn(incumbent, code: .internalError, reason: RegistryReason.heartbeatTimeout))
        }
        refuseAllPending(in: slot, &actions)
        removeBinary(winner)
        install(winner, in: slot, kind: .takeover, &actions)
    }

    private func probeExpired(newcomer: ConnHandle, token: UInt32) -> [RegistryAction] {
        guard case .pending(let slot)? = binaryState(newcomer),
            let claim = slot.pending.first(where: { $0.newcomer == newcomer }), claim.token == token
        else { return [] }
        let incumbent = claim.incumbent
        var actions: [RegistryAction] = []
        slot.pending.removeAll { $0.newcomer == newcomer }
        if !slots.holds(slot) {
            // The id was released during the wait (defensive: pending claims are settled when
            // the incumbent disconnects, so grace cannot expire under them): claim it afresh.
            removeBinary(newcomer)
            let fresh = Slot(serverID: slot.serverID, holder: newcomer)
            slots.insert(fresh)
            install(newcomer, in: fresh, kind: .fresh, &actions)
        } else if slot.holder != incumbent {
            // The slot changed hands during the wait: the newcomer gets 4409.
            refuse(newcomer, slot: slot, &actions)
        } else {
            takeOver(by: newcomer, in: slot, &actions)
        }
        return actions
    }

    private func graceExpired(serverID: String, token: UInt32) -> [RegistryAction] {
        guard let slot = slots[serverID], !slot.live, slot.graceToken == token else { return [] }
        var actions: [RegistryAction] = []
        let n = slot.phones.count
        evictPhones(of: slot, code: .normal, reason: "", &actions)
        slots.remove(slot)
        actions.append(.graceExpired(serverID: serverID, phonesClosed: n))
        return actions
    }
}

/// The registry's slots by server-id: a set of references hashed by their server-id, 8 bytes a
/// bucket where a `[String: Slot]` took 24 (one slot per idle binary, docs/benchmarks.md M1).
/// Looking an id up builds a probe record: claims, registrations and grace expiries do, never a
/// message.
private struct SlotSet {
    private struct Ref: Hashable {
        let slot: Registry.Slot
        static func == (a: Ref, b: Ref) -> Bool { a.slot.serverID == b.slot.serverID }
        func hash(into hasher: inout Hasher) { hasher.combine(slot.serverID) }
    }

    private var set = Set<Ref>()

    subscript(serverID: String) -> Registry.Slot? {
        find(Registry.Slot(serverID: serverID, holder: ConnHandle(0)))
    }

    /// Whether `slot` itself (not another slot of its id) is the one listed.
    func holds(_ slot: Registry.Slot) -> Bool { find(slot) === slot }

    /// Lists `slot`, in place of any other slot of its id.
    mutating func insert(_ slot: Registry.Slot) { set.update(with: Ref(slot: slot)) }

    mutating func remove(_ slot: Registry.Slot) { set.remove(Ref(slot: slot)) }

    private func find(_ probe: Registry.Slot) -> Registry.Slot? {
        set.firstIndex(of: Ref(slot: probe)).map { set[$0].slot }
    }
}

