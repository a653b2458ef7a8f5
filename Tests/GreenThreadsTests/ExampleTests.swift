// The examples under Tools/examples (Tools/examples/README.md): each runs to
// completion, as its README command runs it, and prints what the README
// says it prints. The examples check their own results (exit status 1 when
// the sum, the order of events or the latency comparison is wrong); these
// tests check the exit status and the lines a reader is told to look for.
import Foundation
import Testing

extension GreenThreadsTests {
    @Suite("Examples: pipeline, Pathfinder, job runner")
    struct ExampleTests {
        static func runExample(_ name: String, _ arguments: [String] = []) throws -> HostResult {
            try Host.run(program: Host.builtProgram("gt-example-\(name)"), arguments, timeout: .seconds(60))
        }

        @Test func pipelineSumsEverySquareOnce() throws {
            let r = try Self.runExample("pipeline", ["20000"])
            #expect(r.succeeded, "\(r)")
            #expect(r.stdout.contains("sum of squares 1...20000 = 2666866670000 (expected 2666866670000): OK"), "\(r)")
            // Every number passed through exactly one squarer.
            let handled = r.stdout.split(separator: "\n").filter { $0.hasPrefix("square-") }
                .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
            #expect(handled.count == 4 && handled.reduce(0, +) == 20000, "\(r)")
            #expect(r.stdout.contains("sink       20000"), "\(r)")
        }

        @Test func pathfinderShowsInheritanceEndingTheInversion() throws {
            let r = try Self.runExample("pathfinder", ["20", "60"])
            #expect(r.succeeded && r.stdout.hasSuffix("OK\n"), "\(r)")
            // The boost is visible in the event log of the second run only.
            let runs = r.stdout.components(separatedBy: "with priority inheritance:")
            #expect(runs.count == 2, "\(r)")
            #expect(!runs[0].contains("effective priority 8 -> 24"), "\(r)")
            #expect(runs.last!.contains("low's effective priority 8 -> 24"), "\(r)")
            // A timeline row for each thread, in both runs.
            for name in ["high", "medium-0", "medium-1", "low"] {
                let rows = r.stdout.split(separator: "\n").filter { line in
                    let fields = line.split(separator: " ")
                    return fields.count == 2 && fields[0] == name && fields[1].allSatisfy { $0 == "#" || $0 == "." }
                }
                #expect(rows.count == 2 && rows.allSatisfy { $0.contains("#") }, "\(name): \(r)")
            }
        }

        @Test func jobRunnerStartsInteractiveJobsSoonerWithPriorities() throws {
            let r = try Self.runExample("jobs")
            #expect(r.succeeded, "\(r)")
            #expect(r.stdout.contains("interactive start p99:") && r.stdout.hasSuffix("OK\n"), "\(r)")
            for kind in ["interactive", "report", "batch"] {
                #expect(r.stdout.contains("\n\(kind) "), "\(kind) row: \(r)")
            }
        }
    }
}
