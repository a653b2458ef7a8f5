// SocketAddress: a TCP endpoint from a host string and a port. Numeric
// addresses (IPv4, IPv6) are parsed in place; names go through
// getaddrinfo(3), which may block on DNS, so on a green thread it runs on
// the blocking pool (GreenThread.blocking).
import CGreenCore
import Glibc

struct SocketAddress {
    var storage = sockaddr_storage()
    var length: Int32 = 0

    var family: Int32 { Int32(storage.ss_family) }

    /// The address of `host`:`port`, resolving names when needed.
    static func resolve(host: String, port: UInt16, operation: String) throws -> SocketAddress {
        var address = SocketAddress()
        let parsed = host.withCString { gt_io_parse_address($0, port, &address.storage) }
        if parsed.value > 0 {
            address.length = Int32(parsed.value)
            return address
        }
        let lookup = { () -> SocketAddress? in
            var resolved = SocketAddress()
            let r = host.withCString { gt_io_resolve($0, port, &resolved.storage) }
            guard r.value > 0 else { return nil }
            resolved.length = Int32(r.value)
            return resolved
        }
        // getaddrinfo can wait seconds on DNS: never on a worker.
        if let found = try GreenThread.blocking(lookup) { return found }
        throw GreenIOError(operation: operation, errno: EHOSTUNREACH,
                           detail: "cannot resolve host '\(host)'")
    }
}
