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

/// The routes this server knows.
enum Route { case quick, heavy, other }

/// One parsed request head.
struct RequestHead {
    var route: Route
    var keepAlive: Bool
    var bodyLength: Int
}

/// Parses the head in `bytes` (up to, not including, the blank line), on
/// the bytes themselves: building Strings for the request line and every
/// header took about a third of the server's user-space CPU per request
/// (perf, 32 wrk connections on /quick).
func parseHead(_ bytes: UnsafeBufferPointer<UInt8>) -> RequestHead? {
    var lines = HeadLines(bytes)
    guard let requestLine = lines.next() else { return nil }
    // METHOD SP PATH SP VERSION
    guard let firstSpace = requestLine.firstIndex(of: 32) else { return nil }
    let afterMethod = requestLine[(firstSpace + 1)...]
    guard let secondSpace = afterMethod.firstIndex(of: 32) else { return nil }
    let path = afterMethod[..<secondSpace]
    let version = afterMethod[(secondSpace + 1)...]
    guard !path.isEmpty, !version.isEmpty, !version.contains(32) else { return nil }
    let route: Route = path.elementsEqual("/quick".utf8) ? .quick : path.elementsEqual("/heavy".utf8) ? .heavy : .other
    var head = RequestHead(route: route, keepAlive: version.elementsEqual("HTTP/1.1".utf8), bodyLength: 0)
    while let line = lines.next() {
        guard let colon = line.firstIndex(of: 58) else { continue }  // ':'
        let name = line[..<colon]
        var value = line[(colon + 1)...]
        while value.first == 32 || value.first == 9 { value = value.dropFirst() }
        while value.last == 32 || value.last == 9 { value = value.dropLast() }
        if equalsIgnoringASCIICase(name, "connection") {
            if equalsIgnoringASCIICase(value, "close") { head.keepAlive = false }
            else if equalsIgnoringASCIICase(value, "keep-alive") { head.keepAlive = true }
        } else if equalsIgnoringASCIICase(name, "content-length") {
            var n = 0
            for b in value {
                guard b >= 48 && b <= 57, n < 1 << 40 else { n = 0; break }
                n = n * 10 + Int(b - 48)
            }
            head.bodyLength = n
        }
    }
    return head
}

/// The CRLF-separated lines of a request head.
struct HeadLines: IteratorProtocol {
    let bytes: UnsafeBufferPointer<UInt8>
    var start = 0
    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func next() -> Slice<UnsafeBufferPointer<UInt8>>? {
        guard start < bytes.count else { return nil }
        var end = start
        while end < bytes.count && !(bytes[end] == 13 && end + 1 < bytes.count && bytes[end + 1] == 10) { end += 1 }
        let line = bytes[start..<end]
        start = end + 2
        return line
    }
}

/// ASCII case-insensitive comparison of header bytes with a lowercase literal.
func equalsIgnoringASCIICase(_ bytes: Slice<UnsafeBufferPointer<UInt8>>, _ lowercase: StaticString) -> Bool {
    guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
    let expected = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
    for (b, e) in zip(bytes, expected) {
        let lower = b >= 65 && b <= 90 ? b + 32 : b
        if lower != e { return false }
    }
    return true
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
                guard let head = buffer.withUnsafeBufferPointer({ parseHead(UnsafeBufferPointer(rebasing: $0[..<(end - 4)])) })
                else { return }
                guard buffer.count >= end + head.bodyLength else { break }
                buffer.removeFirst(end + head.bodyLength)
                scanned = 0
                switch head.route {
                case .quick:
                    try connection.write(head.keepAlive ? quickResponse : closeResponse)
                case .heavy:
                    let me = GreenThread.current
                    me.setPriority(.low)
                    let x = burn(heavyIterations)
                    me.setPriority(.normal)
                    if x == 0 { print("") }  // keeps the burn from being optimized away
                    try connection.write(head.keepAlive ? quickResponse : closeResponse)
                case .other:
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
