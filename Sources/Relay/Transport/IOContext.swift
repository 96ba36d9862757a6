import RelayReactor
import RelayCodecs

/// Loop-wide resources shared by every connection: the reactor and one read buffer.
/// Reads land in the shared buffer; only a partial frame left at its end is copied into the
/// connection's own buffer, so an idle or steady small-message connection owns no input memory.
public final class IOContext {
    public let reactor: Reactor
    public let readBuffer: UnsafeMutableRawPointer
    public let readBufferSize: Int
    /// A whole message of the default limit (256 KiB) plus its frame header fits in one read,
    /// so large frames are handled in place rather than copied out as partial frames.
    public static let defaultReadBufferSize = Limits.maxMessageBytes + 16
    /// Bytes queued for writing across every connection (docs/protocol.md §7.5 global budget, metrics).
    public var queuedBytes = 0
    /// Sockets held by live `Connection`s (opened at init, closed in `abort` or `deinit`): the
    /// part of the process's descriptor count that moves after boot (`process_open_fds`).
    public package(set) var connectionDescriptors = 0
    /// Bytes of input and message-assembly buffers (their capacity) held by every connection:
    /// unfinished messages, counted against the same budget as queued bytes.
    public package(set) var heldBytes = 0
    /// Queued plus held bytes may not pass this (`--max-buffered-bytes`): a connection whose
    /// buffers would grow past it asks its delegate to shed holders first (`needsBufferRoom`).
    public var bufferBudget = Int.max
    public var bufferedBytes: Int { queuedBytes + heldBytes }
    /// Bytes of large buffers handed back to malloc since the owner last returned free memory
    /// to the kernel; past `Limits.trimAfterReleasedBytes` each release calls `onLargeRelease`.
    public var releasedBytes = 0
    public var onLargeRelease: (() -> Void)?
    /// The loop's permessage-deflate streams (RFC 7692), made on the first compressed message:
    /// a relay that negotiates no compression never allocates them.
    public private(set) lazy var deflateCodec = DeflateCodec()
    /// Blocks for connection buffers (ByteBuffer.swift).
    public let pool = BufferPool()
    /// TLS handshake steps (`SSL_do_handshake` calls) allowed per loop iteration (a fair loop: a connection storm cannot starve live relays):
    /// a storm of new TLS clients cannot starve established connections. One step that
    /// processes a ClientHello costs an ECDHE and a signature, roughly 0.1–0.3 ms.
    public var handshakeStepsPerIteration = 64
    private var budgetIteration: UInt64 = .max
    private var budgetUsed = 0
    /// The application whose records are the delegates of this loop's WebSockets (the relay
    /// service), unretained: a delegate reaches it through the connection it is called for rather
    /// than keeping a reference of its own (8 bytes per idle connection, docs/benchmarks.md M1).
    /// One per loop; it outlives every connection.
    public var application: UnsafeMutableRawPointer?
    /// The distinct `ConnectionSettings` of this loop's connections (the relay has one), so a
    /// connection names its own in one byte rather than an 8-byte reference (docs/benchmarks.md, M1).
    private var connectionSettingsTable: [ConnectionSettings] = []

    public init(reactor: Reactor, readBufferSize: Int = IOContext.defaultReadBufferSize) {
        self.reactor = reactor
        self.readBufferSize = readBufferSize
        self.readBuffer = UnsafeMutableRawPointer.allocate(byteCount: readBufferSize, alignment: 16)
    }

    deinit { readBuffer.deallocate() }

    /// A buffer larger than a pool block went back to malloc.
    package func noteReleased(_ bytes: Int) {
        releasedBytes += bytes
        if releasedBytes >= Limits.trimAfterReleasedBytes { onLargeRelease?() }
    }

    /// The place of `settings` in this context's table, added on first use.
    package func index(of settings: ConnectionSettings) -> UInt8 {
        if let i = connectionSettingsTable.firstIndex(where: { $0 === settings }) { return UInt8(i) }
        precondition(connectionSettingsTable.count <= Int(UInt8.max), "more than 256 ConnectionSettings on one loop")
        connectionSettingsTable.append(settings)
        return UInt8(connectionSettingsTable.count - 1)
    }

    package func connectionSettings(_ index: UInt8) -> ConnectionSettings { connectionSettingsTable[Int(index)] }

    /// Takes one handshake step from this iteration's budget; false when it is spent.
    package func takeHandshakeStep() -> Bool {
        if budgetIteration != reactor.iteration {
            budgetIteration = reactor.iteration
            budgetUsed = 0
        }
        guard budgetUsed < handshakeStepsPerIteration else { return false }
        budgetUsed += 1
        return true
    }
}
