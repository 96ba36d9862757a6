/// Registry wiring and message forwarding (docs/protocol.md §5, §7).
extension RelayService {
    // MARK: after the 101

    public func connectionDidUpgrade(_ c: Connection) {
        guard let peer = c.userInfo as? Peer else { return }
        let now = context.reactor.now
        switch peer.role {
        case .binary:
            peer.connID = ConnectionID.make(role: .binary, serverID: peer.serverID, random: random.next32())
            // docs/protocol.md §7.5: the binary's queue pauses its phones above high water.
            c.backpressure.highWater = Limits.binaryHighWater
            c.backpressure.lowWater = Limits.binaryLowWater
            // Nothing from a binary is forwarded until it holds the slot (the claim may wait on a probe).
            c.pauseReading()
            perform(registry.claimBinary(peer.handle, serverID: peer.serverID, now: now))
        case .phone:
            switch registry.registerPhone(peer.handle, serverID: peer.serverID, random: random.next32()) {
            case .registered(let connID):
                peer.connID = connID
                // The id embeds the server-id header, which may hold `"` or `\`: escape once here.
                peer.connIDBytes = Envelope.jsonEscaped(connID)
                peer.registered = true
                metrics.upgrade(.client, .accept)
                Log.info("phone_registered", ["server_id": peer.serverID, "conn_id": connID,
                                              "device_name": peer.deviceName, "remote": peer.ip])
                if case .forward(let b) = registry.route(phone: peer.handle), let bc = connections[b], bc.aboveHighWater {
                    c.pauseReading()
                }
            case .rejected(let code, let reason):
                if code == .noServer {
                    metrics.upgrade(.client, .reject404)
                    metrics.registerFailure(.noServer)
                    logRepeated(.phoneRegisterNoServer, level: .info, ["server_id": peer.serverID, "remote": peer.ip])
                } else {
                    logRepeated(.phoneRegisterAtCap, level: .info, ["server_id": peer.serverID, "remote": peer.ip])
                    metrics.upgrade(.client, .reject429)
                    metrics.registerFailure(.phonesAtCap)
                }
                c.close(code: code, reason: reason)
            }
        }
    }

    // MARK: messages

    public func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {
        // Every upgraded connection of this service carries a Peer (set in `admit`).
        guard let info = c.userInfo else { return }
        let peer = unsafeDowncast(info, to: Peer.self)
        switch peer.role {
        case .phone: phoneMessage(c, peer, payload, opcode)
        case .binary: binaryMessage(c, peer, payload)
        }
    }

    /// docs/protocol.md §7.1: validate, wrap as `{"conn_id":…,"frame":…}` straight into the binary's queue.
    private func phoneMessage(_ c: Connection, _ peer: Peer, _ payload: UnsafeRawBufferPointer, _ opcode: Opcode) {
        // The binary is cached on the phone while it is live; the registry decides otherwise.
        let b: Connection
        if let cached = peer.binary {
            b = cached
        } else {
            switch registry.route(phone: peer.handle) {
            case .unknown:
                return
            case .closePhone(let code, let reason):
                c.close(code: code, reason: reason)
                return
            case .forward(let binaryHandle):
                guard let found = connections[binaryHandle] else { return }
                peer.binary = found
                b = found
            }
        }
        // A binary that is closing is as good as gone: the phone gets the grace answer (1000).
        guard b.state == .open else {
            c.close(code: .normal)
            return
        }
        // A text message was UTF-8-checked by the WebSocket layer (RFC 6455 §8.1).
        guard JSON.isValid(payload, utf8Validated: opcode == .text) else {
            peer.noticeCode = CloseCode.goingAway.rawValue
            c.close(code: .normal)
            return
        }
        let length = Envelope.wrappedLength(connIDLength: peer.connIDBytes.count, frameLength: payload.count)
        peer.connIDBytes.withUnsafeBytes { id in
            b.sendFrame(opcode: .text, length: length) { dst in
                _ = Envelope.wrap(connID: id, frame: payload, into: dst)
            }
        }
        metrics.framesPhoneToBinary += 1
        metrics.bytesPhoneToBinary += payload.count
        if b.aboveHighWater { setPhonesPaused(of: b, true) }
    }

