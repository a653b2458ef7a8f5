// nio-http: the SwiftNIO NIOHTTP1 peer of gt-http (same routes):
//   GET /quick  "ok" at once, on the event loop
//   GET /heavy  burns ~10 ms of CPU, then "ok":
//               --heavy loop  on the event loop itself (the naive server)
//               --heavy pool  on an NIOThreadPool (the recommended one),
//                             the answer written back on the loop
// One event loop per core (System.coreCount), keep-alive by default.
//
//   nio-http [--port 8081] [--heavy loop|pool]
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

func option(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: "--" + name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

@inline(never)
func burn(_ iterations: Int) -> UInt64 {
    var x: UInt64 = 88172645463325252
    for _ in 0..<iterations {  // xorshift, as in gt-http
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
    }
    return x
}

func threadCPUNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Iterations that take 10 ms of CPU here (as gt-http measures it).
let heavyIterations: Int = {
    var n = 100_000
    while true {
        let t0 = threadCPUNanoseconds()
        _ = burn(n)
        let ns = threadCPUNanoseconds() - t0
        if ns > 20_000_000 { return Int(Double(n) * 10_000_000 / Double(ns)) }
        n *= 2
    }
}()

final class Handler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let pool: NIOThreadPool?
    var keepAlive = true
    var path = ""

    init(pool: NIOThreadPool?) { self.pool = pool }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            path = head.uri
        case .body:
            break
        case .end:
            let keepAlive = self.keepAlive
            switch path {
            case "/quick":
                respond(context: context, status: .ok, keepAlive: keepAlive)
            case "/heavy":
                if let pool {
                    let loop = context.eventLoop
                    let boxed = NIOLoopBound(context, eventLoop: loop)
                    pool.submit { _ in
                        _ = burn(heavyIterations)
                        loop.execute { self.respond(context: boxed.value, status: .ok, keepAlive: keepAlive) }
                    }
                } else {
                    _ = burn(heavyIterations)
                    respond(context: context, status: .ok, keepAlive: keepAlive)
                }
            default:
                respond(context: context, status: .notFound, keepAlive: keepAlive)
            }
        }
    }

    func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: status == .ok ? "2" : "0")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                      promise: nil)
        if status == .ok {
            var body = context.channel.allocator.buffer(capacity: 2)
            body.writeString("ok")
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlushPromise()
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if !keepAlive {
            done.futureResult.whenComplete { _ in context.close(promise: nil) }
        }
    }
}

extension ChannelHandlerContext {
    func writeAndFlushPromise() -> EventLoopPromise<Void> { eventLoop.makePromise() }
}

let port = Int(option("port") ?? "8081") ?? 8081
let heavyMode = option("heavy") ?? "pool"
_ = heavyIterations
let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
let pool: NIOThreadPool? = heavyMode == "pool" ? NIOThreadPool(numberOfThreads: System.coreCount) : nil
pool?.start()
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.backlog, value: 4096)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
            channel.pipeline.addHandler(Handler(pool: pool))
        }
    }
let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("nio-http listening on 127.0.0.1:\(port), \(System.coreCount) loops, heavy on \(heavyMode), heavy=\(heavyIterations) iterations")
fflush(stdout)
try channel.closeFuture.wait()
