import RelayCodecs
import RelayLog
import RelayTransport
import RelayCore

/// Registry wiring and message forwarding (docs/protocol.md §5, §7).
extension RelayService {
    // MARK: after the 101

    package func peerDidUpgrade(_ peer: Peer) {
        let c = peer.connection
        let now = context.reactor.now
        switch peer.role {
        case .binary:
            peer.assignBinaryID(random.next32())
            // The connection tells when its queue, above high water, drains (`peerDidDrain`).
            c.backpressure.highWater = core.highWater
            c.backpressure.lowWater = core.lowWater
            perform(registry.claimBinary(peer.handle, serverID: peer.serverID, now: now))
            // Nothing from a binary is forwarded until it holds the slot: a claim that waits on a
            // probe stops reading until `.claimed` (an uncontested claim holds it already, and
            // costs no `epoll_ctl` pair).
            if registry.isPending(peer.handle) { c.pauseReading() }
        case .phone:
            switch registry.registerPhone(peer.handle, serverID: peer.serverID, random: random.next32()) {
            case .registered(let suffix):
                peer.assignPhoneID(suffix)
                metrics.upgrade(.client, .accept)
                let client = takeUnlogged(peer.handle)
                Log.info("phone_registered", ["server_id": peer.serverID, "conn_id": peer.connID,
                                              "device_name": client.label, "remote": client.remote.ipString])
                if case .forward(let b) = registry.route(phone: peer.handle), let binary = peers[b],
                    core.phoneJoins(binary.flow) {
                    c.pauseReading()
                }
            case .rejected(let code, let reason):
                let remote = takeUnlogged(peer.handle).remote.ipString
                if code == .noServer {
                    metrics.upgrade(.client, .reject404)
                    metrics.registerFailure(.noServer)
                    logRepeated(.phoneRegisterNoServer, level: .info, ["server_id": peer.serverID, "remote": remote])
                } else {
                    logRepeated(.phoneRegisterAtCap, level: .info, ["server_id": peer.serverID, "remote": remote])
                    metrics.upgrade(.client, .reject429)
                    metrics.registerFailure(.phonesAtCap)
                }
                c.close(code: code, reason: reason)
            }
        }
    }

    // MARK: messages

    /// docs/protocol.md §7.1: validate, wrap as `{"conn_id":…,"frame":…}` straight into the binary's queue.
    package func phoneMessage(_ phone: Peer, _ payload: UnsafeRawBufferPointer, _ opcode: Opcode) {
        // The binary is cached on the phone while it is live; the registry decides otherwise.
        guard let binary = phone.binary ?? routeToBinary(phone) else { return }
        binary._withUnsafeGuaranteedRef { forward(payload, opcode, from: phone, to: $0) }
    }

    /// The phone's binary from the registry, cached on the phone; nil when there is none, after
    /// answering the phone as the registry says.
    @inline(never)
    private func routeToBinary(_ phone: Peer) -> Unmanaged<Peer>? {
        switch registry.route(phone: phone.handle) {
        case .unknown:
            return nil
        case .closePhone(let code, let reason):
            phone.connection.close(code: code, reason: reason)
            return nil
        case .forward(let binaryHandle):
            guard let binary = peers[binaryHandle] else { return nil }
            phone.binary = Unmanaged.passUnretained(binary)
            return phone.binary
        }
    }

    /// Inlined into the one call above: a message goes from the phone's record to the binary's
    /// queue without another call frame.
    @inline(__always)
    private func forward(_ payload: UnsafeRawBufferPointer, _ opcode: Opcode, from phone: Peer, to binary: Peer) {
        let b = binary.connection
        // A binary that is closing is as good as gone: the phone gets the grace answer (1000).
        guard b.state == .open else {
            phone.connection.close(code: .normal)
            return
        }
        // A text message was UTF-8-checked by the WebSocket layer (RFC 6455 §8.1).
        guard JSON.isValid(payload, utf8Validated: opcode == .text) else {
            phone.connection.close(code: core.phoneSentNonJSON(&phone.flow))
            return
        }
        let length = Envelope.wrappedLength(connIDLength: phone.connIDBytes.count, frameLength: payload.count)
        let id = phone.connIDBytes
        b.sendFrame(opcode: .text, length: length) { dst in
            _ = Envelope.wrap(connID: id, frame: payload, into: dst)
        }
        metrics.framesPhoneToBinary += 1
        metrics.bytesPhoneToBinary += payload.count
        if core.messageToBinary(&binary.flow, queuedBytes: b.queuedBytes) == .pausePhones {
            setPhonesPaused(of: binary, true)
        }
    }

