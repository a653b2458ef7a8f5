// gt-ps against a live test-host process (issue 15): grouped stacks with
// file:line, filters and columns, the summary request, JSON passed through,
// --watch with CPU% and keys in a real terminal (tmux); and the snapshot
// server (issue 10/15): idle clients do not delay others, the client cap
// refuses and counts, sockets are close-on-exec, and names cannot inject
// terminal escapes.
import Foundation
import GTSnapshot
import Glibc
import Testing

extension GreenThreadsTests {
    @Suite("Debugging: gt-ps features and the snapshot server's clients")
    struct DebugToolTests {
        // MARK: The server

        /// Regression: the server served one connection at a time, each
        /// allowed 1 s to send its request, so 50 silent connections kept
        /// gt-ps waiting 50 s (past its 10 s timeout).
        @Test func fiftyIdleConnectionsDoNotDelayGtPsAndTheCapRefusesTheRest() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            var idle = (0..<50).compactMap { _ in IdleClient.connect(host.socketPath) }
            #expect(idle.count == 50)
            let clock = ContinuousClock()
            let start = clock.now
            let table = try Tool.gtPS(["\(host.pid)"], host: host)
            let elapsed = clock.now - start
            #expect(table.status == 0 && table.stdout.contains("lock-holder"), "\(table)")
            #expect(elapsed < .seconds(5), "gt-ps took \(elapsed) behind 50 idle connections")
            for fd in idle { close(fd) }
            // The cap: 70 at once; the server keeps 64 and tells the rest it is busy.
            idle = (0..<70).compactMap { _ in IdleClient.connect(host.socketPath) }
            Thread.sleep(forTimeInterval: 0.3)
            let busy = idle.filter { IdleClient.answer($0)?.contains("busy") == true }.count
            for fd in idle { close(fd) }
            #expect(busy >= 6, "\(busy) of 70 refused as busy")
            Thread.sleep(forTimeInterval: 1.2)  // the kept ones expire
            let json = try Tool.gtPS(["\(host.pid)", "--json"], host: host)
            let snapshot = try JSONDecoder().decode(KernelSnapshot.self, from: Data(json.stdout.utf8))
            #expect((snapshot.server?.refusedBusy ?? 0) >= UInt64(busy) && snapshot.server?.maxClients == 64,
                    "\(snapshot.server.map { "\($0)" } ?? "nil")")
            #expect(host.finish())
        }

        /// Every socket of the server (listener and accepted connection) is
        /// close-on-exec, so a child the program forks never inherits one.
        @Test func debugSocketsAreCloseOnExec() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            let client = try #require(IdleClient.connect(host.socketPath))
            defer { close(client) }
            Thread.sleep(forTimeInterval: 0.2)  // accepted by now
            // The server's sockets: those /proc/net/unix lists at its path
            // (the listener and every connection it accepted), by inode.
            let table = (try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8)) ?? ""
            let inodes = Set(table.split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                return fields.count >= 8 && fields[7] == host.socketPath ? String(fields[6]) : nil
            })
            let fdDir = "/proc/\(host.pid)/fd"
            var sockets: [(Int, UInt64)] = []
            for name in try FileManager.default.contentsOfDirectory(atPath: fdDir) {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: fdDir + "/" + name),
                      target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())),
                      let fd = Int(name) else { continue }
                let info = (try? String(contentsOfFile: "/proc/\(host.pid)/fdinfo/\(fd)", encoding: .utf8)) ?? ""
                let flags = info.split(separator: "\n").first { $0.hasPrefix("flags:") }
                    .flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 8) } ?? 0
                sockets.append((fd, flags))
            }
            #expect(sockets.count >= 2, "listener and connection expected: \(sockets)")
            let cloexec: UInt64 = 0o2000000  // O_CLOEXEC as fdinfo shows it
            for (fd, flags) in sockets {
                #expect(flags & cloexec != 0, "socket fd \(fd) is not close-on-exec (flags 0\(String(flags, radix: 8)))")
            }
            #expect(host.finish())
        }

        /// A thread named with ESC, newline and BEL: gt-ps prints the bytes
        /// escaped, so the name can neither clear the screen nor forge a row.
        @Test func controlCharactersInThreadNamesAreEscaped() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            for arguments in [["\(host.pid)", "--wide"], ["\(host.pid)", "--stacks", "--wide"], ["\(host.pid)", "--stacks=all", "--wide"]] {
                let r = try Tool.gtPS(arguments, host: host)
                #expect(r.status == 0, "\(r)")
                #expect(r.stdout.contains(#"evil\x1b[2J\x0aname\x07"#), "\(arguments): \(r.stdout)")
                #expect(!r.stdout.contains("\u{1B}") && !r.stdout.contains("\u{7}"), "raw control bytes in \(arguments)")
                #expect(!r.stdout.split(separator: "\n").contains { $0.hasPrefix("name") }, "a forged line")
            }
            #expect(host.finish())
        }

        // MARK: gt-ps

        @Test func gtPsGroupsIdenticalStacksWithCountsAndSourceLines() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            // 'evil...' and 'pool' park in the same call chain from the same
            // closure: one group of two (unless one of them is caught
            // running, so a few tries).
            var grouped: ToolResult?
            for _ in 0..<10 {
                let r = try Tool.gtPS(["\(host.pid)", "--stacks", "--wide"], host: host)
                if r.stdout.contains("2 threads (") { grouped = r; break }
            }
            let r = try #require(grouped, "no group of two threads")
            #expect(r.stdout.contains("stacks: 8 threads, "), "\(r)")
            let group = r.stdout.components(separatedBy: "\n\n").first { $0.hasPrefix("2 threads (") } ?? ""
            #expect(group.contains("'pool'") && group.contains("'evil"), "\(group)")
            #expect(group.contains("debugParkInner()") && group.contains("debugParkOuter()"), "\(group)")
            // addr2line, batched per image: file:line of the scenario's code.
            #expect(group.contains("at DebugScenarios.swift:"), "\(group)")
            // --stacks=all: one trace per thread, under its row, no groups.
            let all = try Tool.gtPS(["\(host.pid)", "--stacks=all", "--wide"], host: host)
            #expect(all.status == 0 && !all.stdout.contains("stacks: "), "\(all)")
            #expect(all.stdout.components(separatedBy: "debugParkOuter()").count - 1 >= 2, "\(all)")
            #expect(host.finish())
        }

        @Test func gtPsFiltersByNameLimitsSortsAndChoosesColumns() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            let glob = try Tool.gtPS(["\(host.pid)", "--name", "lock-*"], host: host)
            #expect(names(glob.stdout) == ["lock-holder", "lock-waiter"], "\(glob)")
            let sub = try Tool.gtPS(["\(host.pid)", "--name", "spin"], host: host)
            #expect(names(sub.stdout) == ["spinner"], "\(sub)")
            // Highest effective priority first: the holder (8/24*, id 2) and the waiter (24/24).
            let top = try Tool.gtPS(["\(host.pid)", "--sort", "pri", "--limit", "2"], host: host)
            #expect(names(top.stdout) == ["lock-holder", "lock-waiter"], "\(top)")
            let columns = try Tool.gtPS(["\(host.pid)", "--format", "id,name,wait,waited,held", "--name", "lock-waiter", "--wide"], host: host)
            let header = columns.stdout.split(separator: "\n").first { $0.hasPrefix("ID") }.map(String.init) ?? ""
            #expect(header.split(separator: " ") == ["ID", "NAME", "WAIT", "WAITED", "HELD"], "\(columns)")
            let row = columns.stdout.split(separator: "\n").first { $0.contains("lock-waiter") }.map(String.init) ?? ""
            #expect(row.contains("mutex(ps-mutex):2 lock-holder") && row.range(of: #"\d\.\d+s"#, options: .regularExpression) != nil,
                    "\(columns)")
            let unknown = try Tool.gtPS(["\(host.pid)", "--format", "id,bogus"], host: host)
            #expect(unknown.status != 0 && unknown.stderr.contains("unknown column 'bogus'"), "\(unknown)")
            // What each waits on and for how long; what the threads hold. The
            // spinning holder is running whenever it is looked at (its list
            // is its own while it runs: not read, nil), the others hold nothing.
            let json = try Tool.gtPS(["\(host.pid)", "--json"], host: host)
            // Passed through as the process wrote it: compact, one line (gt-ps
            // used to decode and re-encode it pretty-printed).
            #expect(json.stdout.hasPrefix("{") && !json.stdout.dropLast().contains("\n"), "not passed through as written")
            let s = try JSONDecoder().decode(KernelSnapshot.self, from: Data(json.stdout.utf8))
            let waiter = s.threads.first { $0.name == "lock-waiter" }
            let holder = s.threads.first { $0.name == "lock-holder" }
            #expect(holder?.heldMutexes == nil || holder?.heldMutexes == [HeldMutex(id: waiter?.wait?.objectID ?? 0, name: "ps-mutex")])
            #expect(s.threads.filter { $0.state != .running }.allSatisfy { $0.name == "lock-holder" || $0.heldMutexes == [] })
            #expect(waiter?.wait?.objectName == "ps-mutex" && waiter?.wait?.sinceMonotonicNanoseconds != nil)
            // The process list comes from the summary request.
            let list = try Tool.gtPS([], host: host)
            let line = list.stdout.split(separator: "\n").first { $0.contains(" \(host.pid) ") || $0.hasPrefix("\(host.pid) ") }
            #expect(line.map { $0.split(separator: " ").dropFirst(2).first == "8" } == true, "\(list)")
            #expect(host.finish())
        }

        @Test func gtPsWatchShowsCPUPercentBusiestFirstAndKeysSortAndQuitInATerminal() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            // In a pipe: refreshes one after another, rates from the second on.
            let piped = try Tool.run([Tool.path("gt-ps"), "\(host.pid)", "--watch", "0.3"], environment: host.toolEnvironment,
                                     timeout: .seconds(2))
            let pages = piped.stdout.components(separatedBy: "\n\npid ")
            #expect(pages.count >= 2 && piped.stdout.contains("CPU%"), "\(piped)")
            let second = pages.count >= 2 ? pages[1] : ""
            let firstRow = rows(second).first ?? ""
            #expect(firstRow.contains("spinner") || firstRow.contains("lock-hol"), "busiest first:\n\(second)")
            #expect(firstRow.range(of: #" (100|[1-9]\d?\.\d) "#, options: .regularExpression) != nil, "a CPU% rate:\n\(second)")
            // In a terminal: tmux gives gt-ps a pty; keys change the sort and quit.
            let tmux = try Tmux(command: "\(Tool.path("gt-ps")) \(host.pid) --watch 0.3", environment: host.toolEnvironment)
            defer { tmux.kill() }
            #expect(tmux.waitFor("sorted by cpu%"), "\(tmux.screen())")
            tmux.send("p")
            #expect(tmux.waitFor("sorted by pri"), "\(tmux.screen())")
            let byPriority = rows(tmux.screen())
            #expect(byPriority.first?.contains("lock-holder") == true, "\(byPriority)")
            tmux.send("n")
            #expect(tmux.waitFor("sorted by name"), "\(tmux.screen())")
            #expect(rows(tmux.screen()).first?.contains("evil") == true, "\(tmux.screen())")
            tmux.send("q")
            #expect(tmux.waitFor("EXITED 0"), "\(tmux.screen())")
            #expect(host.finish())
        }

        // MARK: In-process

        @Test func crashDumpTextReadsBackEscapedNamesWaitsAndFrames() throws {
            let text = """
                noise before
                GreenThreads: SIGABRT (6) in green thread 3 'a\\x27b\\x0a'; dump of all green threads, pid 42, monotonic 1000
                (raw frames: `gt-ps --dump FILE` names, demangles and groups them)

                thread 2 'x' blocked on mutex 0x1f held by thread 3 'a\\x27b\\x0a', priority 8/24 (boosted), 5 switches, 1 preemptions
                    #0 0x00005555deadbeef /bin/app+0x1234
                    #1* 0x00005555deadbef0 /bin/my+app+0x10
                    ...

                thread 3 'a\\x27b\\x0a' running on worker 1, priority 16/16, 2 switches, 0 preemptions
                    (running on worker 1: its worker did not answer)

                end of dump
                """
            let dump = try CrashDumpText.parse(text)
            #expect(dump.signalName == "SIGABRT" && dump.signalNumber == 6 && dump.crashedThreadID == 3 && dump.processID == 42)
            let threads = dump.snapshot.threads
            #expect(threads.map(\.id) == [2, 3] && threads[1].name == "a'b\n" && threads[1].worker == 1)
            #expect(threads[0].wait == WaitSnapshot(kind: "mutex", objectID: 0x1f, ownerThreadID: 3, ownerName: "a'b\n", since: nil))
            #expect(threads[0].basePriority == 8 && threads[0].effectivePriority == 24 && threads[0].switches == 5)
            let frames = threads[0].trace?.frames ?? []
            #expect(frames.map(\.imageOffset) == [0x1234, 0x10] && frames[1].image == "/bin/my+app" && frames[1].interrupted == true)
            #expect(threads[0].trace?.truncated == true && threads[1].trace?.note?.contains("did not answer") == true)
            #expect(throws: CrashDumpText.FormatError.self) { try CrashDumpText.parse("no dump here") }
        }
    }
}