    /// Forgets the cached binary of every phone of `binary` (it is leaving its slot).
    func uncacheBinary(_ binary: Peer) {
        for h in registry.phones(ofBinary: binary.handle) {
            if let info = connections[h]?.userInfo { unsafeDowncast(info, to: Peer.self).binary = nil }
        }
    }

    /// docs/protocol.md §7.2: route one envelope to its phone, byte-for-byte.
    private func binaryMessage(_ c: Connection, _ peer: Peer, _ payload: UnsafeRawBufferPointer) {
        guard let env = Envelope.parseBinaryEnvelope(payload) else {
            logRepeated(.binaryForwarderUnmarshalErr, peer: peer, ["server_id": peer.serverID, "conn_id": peer.connID])
            return
        }
        if let wake = env.pushWake, env.connID == .none {
            pushWake(peer, UnsafeRawBufferPointer(rebasing: payload[wake]))
            return
        }
        let target = env.withConnIDBytes(in: payload) { id in registry.phone(connID: id, ofBinary: peer.handle) }
        guard let phoneHandle = target, let pc = connections[phoneHandle], let phone = pc.userInfo as? Peer else {
            logRepeated(.binaryForwarderUnknownConnID, peer: peer, ["server_id": peer.serverID, "conn_id": peer.connID])
            return
        }
        guard pc.state == .open else { return }  // the phone is leaving; nothing more reaches it
        if let range = env.frame {
            let frame = UnsafeRawBufferPointer(rebasing: payload[range])
            // docs/protocol.md §7.5: each queued message is charged its length + 64 against the phone's budget.
            let charge = pc.queuedBytes + (phone.unwrittenMessages(written: pc.bytesOut) + 1) * Limits.outboxPerMessageOverhead
                + frame.count
            if charge > config.outboxBudget {
                overflow(pc, phone, directive: env.closeCode)
                return
            }
            pc.sendFrame(opcode: .text, payload: frame)
            phone.messageQueued(endingAt: pc.bytesOut + pc.queuedBytes)
            metrics.framesBinaryToPhone += 1
            metrics.bytesBinaryToPhone += frame.count
        }
        if let code = env.closeCode {
            phone.closedByBinary = true
            let wire = CloseCode(code)
            pc.close(code: wire.isValidOnWire ? wire : .normal)
        }
        // Last: shedding may close this binary too, freeing the buffer `payload` points into.
        if context.bufferedBytes > config.maxBufferedBytes { shedLargestHolders() }
    }

    /// A phone whose queue passed its budget: what is not yet in the kernel is dropped and it
    /// gets a close frame 1011 `phone backlog full` behind the frame it is reading, or the
    /// directive's own code (docs/operations.md, "Memory").
    func overflow(_ pc: Connection, _ phone: Peer, directive: UInt16?) {
        var code = CloseCode.internalError
        if let d = directive {
            phone.closedByBinary = true
            phone.noticeCode = d
            code = CloseCode(d).isValidOnWire ? CloseCode(d) : .normal
        } else {
            phone.noticeCode = CloseCode.internalError.rawValue
        }
        Log.warn("phone_backlog_full", ["server_id": phone.serverID, "conn_id": phone.connID])
        pc.closeDroppingBacklog(code: code, reason: "phone backlog full")
        phoneLeavesNow(phone)
    }

    /// A phone the relay is closing to get its memory back leaves the registry at once: its
    /// binary hears the close notice now, not when the socket finally goes (a phone that does
    /// not read keeps it until the write-stall timeout). `connectionDidClose` finds it gone.
    func phoneLeavesNow(_ phone: Peer) {
        perform(registry.phoneLeft(phone.handle, closeCode: phone.noticeCode, closedByBinary: phone.closedByBinary))
    }

    func setPhonesPaused(of binary: Connection, _ paused: Bool) {
        guard let peer = binary.userInfo as? Peer else { return }
        setPhonesPaused(ofBinary: peer, paused)
    }

    func setPhonesPaused(ofBinary peer: Peer, _ paused: Bool) {
        for h in registry.phones(ofBinary: peer.handle) {
            guard let pc = connections[h] else { continue }
            if paused { pc.pauseReading() } else { pc.resumeReading() }
        }
    }

