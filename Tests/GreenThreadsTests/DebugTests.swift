// Debugging (issue 6): stack traces of parked, preempted and running green
// threads; stack high-water marks; the deadlock report; crash and SIGQUIT
// dumps; gt-ps end to end over the snapshot socket; the server's defences
// (other users, garbage, slow clients); the request parser under fuzzing;
// and the snapshot's JSON round trip.
import Foundation
import GreenThreads
import GTSnapshot
import Glibc
import Testing

extension GreenThreadsTests {
    @Suite("Debugging: traces, snapshots, gt-ps, dumps")
    struct DebugTests {
        // MARK: Traces

        @Test func parkedThreadTraceNamesItsFunctionsInOrder() throws {
            try Host.expectOK("trace-parked", timeout: .seconds(30))
        }

        @Test func currentThreadTraceStartsAtItsCaller() throws {
            try Host.expectOK("trace-current", timeout: .seconds(30))
        }

        @Test func preemptedSpinnerTraceShowsTheSpinningFunction() throws {
            try Host.expectOK("trace-preempted", timeout: .seconds(30))
        }

        @Test func threadRunningOnAnotherWorkerIsTraced() throws {
            let r = try Host.expectOK("trace-running", timeout: .seconds(30))
            #expect(r.value("worker") != "-1", "\(r)")
        }

        @Test func stackHighWaterMarkGrowsAfterDeepRecursion() throws {
            try Host.expectOK("stack-high-water", timeout: .seconds(30))
        }

        @Test func deadlockReportPrintsTheCycleWithTraces() throws {
            let r = try Host.expectOK("deadlock-report", timeout: .seconds(30))
            #expect(r.stdout.contains("'cycle-a'") && r.stdout.contains("'cycle-b'"), "\(r)")
            #expect(r.stdout.contains("JoinHandle.join"), "\(r)")
        }

        // MARK: Dumps

        @Test(arguments: [("segv", SIGSEGV, "SIGSEGV"), ("abort", SIGABRT, "SIGABRT"), ("trap", SIGILL, "SIGILL")])
        func crashDumpListsEveryGreenThreadBeforeTheProcessDies(how: String, signal: Int32, name: String) throws {
            let dir = "/tmp/gt-dumps-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let r = try Host.run("crash-dump", ["--how", how], environment: ["GT_DUMP_DIR": dir], timeout: .seconds(30))
            #expect(r.signaled && r.status == signal, "expected \(name): \(r)")
            // On stderr, raw: every thread, its frames as image+offset, no names looked up in the handler.
            #expect(r.stderr.contains("GreenThreads: \(name) (\(signal)) in green thread"), "\(r)")
            #expect(r.stderr.contains("'parked' sleeping on sleep"), "\(r)")
            #expect(r.stderr.contains("'crasher' running on worker"), "\(r)")
            #expect(r.stderr.contains("gt-test-host+0x") && !r.stderr.contains("debugParkInner"), "\(r)")
            #expect(r.stderr.contains("end of dump"), "\(r)")
            #expect(!r.stdout.contains("survived"))
            // The same dump in the file, which gt-ps renders named, demangled and trimmed.
            let files = try FileManager.default.contentsOfDirectory(atPath: dir)
            #expect(files.count == 1 && files[0].hasSuffix(".crash"), "\(files)")
            let file = dir + "/" + (files.first ?? "none")
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            #expect(text.contains("'parked' sleeping on sleep") && text.contains("end of dump"), "\(text)")
            let rendered = try Tool.run([Tool.path("gt-ps"), "--dump", file])
            #expect(rendered.status == 0, "\(rendered)")
            #expect(rendered.stdout.contains("\(name) (\(signal)) in green thread") && rendered.stdout.contains("'crasher'"), "\(rendered)")
            for function in ["debugParkInner()", "debugParkMiddle()", "debugParkOuter()", "debugCrashNow", "GreenThread.sleep(for:)"] {
                #expect(rendered.stdout.contains(function), "\(function) missing:\n\(rendered)")
            }
            #expect(!rendered.stdout.contains("gt_switch") && !rendered.stdout.contains("$s"), "kernel frames or mangled names:\n\(rendered)")
            // A saved stderr renders too.
            let saved = dir + "/stderr.txt"
            try r.stderr.write(toFile: saved, atomically: true, encoding: .utf8)
            let fromStderr = try Tool.run([Tool.path("gt-ps"), "--dump", saved])
            #expect(fromStderr.status == 0 && fromStderr.stdout.contains("debugParkOuter()"), "\(fromStderr)")
        }

