/// Loop-wide resources shared by every connection: the reactor and one read buffer.
/// Reads land in the shared buffer; only a partial frame left at its end is copied into the
/// connection's own buffer, so an idle or steady small-message connection owns no input memory.
public final class IOContext {
    public let reactor: Reactor
    public let readBuffer: UnsafeMutableRawPointer
    public let readBufferSize: Int

    public init(reactor: Reactor, readBufferSize: Int = 64 * 1024) {
        self.reactor = reactor
        self.readBufferSize = readBufferSize
        self.readBuffer = UnsafeMutableRawPointer.allocate(byteCount: readBufferSize, alignment: 16)
    }

    deinit { readBuffer.deallocate() }
}