    public func connectionDidDrain(_ c: Connection) {
        if let peer = c.userInfo as? Peer, peer.role == .binary { setPhonesPaused(of: c, false) }
    }

    public func connectionDidReceivePong(_ c: Connection) {
        guard let peer = c.userInfo as? Peer, peer.role == .binary else { return }
        perform(registry.incumbentAnswered(peer.handle, now: context.reactor.now))
    }

    public func connection(_ c: Connection, tlsHandshakeFinished ok: Bool) {
        if ok { metrics.tlsHandshakesOK += 1 } else { metrics.tlsHandshakesFailed += 1 }
    }

    // MARK: departures

    public func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        guard let peer = c.userInfo as? Peer else {
            halfOpen.remove(c)
            return
        }
        c.userInfo = nil
        connections[peer.handle] = nil
        liveWebSockets -= 1
        let key = peer.key
        if let n = perIP[key], n > 1 { perIP[key] = n - 1 } else { perIP[key] = nil }
        let wireCode = c.closeInitiatedByPeer ? peerCode : (localCode ?? peerCode)
        metrics.closed(code: wireCode)
        endLogScope(peer)
        let now = context.reactor.now
        switch peer.role {
        case .binary:
            // Phones paused for this binary's backlog read again: during grace their messages get
            // the grace answer (1000) rather than sitting unread.
            setPhonesPaused(ofBinary: peer, false)
            uncacheBinary(peer)
            Log.info("binary_disconnected", ["server_id": peer.serverID, "conn_id": peer.connID])
            perform(registry.binaryDisconnected(peer.handle, now: now))
        case .phone:
            // docs/protocol.md §8: the phone's own close code, or 1001 when it sent none; a phone the relay
            // dropped (heartbeat, write stall) is reported with the code it was dropped with.
            let code = peer.noticeCode ?? (c.closeInitiatedByPeer ? peerCode : localCode)?.rawValue
                ?? CloseCode.goingAway.rawValue
            perform(registry.phoneLeft(peer.handle, closeCode: code, closedByBinary: peer.closedByBinary))
            if peer.registered {
                Log.info("phone_unregistered", ["server_id": peer.serverID, "conn_id": peer.connID, "close_code": String(wireCode?.rawValue ?? 1006)])
            }
        }
        checkDrained()
    }

    // MARK: registry actions

    func perform(_ actions: [RegistryAction]) {
        for a in actions {
            switch a {
            case .closeConn(let h, let code, let reason):
                connections[h]?.close(code: code, reason: reason)
            case .probeIncumbent(let h):
                connections[h]?.sendPing()
            case .armTimer(let t, let at):
                // The Go relay's event name for a slot entering grace; operators' alerts use it.
                if case .grace(let serverID, _) = t { Log.info("server_released", ["server_id": serverID]) }
                let key = nextTimerKey
                nextTimerKey += 1
                registryTimers[key] = t
                timers.schedule(.registry, at: at, key: key)
            case .sendCloseNotice(let b, let connID, let code):
                let notice = Envelope.closeNotice(connID: connID, code: code)
                notice.withUnsafeBytes { connections[b]?.sendFrame(opcode: .text, payload: $0) }
            case .claimed(let h, let serverID, let kind):
                guard let c = connections[h], let peer = c.userInfo as? Peer else { continue }
                metrics.upgrade(.server, .accept)
                c.resumeReading()
                Log.info(kind == .takeover ? "server_id_takeover" : "server_claimed",
                         ["server_id": serverID, "conn_id": peer.connID, "binary_version": peer.version, "remote": peer.ip])
            case .claimRefused(let h, let serverID):
                metrics.upgrade(.server, .reject409)
                metrics.registerFailure(.serverInUse)
                logRepeated(.serverIDConflict, ["server_id": serverID, "conn_id": (connections[h]?.userInfo as? Peer)?.connID ?? ""])
            case .graceExpired(let serverID, _):
                metrics.graceExpiries += 1
                Log.info("grace_expired", ["server_id": serverID])
            }
        }
    }
}