        /// Regression: the fault handler restored the default action and
        /// returned, which ends a process only for a real fault (the
        /// instruction runs again); a kill(2)-sent SIGSEGV/SIGBUS was lost.
        @Test(arguments: [("segv", SIGSEGV), ("bus", SIGBUS)])
        func segvOrBusSentByKillIsNotSwallowed(name: String, signal: Int32) throws {
            let r = try Host.run("kill-self", ["--signal", name], timeout: .seconds(30))
            #expect(r.signaled && r.status == signal && !r.stdout.contains("survived"), "\(r)")
        }

        @Test func sigquitDumpsEveryThreadAndTheProgramContinuesWhenAsked() throws {
            let r = try Host.expectOK("quit-dump", environment: ["GT_DUMP_ON": "SIGQUIT"], timeout: .seconds(30))
            #expect(r.stderr.contains("GreenThreads: SIGQUIT (3)") && r.stderr.contains("the program continues"), "\(r)")
            // Taken by the server's thread as a snapshot: symbolized and trimmed.
            #expect(r.stderr.contains("'parked'") && r.stderr.contains("debugParkInner()"), "\(r)")
            #expect(!r.stderr.contains("gt_switch"), "\(r)")
            // The spinner runs on a worker: traced on request.
            #expect(r.stderr.contains("'quit-spinner'") && r.stderr.contains("debugSpinUntilStopped"), "\(r)")
            // Without the socket too (the server's thread runs for the dump alone).
            let quiet = try Host.expectOK("quit-dump", environment: ["GT_DUMP_ON": "SIGQUIT", "GT_DEBUG_SERVER": "0"],
                                          timeout: .seconds(30))
            #expect(quiet.stderr.contains("GreenThreads: SIGQUIT (3)") && quiet.stderr.contains("debugParkInner()"), "\(quiet)")
            // Without GT_DUMP_ON, SIGQUIT keeps its default action.
            let plain = try Host.run("quit-dump", ["--raise-unblocked", "1"], timeout: .seconds(30))
            #expect(plain.signaled && plain.status == SIGQUIT && !plain.stdout.contains("OK"), "\(plain)")
        }

        // MARK: gt-ps

        @Test func gtPsShowsNamesStatesPrioritiesBoostAndFunctions() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }

            let table = try Tool.gtPS(["\(host.pid)"], host: host)
            #expect(table.status == 0, "\(table)")
            let lines = table.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(lines.allSatisfy { $0.count <= 80 }, "a line is wider than 80 columns:\n\(table.stdout)")
            #expect(!table.stdout.contains("\u{1B}["), "colour codes in a pipe")
            func row(_ name: String) -> String? { rowNamed(name, in: table.stdout) }
            #expect(row("lock-waiter")?.contains("blocked") == true && row("lock-waiter")?.contains("24/24") == true, "\(table)")
            #expect(row("lock-holder")?.contains("8/24*") == true, "boosted holder: \(table)")
            // It naps 20 ms at a time: now and then it is awake (ready) when looked at.
            let sleeping = try (0..<40).contains { _ in
                try rowNamed("sleeper", in: Tool.gtPS(["\(host.pid)"], host: host).stdout)?.contains("sleeping") == true
            }
            #expect(sleeping, "the sleeper never showed as sleeping")
            #expect(row("joiner")?.contains("blocked") == true && row("joiner")?.contains("join:") == true, "\(table)")
            #expect(row("spinner") != nil && row("main") != nil, "\(table)")
            // The OS threads under the processors (issue 11): the spinner's at least runs.
            let osLine = lines.first { $0.hasPrefix("os threads: ") }
            #expect(osLine?.contains("running") == true, "no os threads line with a running one:\n\(table.stdout)")

