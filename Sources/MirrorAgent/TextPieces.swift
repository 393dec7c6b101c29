import NIOCore
import NIOHTTP1

/// Text made in pieces of about `pieceBytes` (a piece ends after the item that reaches
/// it), each made when it is taken: the metrics exposition (68 MB at the quotas) and
/// GET /v1/stats (47 MB) are sent piece by piece instead of being held whole.
struct TextPieces: Sequence, IteratorProtocol, Sendable {
    /// `count` items, item i written by `write(i, &text)`.
    struct Part: Sendable {
        var count: Int
        var write: @Sendable (Int, inout String) -> Void
    }
    private let parts: [Part]
    private let pieceBytes: Int
    private var part = 0, item = 0

    init(_ parts: [Part], pieceBytes: Int) {
        self.parts = parts
        self.pieceBytes = Swift.max(1, pieceBytes)
    }

    mutating func next() -> String? {
        guard part < parts.count else { return nil }
        var text = ""
        while part < parts.count && text.utf8.count < pieceBytes {
            if item < parts[part].count { parts[part].write(item, &text) }
            item += 1
            if item >= parts[part].count { part += 1; item = 0 }
        }
        return text
    }
}

/// Writes a response body piece by piece, each once the one before it is in the socket
/// (a slow client slows the making, it does not make the agent buffer the rest), then
/// the end; closes the connection after it when `close`. Throws when the client went
/// away; the caller then closes. The head has been written.
func writeBodyPieces<H: ChannelInboundHandler>(_ next: () -> String?, close: Bool, loop: EventLoop,
                                                bound: NIOLoopBound<(H, ChannelHandlerContext)>) async throws {
    while let text = next() {
        try await loop.flatSubmit {
            let context = bound.value.1
            return context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(string: text)))))
        }.get()
    }
    try await loop.flatSubmit {
        let context = bound.value.1
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if close { done.whenComplete { _ in context.close(promise: nil) } }
        return done
    }.get()
}
