// JSONWriter: a Codable Encoder that writes JSON without Foundation (the
// library that serves snapshots depends on the toolchain only). The output
// is what Foundation's JSONDecoder reads back with default strategies: keyed
// containers become objects (keys in encoding order), unkeyed ones arrays,
// nil optionals are left out (synthesized encodeIfPresent), integers are
// written exactly, strings are escaped per RFC 8259.
//
// It streams: bytes go straight into one buffer, so a snapshot of 10,000
// threads with their traces (tens of megabytes) costs no object per value.
// That relies on the order in which Codable values are encoded: each value
// is written completely before its next sibling starts, which holds for
// synthesized conformances and the standard library's. A container is
// closed lazily: writing at depth d first closes every container opened
// deeper than d, and `encode` closes whatever is left at the end.

public enum JSONWriter {
    /// Encodes `value` as compact JSON (UTF-8).
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let stream = JSONStream()
        try value.encode(to: StreamEncoder(stream: stream, depth: 0, codingPath: []))
        stream.closeDeeper(than: 0)
        if stream.bytes.isEmpty { stream.append("{}") }  // a value that encoded nothing
        return stream.bytes
    }
}

/// The output buffer and the stack of open containers.
final class JSONStream {
    var bytes: [UInt8] = []
    /// Closing byte of each open container, outermost first.
    private var closers: [UInt8] = []
    /// Whether each open container has an element yet (for commas).
    private var hasElement: [Bool] = []

    init() { bytes.reserveCapacity(1 << 16) }

    var depth: Int { closers.count }

    func append(_ text: String) { bytes.append(contentsOf: text.utf8) }

    /// Closes containers opened deeper than `depth` (their values are done).
    func closeDeeper(than depth: Int) {
        while closers.count > depth {
            bytes.append(closers.removeLast())
            hasElement.removeLast()
        }
    }

    /// Starts an element of the container at `depth` (1 and more: the
    /// top-level value itself is at depth 0 and has no siblings).
    func beginElement(at depth: Int) {
        closeDeeper(than: depth)
        if hasElement[depth - 1] { bytes.append(UInt8(ascii: ",")) }
        hasElement[depth - 1] = true
    }

    /// Opens `{` or `[` for a value whose element was begun; returns the
    /// new container's depth.
    func open(_ opener: UInt8, _ closer: UInt8) -> Int {
        bytes.append(opener)
        closers.append(closer)
        hasElement.append(false)
        return closers.count
    }

    func key(_ key: String) {
        writeString(key)
        bytes.append(UInt8(ascii: ":"))
    }

    func writeString(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let digits = Array("0123456789abcdef".utf8)
                bytes += Array("\\u00".utf8) + [digits[Int(b >> 4)], digits[Int(b & 15)]]
            default: bytes.append(b)  // UTF-8 passes through: JSON text is UTF-8
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    func double(_ value: Double, _ path: [any CodingKey]) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "JSON has no \(value)"))
        }
        append("\(value)")
    }
}