            let json = try Tool.gtPS(["\(host.pid)", "--json"], host: host)
            #expect(json.status == 0, "\(json)")
            let snapshot = try JSONDecoder().decode(KernelSnapshot.self, from: Data(json.stdout.utf8))
            #expect(snapshot.version == KernelSnapshot.formatVersion && snapshot.processID == host.pid)
            let byName = Dictionary(snapshot.threads.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let holder = try #require(byName["lock-holder"]), waiter = try #require(byName["lock-waiter"])
            #expect(holder.basePriority == 8 && holder.effectivePriority == 24 && holder.isBoosted)
            #expect(waiter.state == .blocked && waiter.wait?.kind == "mutex" && waiter.wait?.ownerThreadID == holder.id)
            #expect(byName["joiner"]?.wait?.ownerThreadID == byName["sleeper"]?.id)
            #expect([.sleeping, .ready, .running].contains(byName["sleeper"]?.state))
            #expect(snapshot.workers.count == 2 && snapshot.waitGraph.cycles.isEmpty)
            #expect(snapshot.osThreads?.contains { $0.role == .running } == true, "\(snapshot.osThreads as Any)")
            #expect(snapshot.workers.allSatisfy { $0.idleWakeups != nil && $0.parkHandoffs != nil })
            #expect(snapshot.server?.requestsServed ?? 0 >= 2)

            let stacks = try Tool.gtPS(["\(host.pid)", "--stacks"], host: host)
            #expect(stacks.status == 0, "\(stacks)")
            for function in ["debugParkInner", "debugParkOuter", "debugHoldAndSpin", "debugSpinUntilStopped", "GreenMutex.lock"] {
                #expect(stacks.stdout.contains(function), "\(function) missing:\n\(stacks.stdout)")
            }
            #expect(stacks.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 })

            let blocked = try Tool.gtPS(["\(host.pid)", "--state", "blocked"], host: host)
            #expect(rowNamed("lock-waiter", in: blocked.stdout) != nil && rowNamed("joiner", in: blocked.stdout) != nil
                    && rowNamed("sleeper", in: blocked.stdout) == nil && rowNamed("spinner", in: blocked.stdout) == nil, "\(blocked)")
            let noCycles = try Tool.gtPS(["\(host.pid)", "--deadlocks"], host: host)
            #expect(noCycles.status == 0 && noCycles.stdout.contains("no wait-for cycles"), "\(noCycles)")
            let list = try Tool.run([Tool.path("gt-ps")], environment: host.toolEnvironment)
            #expect(list.stdout.contains("\(host.pid) gt-test-host"), "\(list)")