    /// docs/protocol.md §7.2: route one envelope to its phone, byte-for-byte.
    package func binaryMessage(_ binary: Peer, _ payload: UnsafeRawBufferPointer) {
        guard let env = Envelope.parseBinaryEnvelope(payload) else {
            logRepeated(.binaryForwarderUnmarshalErr, peer: binary, ["server_id": binary.serverID, "conn_id": binary.connID])
            return
        }
        if let wake = env.pushWake, env.connID == .none {
            pushWake(binary, UnsafeRawBufferPointer(rebasing: payload[wake]))
            return
        }
        let target = env.withConnIDBytes(in: payload) { id in registry.phone(connID: id, ofBinary: binary.handle) }
        guard let phoneHandle = target, let phone = peers[phoneHandle] else {
            logRepeated(.binaryForwarderUnknownConnID, peer: binary, ["server_id": binary.serverID, "conn_id": binary.connID])
            return
        }
        deliver(env, in: payload, to: phone)
        // Last: shedding may close this binary too, freeing the buffer `payload` points into.
        if core.overBudget(bufferedBytes: context.bufferedBytes) { shedLargestHolders() }
    }

    /// The envelope's frame (docs/protocol.md §7.5: within the phone's outbox budget) and close
    /// directive, for `phone`.
    private func deliver(_ env: BinaryEnvelope, in payload: UnsafeRawBufferPointer, to phone: Peer) {
        let pc = phone.connection
        guard pc.state == .open else { return }  // the phone is leaving; nothing more reaches it
        if let range = env.frame {
            let frame = UnsafeRawBufferPointer(rebasing: payload[range])
            let verdict = core.messageToPhone(&phone.flow, frameLength: frame.count, queuedBytes: pc.queuedBytes,
                                              writtenBytes: pc.bytesOut, directive: env.closeCode)
            if case .dropBacklog(let code) = verdict {
                dropBacklog(phone, code: code)
                return
            }
            pc.sendFrame(opcode: .text, payload: frame)
            core.queuedToPhone(&phone.flow, endingAt: pc.bytesOut + pc.queuedBytes)
            metrics.framesBinaryToPhone += 1
            metrics.bytesBinaryToPhone += frame.count
        }
        if let code = env.closeCode {
            pc.close(code: core.binaryClosesPhone(&phone.flow, code: code))
        }
    }

    /// A phone whose queue passed its budget (`ForwardingCore.messageToPhone`, or shedding):
    /// what is not yet in the kernel is dropped and it gets a close frame `code` `phone backlog
    /// full` behind the frame it is reading (docs/operations.md, "Memory").
    package func dropBacklog(_ phone: Peer, code: CloseCode) {
        Log.warn("phone_backlog_full", ["server_id": phone.serverID, "conn_id": phone.connID])
        phone.connection.closeDroppingBacklog(code: code, reason: "phone backlog full")
        phoneLeavesNow(phone)
    }

    /// A phone the relay is closing to get its memory back leaves the registry at once: its
    /// binary hears the close notice now, not when the socket finally goes (a phone that does
    /// not read keeps it until the write-stall timeout). `peerDidClose` finds it gone.
    package func phoneLeavesNow(_ phone: Peer) {
        phone.binary = nil  // out of the registry: the cache must not outlive the listing
        let notice = core.closeNoticeNow(phone.flow)
        perform(registry.phoneLeft(phone.handle, closeCode: notice, closedByBinary: notice == nil))
    }

    /// Pauses or resumes reading every phone of `binary` (docs/protocol.md §7.5).
    package func setPhonesPaused(of binary: Peer, _ paused: Bool) {
        for h in registry.phones(ofBinary: binary.handle) {
            guard let pc = peers[h]?.connection else { continue }
            if paused { pc.pauseReading() } else { pc.resumeReading() }
        }
    }

