// gt-http: a thread-per-connection HTTP/1.1 keep-alive server on GreenTCP,
// the I/O benchmark's GreenThreads side (Tools/peers/http-bench.sh drives
// it with wrk beside a SwiftNIO and a Go net/http server, same routes).
//
// Routes:
//   GET /quick   a 2-byte body ("ok"), at once
//   GET /heavy   burns ~10 ms of CPU first, at low priority: the handler
//                lowers its thread's priority for the burn, so quick
//                requests (normal priority) preempt it and never wait
//                behind it; it returns to normal to write its answer.
//
// One acceptor thread spawns one green thread per connection. It keeps
// normal priority: a thread parked on I/O above the running threads' level
// keeps the netpoller's thread watching, one OS wake-up per event (docs/io.md,
// "Who watches while every processor is busy"); at normal it still outranks
// the heavy route's low-priority burns, so a new connection preempts them. Requests are GETs without bodies (a Content-Length body is
// read and ignored); "Connection: close" or HTTP/1.0 without keep-alive
// ends the connection after the answer.
//
//   gt-http [--port 8080] [--workers N]
import CGreenCore
import GreenThreads
import Glibc

func option(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: "--" + name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

/// Iterations of `burn` that take 10 ms of CPU on this machine, measured
/// once at start (on the OS thread's CPU clock, before the kernel runs).
let heavyIterations: Int = {
    var n = 100_000
    while true {
        let t0 = gt_thread_cpu_ns()
        _ = burn(n)
        let ns = gt_thread_cpu_ns() - t0
        if ns > 20_000_000 { return Int(Double(n) * 10_000_000 / Double(ns)) }
        n *= 2
    }
}()

@inline(never)
func burn(_ iterations: Int) -> UInt64 {
    var x: UInt64 = 88172645463325252
    for _ in 0..<iterations {  // xorshift: no memory traffic, no calls
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
    }
    return x
}

let quickResponse = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok".utf8)
let closeResponse = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok".utf8)
let notFound = Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".utf8)

/// One parsed request head.
struct RequestHead {
    var path: Substring
    var keepAlive: Bool
    var bodyLength: Int
}

/// Parses the head in `bytes[..<end]` (end: index of the blank line).
func parseHead(_ bytes: ArraySlice<UInt8>) -> RequestHead? {
    let text = String(decoding: bytes, as: UTF8.self)
    var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).makeIterator()
    guard let requestLine = lines.next() else { return nil }
    let parts = requestLine.split(separator: " ")
    guard parts.count == 3 else { return nil }
    var head = RequestHead(path: parts[1], keepAlive: parts[2] == "HTTP/1.1", bodyLength: 0)
    while let line = lines.next() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].drop(while: { $0 == " " })
        if name == "connection" {
            let v = value.lowercased()
            if v == "close" { head.keepAlive = false } else if v == "keep-alive" { head.keepAlive = true }
        } else if name == "content-length" {
            head.bodyLength = Int(value) ?? 0
        }
    }
    return head
}

/// Index just past "\r\n\r\n" in `buffer[from...]`, if present.
func headEnd(_ buffer: [UInt8], from: Int) -> Int? {
    var i = max(from, 3)
    while i < buffer.count {
        if buffer[i] == 10 && buffer[i - 1] == 13 && buffer[i - 2] == 10 && buffer[i - 3] == 13 { return i + 1 }
        i += 1
    }
    return nil
}

func serve(_ connection: GreenTCPStream) {
    defer { connection.close() }
    var buffer: [UInt8] = []
    var scanned = 0
    var chunk = [UInt8](repeating: 0, count: 4096)
    do {
        while true {
            // Take every complete request already buffered (pipelining).
            while let end = headEnd(buffer, from: scanned) {
                guard let head = parseHead(buffer[..<(end - 4)]) else { return }
                guard buffer.count >= end + head.bodyLength else { break }
                buffer.removeFirst(end + head.bodyLength)
                scanned = 0
                switch head.path {
                case "/quick":
                    try connection.write(head.keepAlive ? quickResponse : closeResponse)
                case "/heavy":
                    let me = GreenThread.current
                    me.setPriority(.low)
                    let x = burn(heavyIterations)
                    me.setPriority(.normal)
                    if x == 0 { print("") }  // keeps the burn from being optimized away
                    try connection.write(head.keepAlive ? quickResponse : closeResponse)
                default:
                    try connection.write(notFound)
                }
                if !head.keepAlive { return }
            }
            scanned = max(0, buffer.count - 3)
            let n = try chunk.withUnsafeMutableBytes { try connection.read(into: $0) }
            if n == 0 { return }
            buffer.append(contentsOf: chunk[0..<n])
            if buffer.count > 64 * 1024 { return }  // a head this long is not a benchmark client
        }
    } catch {
        // The client went away (ECONNRESET, EPIPE): nothing to answer.
    }
}

let port = UInt16(option("port") ?? "8080") ?? 8080
let workers = Int(option("workers") ?? "") ?? KernelConfiguration().workers
_ = heavyIterations
do {
    try Kernel.run(KernelConfiguration(workers: workers)) {
        let listener = try GreenTCPListener(host: "127.0.0.1", port: port, backlog: 4096)
        gt_write_stderr("gt-http listening on 127.0.0.1:\(listener.port), \(workers) workers, heavy=\(heavyIterations) iterations\n")
        while true {
            let connection = try listener.accept()
            try GreenThread.spawn(name: "conn") { serve(connection) }
        }
    }
} catch {
    gt_write_stderr("gt-http: \(error)\n")
    exit(1)
}