/// The NAME column of each table row (rows start with an id).
private func rows(_ output: String) -> [String] {
    let lines = output.split(separator: "\n").map(String.init)
    guard let header = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("ID ") }) else { return [] }
    return lines[(header + 1)...].prefix { $0.trimmingCharacters(in: .whitespaces).first?.isNumber == true }.map { $0 }
}

private func names(_ output: String) -> [String] {
    rows(output).compactMap { $0.split(separator: " ").dropFirst().first.map(String.init) }
}

/// Connections that send nothing.
enum IdleClient {
    static func connect(_ path: String) -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(fd); return nil }
        return fd
    }

    /// An error the server already sent on `fd`, if any (no waiting).
    static func answer(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard n > 4, let r = try? JSONDecoder().decode(DebugResponse.self, from: Data(buffer[4..<n])) else { return nil }
        return r.error
    }
}

/// A private tmux server running one command in a 160x50 pty. Driven
/// through system(3)/popen(3), which wait for the tmux client with
/// waitpid: Foundation's Process did not see the client exit once the
/// server it forks had detached (the test hung).
struct Tmux {
    let socket = "gt-test-\(UUID().uuidString.prefix(8))"

    init(command: String, environment: [String: String]) throws {
        let env = environment.map { "\($0.key)='\($0.value)'" }.joined(separator: " ")
        let inner = "env \(env) NO_COLOR=1 \(command); echo EXITED $?; sleep 60"
        let rc = system("/usr/bin/tmux -L \(socket) new-session -d -x 160 -y 50 \"\(inner)\" </dev/null >/dev/null 2>&1")
        guard rc == 0 else { throw HostError("tmux new-session failed: \(rc)") }
    }

    func screen() -> String {
        guard let f = popen("/usr/bin/tmux -L \(socket) capture-pane -p 2>/dev/null", "r") else { return "" }
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        pclose(f)
        return String(decoding: out, as: UTF8.self)
    }

    func send(_ keys: String) { _ = system("/usr/bin/tmux -L \(socket) send-keys \(keys) >/dev/null 2>&1") }

    /// Polls the screen until it shows `text` (10 s at most).
    func waitFor(_ text: String) -> Bool {
        for _ in 0..<200 {
            if screen().contains(text) { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    func kill() { _ = system("/usr/bin/tmux -L \(socket) kill-server >/dev/null 2>&1") }
}