/// An encoder for one value whose element was already begun in its
/// container (a key written, a comma placed).
struct StreamEncoder: Encoder {
    let stream: JSONStream
    /// The depth of the container this value sits in.
    let depth: Int
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        stream.closeDeeper(than: depth)
        let inner = stream.open(UInt8(ascii: "{"), UInt8(ascii: "}"))
        return KeyedEncodingContainer(KeyedStreamContainer<Key>(stream: stream, depth: inner, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        stream.closeDeeper(than: depth)
        let inner = stream.open(UInt8(ascii: "["), UInt8(ascii: "]"))
        return UnkeyedStreamContainer(stream: stream, depth: inner, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleStreamContainer(stream: stream, depth: depth, codingPath: codingPath)
    }
}

struct KeyedStreamContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let stream: JSONStream
    let depth: Int
    var codingPath: [any CodingKey]

    private func begin(_ key: Key) {
        stream.beginElement(at: depth)
        stream.key(key.stringValue)
    }

    mutating func encodeNil(forKey key: Key) throws { begin(key); stream.append("null") }
    mutating func encode(_ value: Bool, forKey key: Key) throws { begin(key); stream.append(value ? "true" : "false") }
    mutating func encode(_ value: String, forKey key: Key) throws { begin(key); stream.writeString(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { begin(key); try stream.double(value, codingPath + [key]) }
    mutating func encode(_ value: Float, forKey key: Key) throws { begin(key); try stream.double(Double(value), codingPath + [key]) }
    mutating func encode(_ value: Int, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: Int8, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: Int16, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: Int32, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: Int64, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: UInt, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { begin(key); stream.append("\(value)") }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        begin(key)
        try encodeNested(value, stream: stream, depth: depth, path: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        begin(key)
        return StreamEncoder(stream: stream, depth: depth, codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        begin(key)
        return StreamEncoder(stream: stream, depth: depth, codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        stream.beginElement(at: depth)
        stream.key("super")
        return StreamEncoder(stream: stream, depth: depth, codingPath: codingPath)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        begin(key)
        return StreamEncoder(stream: stream, depth: depth, codingPath: codingPath + [key])
    }
}

/// The index of an element in an unkeyed container, for coding paths.
struct IndexKey: CodingKey {
    var stringValue: String { "\(intValue!)" }
    var intValue: Int?
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

struct UnkeyedStreamContainer: UnkeyedEncodingContainer {
    let stream: JSONStream
    let depth: Int
    var codingPath: [any CodingKey]
    private(set) var count = 0

    init(stream: JSONStream, depth: Int, codingPath: [any CodingKey]) {
        self.stream = stream
        self.depth = depth
        self.codingPath = codingPath
    }

    private mutating func begin() -> [any CodingKey] {
        stream.beginElement(at: depth)
        count += 1
        return codingPath + [IndexKey(count - 1)]
    }

    mutating func encodeNil() throws { _ = begin(); stream.append("null") }
    mutating func encode(_ value: Bool) throws { _ = begin(); stream.append(value ? "true" : "false") }
    mutating func encode(_ value: String) throws { _ = begin(); stream.writeString(value) }
    mutating func encode(_ value: Double) throws { try stream.double(value, begin()) }
    mutating func encode(_ value: Float) throws { try stream.double(Double(value), begin()) }
    mutating func encode(_ value: Int) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: Int8) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: Int16) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: Int32) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: Int64) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: UInt) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: UInt8) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: UInt16) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: UInt32) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode(_ value: UInt64) throws { _ = begin(); stream.append("\(value)") }
    mutating func encode<T: Encodable>(_ value: T) throws {
        let path = begin()
        try encodeNested(value, stream: stream, depth: depth, path: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = begin()
        return StreamEncoder(stream: stream, depth: depth, codingPath: path).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = begin()
        return StreamEncoder(stream: stream, depth: depth, codingPath: path).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let path = begin()
        return StreamEncoder(stream: stream, depth: depth, codingPath: path)
    }
}

struct SingleStreamContainer: SingleValueEncodingContainer {
    let stream: JSONStream
    /// The depth of the container the value sits in; its element is begun.
    let depth: Int
    var codingPath: [any CodingKey]

    mutating func encodeNil() throws { stream.append("null") }
    mutating func encode(_ value: Bool) throws { stream.append(value ? "true" : "false") }
    mutating func encode(_ value: String) throws { stream.writeString(value) }
    mutating func encode(_ value: Double) throws { try stream.double(value, codingPath) }
    mutating func encode(_ value: Float) throws { try stream.double(Double(value), codingPath) }
    mutating func encode(_ value: Int) throws { stream.append("\(value)") }
    mutating func encode(_ value: Int8) throws { stream.append("\(value)") }
    mutating func encode(_ value: Int16) throws { stream.append("\(value)") }
    mutating func encode(_ value: Int32) throws { stream.append("\(value)") }
    mutating func encode(_ value: Int64) throws { stream.append("\(value)") }
    mutating func encode(_ value: UInt) throws { stream.append("\(value)") }
    mutating func encode(_ value: UInt8) throws { stream.append("\(value)") }
    mutating func encode(_ value: UInt16) throws { stream.append("\(value)") }
    mutating func encode(_ value: UInt32) throws { stream.append("\(value)") }
    mutating func encode(_ value: UInt64) throws { stream.append("\(value)") }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try value.encode(to: StreamEncoder(stream: stream, depth: depth, codingPath: codingPath))
    }
}

/// Writes a nested Encodable whose element (key, comma) is begun in the
/// container at `depth`: `{}` if it encoded nothing.
private func encodeNested<T: Encodable>(_ value: T, stream: JSONStream, depth: Int, path: [any CodingKey]) throws {
    let before = stream.bytes.count
    try value.encode(to: StreamEncoder(stream: stream, depth: depth, codingPath: path))
    if stream.bytes.count == before { stream.append("{}") }
}