            #expect(host.finish(), "the target did not end cleanly:\n\(host.stdout)\n\(host.stderr)")
            #expect(!FileManager.default.fileExists(atPath: host.socketPath), "socket left behind")
        }

        @Test func deadlocksOptionExitsNonZeroAndNamesBothThreads() throws {
            let host = try LiveHost("ps-cycle")
            defer { host.kill() }
            let r = try Tool.gtPS(["\(host.pid)", "--deadlocks"], host: host)
            #expect(r.status == 1, "\(r)")
            #expect(r.stdout.contains("'cycle-a'") && r.stdout.contains("'cycle-b'"), "\(r)")
            #expect(r.stdout.contains("debugJoinPartner"), "the cycle's traces: \(r)")
            let table = try Tool.gtPS(["\(host.pid)"], host: host)
            #expect(table.stdout.contains("wait-for cycles: 1"), "\(table)")
        }

        @Test func debugServerIsOffWithGT_DEBUG_SERVER0() throws {
            let host = try LiveHost("ps-target", environment: ["GT_DEBUG_SERVER": "0"])
            defer { host.kill() }
            #expect(!FileManager.default.fileExists(atPath: host.socketPath))
            let r = try Tool.gtPS(["\(host.pid)"], host: host)
            #expect(r.status == 2 && r.stderr.contains("serves no GreenThreads snapshots"), "\(r)")
            #expect(host.finish())
        }

        // MARK: The server's defences

        @Test(.enabled(if: geteuid() == 0, "needs root to run the client as another user"))
        func requestFromAnotherUserIsRefusedAndCounted() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            // Let user 65534 reach the socket, so that only SO_PEERCRED stands in the way.
            #expect(chown(host.socketDirectory, 65534, 65534) == 0 && chown(host.socketPath, 65534, 65534) == 0)
            let other = try Tool.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                      Tool.path("gt-ps"), "\(host.pid)"], environment: host.toolEnvironment)
            #expect(other.status == 2 && other.stderr.contains("permission denied"), "\(other)")
            #expect(!other.stdout.contains("lock-holder"))
            let mine = try Tool.gtPS(["\(host.pid)", "--json"], host: host)
            let snapshot = try JSONDecoder().decode(KernelSnapshot.self, from: Data(mine.stdout.utf8))
            #expect(snapshot.server?.refusedPeers == 1, "\(mine)")
            #expect(host.finish())
        }

        @Test func garbageOversizedAndSlowRequestsGetErrorsAndDoNotDisturbTheProcess() throws {
            let host = try LiveHost("ps-target")
            defer { host.kill() }
            func frame(_ s: String) -> [UInt8] { DebugProtocol.frame(Array(s.utf8)) }
            func error(of answer: [UInt8]) -> String? {
                guard answer.count > 4, let r = try? JSONDecoder().decode(DebugResponse.self, from: Data(answer.dropFirst(4))) else { return nil }
                return r.ok ? nil : r.error
            }
            var rng = SeededGenerator(seed: 0x6470_735f_6675_7a7a)
            var bad = 0
            for _ in 0..<20 {  // random frames: any answer must be an error
                let n = Int.random(in: 1...64, using: &rng)
                let junk = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let answer = RawClient.exchange(host.socketPath, DebugProtocol.frame(junk))
                #expect(error(of: answer) != nil, "random request answered without an error")
                bad += 1
            }
            let cases: [([UInt8], String)] = [
                ([0xFF, 0xFF, 0xFF, 0xFF], "exceeds"),
                (frame("{\"version\":1,\"command\""), "bad request"),
                (frame("{\"version\":99,\"command\":\"snapshot\"}"), "version 99"),
                (frame("{\"version\":1,\"command\":\"format-disk\"}"), "unknown command"),
                (frame(String(repeating: "[", count: 3000)), "bad request"),
            ]
            for (bytes, expected) in cases {
                let answer = RawClient.exchange(host.socketPath, bytes)
                #expect(error(of: answer)?.contains(expected) == true, "expected '\(expected)': \(String(decoding: answer, as: UTF8.self))")
                bad += 1
            }
            // Slow: half a header, then silence past the server's deadline: dropped, no answer.
            let slow = RawClient.exchange(host.socketPath, [0, 0], pauseAfter: 1.5)
            #expect(slow.isEmpty)
            bad += 1
            _ = RawClient.exchange(host.socketPath, [])  // connect and hang up
            bad += 1

            let after = try Tool.gtPS(["\(host.pid)", "--json"], host: host)
            #expect(after.status == 0, "\(after)")
            let snapshot = try JSONDecoder().decode(KernelSnapshot.self, from: Data(after.stdout.utf8))
            #expect(snapshot.server.map { $0.badRequests >= UInt64(bad) } == true, "\(snapshot.server.map { "\($0)" } ?? "nil")")
            #expect(snapshot.threads.count == 8, "threads disturbed: \(snapshot.threads.map(\.name))")
            #expect(host.finish(), "the target did not end cleanly:\n\(host.stdout)\n\(host.stderr)")
        }

        // MARK: In-process: the parser, the JSON, the graph

        @Test func requestParserSurvivesRandomAndMutatedInput() throws {
            let seed = UInt64.random(in: 0...UInt64.max)
            var rng = SeededGenerator(seed: seed)
            let valid = Array(#"{"version":1,"command":"snapshot","includeStacks":true}"#.utf8)
            let alphabet = Array(#"{}[]":,\ 0123456789.eE+-truefalsnul"abcu"#.utf8)
            var accepted = 0
            for i in 0..<20_000 {
                var input: [UInt8]
                switch i % 4 {
                case 0: input = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                case 1: input = (0..<Int.random(in: 0...80, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
                case 2:
                    input = valid
                    for _ in 0..<Int.random(in: 1...4, using: &rng) {
                        let at = Int.random(in: 0..<input.count, using: &rng)
                        input[at] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
                    }
                default:
                    input = Array(valid.prefix(Int.random(in: 0...valid.count, using: &rng)))
                    input.insert(contentsOf: alphabet.shuffled(using: &rng).prefix(3), at: Int.random(in: 0...input.count, using: &rng))
                }
                do {
                    let r = try DebugRequest.parse(input)
                    #expect(r.version == DebugProtocol.version, "seed \(seed), case \(i)")
                    accepted += 1
                } catch is DebugRequestError {
                } catch {
                    Issue.record("seed \(seed), case \(i): unexpected \(type(of: error)) \(error)")
                }
            }
            #expect(throws: DebugRequestError.self) { try DebugRequest.parse(Array(repeating: UInt8(ascii: "["), count: 100_000)) }
            #expect(throws: DebugRequestError.self) { try DebugRequest.parse(Array(repeating: UInt8(ascii: " "), count: 5000)) }
            #expect(try DebugRequest.parse(valid) == DebugRequest(command: .snapshot, includeStacks: true))
            let escaped = Array(#" {"command":"p\u0069ng", "version":1} "#.utf8)
            #expect(try DebugRequest.parse(escaped).command == .ping)
            print("fuzz seed \(seed): \(accepted) of 20000 inputs accepted")
        }

        @Test func snapshotJSONRoundTripsWithEveryFieldAndTrickyNames() throws {
            let frame = StackFrame(pc: 0x5555_0000_1234, symbol: "$s4main3fooyyF", offset: 18,
                                   function: "main.foo() -> ()", image: "/usr/bin/app", imageOffset: 0x1234)
            let tricky = "quote\" backslash\\ newline\n tab\t nul\u{0} bell\u{7} é 🧵"
            let thread = ThreadSnapshot(
                id: UInt64.max - 1, name: tricky, state: .blocked, basePriority: 8, effectivePriority: 24, worker: nil,
                cpuTimeNanoseconds: 123_456_789, switches: 7, preemptions: 3, deferredPreemptions: 1,
                wait: WaitSnapshot(kind: "mutex", objectID: 42, ownerThreadID: 9, ownerName: "holder"),
                stack: StackUsage(sizeBytes: 65536, usedBytes: 8192, residentBytes: 8192),
                trace: StackTrace(origin: .parked, frames: [frame], truncated: true, note: nil))
            let holder = ThreadSnapshot(id: 9, name: "holder", state: .running, basePriority: 8, effectivePriority: 24,
                                        worker: 1, cpuTimeNanoseconds: 0, switches: 0, preemptions: 0, deferredPreemptions: 0,
                                        wait: WaitSnapshot(kind: "join", objectID: UInt64.max - 1, ownerThreadID: UInt64.max - 1),
                                        stack: StackUsage(sizeBytes: 0, usedBytes: 0, residentBytes: 0), trace: nil)
            let snapshot = KernelSnapshot(processID: 77, processName: "app", wallClockNanoseconds: -5, monotonicNanoseconds: Int64.max,
                                          includesStacks: true, kernelRunning: true, threadsSpawned: 3, threads: [thread, holder],
                                          workers: [WorkerSnapshot(index: 0, osThreadID: 78, currentThreadID: 9, isIdle: false,
                                                                   ticks: 1, preemptions: 2, deferrals: 3, retries: 4)],
                                          server: DebugServerStatistics(socketPath: "/tmp/x", requestsServed: 1, refusedPeers: 2, badRequests: 3))
            let bytes = try JSONEncoder().encode(DebugResponse(snapshot: snapshot))
            let back = try JSONDecoder().decode(DebugResponse.self, from: Data(bytes))
            let s = try #require(back.snapshot)
            #expect(back.ok && back.version == DebugProtocol.version)
            #expect(s.threads[0].name == tricky && s.threads[0].id == UInt64.max - 1)
            #expect(s.threads[0].trace?.frames == [frame] && s.threads[0].trace?.truncated == true)
            #expect(s.threads[0].wait == thread.wait && s.threads[1].worker == 1 && s.threads[0].worker == nil)
            #expect(s.wallClockNanoseconds == -5 && s.monotonicNanoseconds == Int64.max)
            #expect(s.waitGraph.cycles == [[9, UInt64.max - 1]] && s.server == snapshot.server)
            // The request the tool sends (Foundation) parses in the server's parser.
            let request = DebugRequest(command: .snapshot, includeStacks: true)
            #expect(try DebugRequest.parse(Array(JSONEncoder().encode(request))) == request)
            #expect(try DebugRequest.parse(Array(#"{"version":1,"command":"summary"}"#.utf8)) == DebugRequest(command: .summary))
        }

        @Test func waitForGraphFindsEachCycleOnceStartingAtItsSmallestThread() {
            let edges = [(1, 2), (2, 3), (3, 1), (4, 1), (5, 6), (7, 8), (8, 7), (9, 9)].map {
                WaitForEdge(waiter: UInt64($0.0), owner: UInt64($0.1), kind: "join", objectID: 0)
            }
            #expect(WaitForGraph(edges: edges).cycles == [[1, 2, 3], [7, 8], [9]])
            #expect(WaitForGraph(edges: []).cycles.isEmpty)
        }
    }
}

/// The gt-ps table row whose NAME column (second) is `name`.
private func rowNamed(_ name: String, in table: String) -> String? {
    table.split(separator: "\n").map(String.init).first {
        $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) == name
    }
}
