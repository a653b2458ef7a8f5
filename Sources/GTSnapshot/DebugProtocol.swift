// DebugProtocol: how gt-ps talks to a GreenThreads process over its Unix
// domain socket ($XDG_RUNTIME_DIR/gt/<pid>.sock, else /tmp/gt-<uid>/).
//
// One request per connection, one response, then the server closes. Each
// message is a frame: a 4-byte big-endian length, then that many bytes of
// UTF-8 JSON. Both messages carry `version` (DebugProtocol.version); a
// server refuses a request of another version with an error response
// rather than guessing. Requests are tiny and bounded (`maxRequestBytes`);
// responses carry a KernelSnapshot and may be large.
//
//   request:  {"version":1,"command":"snapshot","includeStacks":true}
//   response: {"version":1,"ok":true,"snapshot":{...}}
//             {"version":1,"ok":false,"error":"..."}

public enum DebugProtocol {
    /// The version of requests and responses this build speaks.
    public static let version = 1
    /// Requests above this size are refused unread (they are a few dozen bytes).
    public static let maxRequestBytes = 4096
    /// Responses above this size are refused by the client.
    public static let maxResponseBytes = 512 << 20

    /// `payload` with its 4-byte big-endian length in front.
    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        let n = UInt32(payload.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + payload
    }

    /// The payload length announced by a frame's 4-byte header.
    public static func payloadLength(header: [UInt8]) -> Int {
        precondition(header.count == 4, "a frame header is 4 bytes")
        return header.reduce(0) { $0 << 8 | Int($1) }
    }

    /// The directory a process of user `uid` serves its socket in:
    /// `$GT_DEBUG_SOCKET_DIR` if set (tests, containers), else
    /// `$XDG_RUNTIME_DIR/gt` (a per-user tmpfs on systemd machines), else
    /// `/tmp/gt-<uid>`. The server creates it mode 0700.
    public static func socketDirectory(environment: [String: String], uid: UInt32) -> String {
        if let dir = environment["GT_DEBUG_SOCKET_DIR"], !dir.isEmpty { return dir }
        if let xdg = environment["XDG_RUNTIME_DIR"], xdg.hasPrefix("/") { return xdg + "/gt" }
        return fallbackSocketDirectory(uid: uid)
    }

    /// `/tmp/gt-<uid>`: where a process without XDG_RUNTIME_DIR serves.
    public static func fallbackSocketDirectory(uid: UInt32) -> String { "/tmp/gt-\(uid)" }

    /// The socket file name for a process: `<pid>.sock`.
    public static func socketName(pid: Int32) -> String { "\(pid).sock" }

    /// The pid in a socket file name, if it is one of ours.
    public static func pid(fromSocketName name: String) -> Int32? {
        guard name.hasSuffix(".sock") else { return nil }
        let digits = name.dropLast(5)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int32(digits)
    }
}

/// What a client asks for.
public struct DebugRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable, CaseIterable {
        /// A KernelSnapshot (with traces when `includeStacks`).
        case snapshot
        /// An empty successful response: is a kernel listening?
        case ping
    }

    public var version: Int
    public var command: Command
    public var includeStacks: Bool

    public init(command: Command, includeStacks: Bool = false, version: Int = DebugProtocol.version) {
        self.version = version
        self.command = command
        self.includeStacks = includeStacks
    }

    /// Parses a request payload (the bytes after the length header),
    /// refusing anything malformed with a message for the client.
    public static func parse(_ payload: [UInt8]) throws -> DebugRequest {
        guard payload.count <= DebugProtocol.maxRequestBytes else {
            throw DebugRequestError("request of \(payload.count) bytes exceeds \(DebugProtocol.maxRequestBytes)")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(payload, maxDepth: 8) } catch let e as JSONError {
            throw DebugRequestError(e.description)
        }
        guard case .object = json else { throw DebugRequestError("a request is a JSON object") }
        guard let version = json["version"]?.intValue else { throw DebugRequestError("missing integer 'version'") }
        guard version == DebugProtocol.version else {
            throw DebugRequestError("protocol version \(version) is not supported (this process speaks \(DebugProtocol.version))")
        }
        guard let name = json["command"]?.stringValue else { throw DebugRequestError("missing string 'command'") }
        guard let command = Command(rawValue: name) else {
            throw DebugRequestError("unknown command '\(name.prefix(40))'; known: "
                                    + Command.allCases.map(\.rawValue).joined(separator: ", "))
        }
        var stacks = false
        if let value = json["includeStacks"] {
            guard let b = value.boolValue else { throw DebugRequestError("'includeStacks' must be true or false") }
            stacks = b
        }
        return DebugRequest(command: command, includeStacks: stacks, version: version)
    }
}

/// Why a request was refused.
public struct DebugRequestError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What the server answers.
public struct DebugResponse: Codable, Sendable {
    public var version: Int
    public var ok: Bool
    /// Why the request failed (ok == false).
    public var error: String?
    public var snapshot: KernelSnapshot?

    public init(snapshot: KernelSnapshot?) {
        version = DebugProtocol.version
        ok = true
        error = nil
        self.snapshot = snapshot
    }

    public init(error: String) {
        version = DebugProtocol.version
        ok = false
        self.error = error
        snapshot = nil
    }
}
