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
//             {"version":1,"command":"summary"}   (counts only: cheap)
//   response: {"version":1,"ok":true,"snapshot":{...}}
//             {"version":1,"ok":true,"summary":{...}}
//             {"version":1,"ok":false,"error":"..."}

import FoundationEssentials

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
        /// A KernelSummary: counts only, cheap enough to ask every process.
        case summary
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

    private enum CodingKeys: String, CodingKey { case version, command, includeStacks }

    /// Decodes field by field, so each refusal names what is wrong: the
    /// version first (a request of another version is refused whatever
    /// else it says), then the command, then the optional flag.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let version = try? c.decode(Int.self, forKey: .version) else {
            throw DebugRequestError("missing integer 'version'")
        }
        guard version == DebugProtocol.version else {
            throw DebugRequestError("protocol version \(version) is not supported (this process speaks \(DebugProtocol.version))")
        }
        guard let name = try? c.decode(String.self, forKey: .command) else {
            throw DebugRequestError("missing string 'command'")
        }
        guard let command = Command(rawValue: name) else {
            throw DebugRequestError("unknown command '\(name.prefix(40))'; known: "
                                    + Command.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let stacks: Bool?
        do { stacks = try c.decodeIfPresent(Bool.self, forKey: .includeStacks) } catch {
            throw DebugRequestError("'includeStacks' must be true or false")
        }
        self.init(command: command, includeStacks: stacks ?? false, version: version)
    }

    /// Parses a request payload (the bytes after the length header) with
    /// FoundationEssentials' JSONDecoder, refusing anything malformed with
    /// a message for the client. The size is checked first: the decoder
    /// then only ever sees a few KiB (its nesting limit bounds the rest).
    public static func parse(_ payload: [UInt8]) throws -> DebugRequest {
        guard payload.count <= DebugProtocol.maxRequestBytes else {
            throw DebugRequestError("request of \(payload.count) bytes exceeds \(DebugProtocol.maxRequestBytes)")
        }
        do {
            return try JSONDecoder().decode(DebugRequest.self, from: Data(payload))
        } catch let e as DebugRequestError {
            throw e
        } catch DecodingError.typeMismatch(_, _) {
            throw DebugRequestError("a request is a JSON object")
        } catch let DecodingError.dataCorrupted(context) {
            throw DebugRequestError("not JSON: \(context.debugDescription)")
        } catch {
            throw DebugRequestError("unreadable request: \(error)")
        }
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
    /// The answer to a `summary` request.
    public var summary: KernelSummary?

    public init(snapshot: KernelSnapshot?) {
        version = DebugProtocol.version
        ok = true
        error = nil
        self.snapshot = snapshot
    }

    public init(summary: KernelSummary) {
        version = DebugProtocol.version
        ok = true
        error = nil
        self.summary = summary
    }

    public init(error: String) {
        version = DebugProtocol.version
        ok = false
        self.error = error
        snapshot = nil
    }
}