    package func peerDidDrain(_ peer: Peer) {
        guard peer.role == .binary else { return }
        if core.binaryDrained(&peer.flow, queuedBytes: peer.connection.queuedBytes) == .resumePhones {
            setPhonesPaused(of: peer, false)
        }
    }

    package func peerDidReceivePong(_ peer: Peer) {
        guard peer.role == .binary else { return }
        perform(registry.incumbentAnswered(peer.handle, now: context.reactor.now))
    }

    // MARK: departures

    package func peerDidClose(_ peer: Peer, peerCode: CloseCode?, localCode: CloseCode?) {
        let c = peer.connection
        peers.remove(peer.handle)
        if !unlogged.isEmpty { _ = takeUnlogged(peer.handle) }  // left before its line
        core.connectionClosed(key: peer.key)
        let wireCode = c.closeInitiatedByPeer ? peerCode : (localCode ?? peerCode)
        metrics.closed(code: wireCode)
        endLogScope(peer)
        let now = context.reactor.now
        switch peer.role {
        case .binary:
            if core.binaryLeaves(&peer.flow) == .resumePhones { setPhonesPaused(of: peer, false) }
            // Its phones forget it: they route through the registry until a binary holds the slot again.
            for h in registry.phones(ofBinary: peer.handle) { peers[h]?.binary = nil }
            Log.info("binary_disconnected", ["server_id": peer.serverID, "conn_id": peer.connID])
            perform(registry.binaryDisconnected(peer.handle, now: now))
        case .phone:
            peer.binary = nil
            let notice = core.closeNotice(peer.flow, peerCode: peerCode, localCode: localCode,
                                          closedByPeer: c.closeInitiatedByPeer)
            perform(registry.phoneLeft(peer.handle, closeCode: notice, closedByBinary: notice == nil))
            if peer.isRegisteredPhone {
                Log.info("phone_unregistered", ["server_id": peer.serverID, "conn_id": peer.connID, "close_code": String(wireCode?.rawValue ?? 1006)])
            }
        }
        checkDrained()
    }

    // MARK: registry actions

    package func perform(_ actions: [RegistryAction]) {
        for a in actions {
            switch a {
            case .closeConn(let h, let code, let reason):
                guard let peer = peers[h] else { continue }
                peer.binary = nil  // an evicted phone is out of the registry: drop the unretained cache
                peer.connection.close(code: code, reason: reason)
            case .probeIncumbent(let h):
                peers[h]?.connection.sendPing()
            case .armTimer(let t, let at):
                // The Go relay's event name for a slot entering grace; operators' alerts use it.
                if case .grace(let serverID, _) = t { Log.info("server_released", ["server_id": serverID]) }
                let key = nextTimerKey
                nextTimerKey += 1
                registryTimers[key] = t
                timers.schedule(.registry, at: at, key: key)
            case .sendCloseNotice(let b, let connID, let code):
                let notice = Envelope.closeNotice(connID: connID, code: code)
                notice.withUnsafeBytes { peers[b]?.connection.sendFrame(opcode: .text, payload: $0) }
            case .claimed(let h, let serverID, let kind):
                guard let peer = peers[h] else { continue }
                metrics.upgrade(.server, .accept)
                peer.connection.resumeReading()
                let client = takeUnlogged(h)
                Log.info(kind == .takeover ? "server_id_takeover" : "server_claimed",
                         ["server_id": serverID, "conn_id": peer.connID, "binary_version": client.label,
                          "remote": client.remote.ipString])
            case .claimRefused(let h, let serverID):
                _ = takeUnlogged(h)
                metrics.upgrade(.server, .reject409)
                metrics.registerFailure(.serverInUse)
                logRepeated(.serverIDConflict, ["server_id": serverID, "conn_id": peers[h]?.connID ?? ""])
            case .graceExpired(let serverID, _):
                metrics.graceExpiries += 1
                Log.info("grace_expired", ["server_id": serverID])
            }
        }
    }
}
