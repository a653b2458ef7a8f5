// Timeline: an SVG Gantt chart of one run, drawn from the intervals each
// thread logged of itself. The upper part has one row per thread (up to 64),
// the lower part one row per worker (GreenThreads) or CPU (the others);
// bars are coloured by priority level (blue .low, green .normal, red .high), with threads
// of one level in alternating shades, and carry a tooltip (thread, worker,
// CPU, times). Round-robin shows as a staircase, a priority preemption as a
// red bar cutting into a blue one on the same worker.
import Foundation

enum Timeline {
    static func svg(plan: ScenarioPlan, outcome o: RunOutcome, title: String, subtitle: String) -> String {
        let start = o.windowStart, end = o.windowStart + o.windowTicks
        let msPerTick = 1000 / TSC.ticksPerSecond
        let width = 1100.0, left = 150.0, right = 20.0, rowHeight = 14.0, top = 48.0
        let plotWidth = width - left - right
        /// Milliseconds since the window opened (negative before it).
        func ms(_ t: UInt64) -> Double { Double(Int64(bitPattern: t &- start)) * msPerTick }
        func x(_ t: UInt64) -> Double { left + plotWidth * Double(min(max(t, start), end) - start) / Double(o.windowTicks) }

        // Lanes for the lower part: green workers by OS thread (worker 0 is
        // the thread that called Kernel.run), others by CPU.
        var laneOf: [UInt: Int] = [:]
        var laneNames: [String] = []
        let byWorker = o.runtime == .green
        if byWorker {
            laneOf[o.mainOSThread] = 0
            laneNames.append("worker 0")
        }
        let all = o.traces.flatMap { t in t.intervals.map { (t, $0) } }.filter { $0.1.end > start && $0.1.start < end }
        for (_, iv) in all.sorted(by: { $0.1.start < $1.1.start }) {
            let key = byWorker ? iv.osThread : UInt(iv.cpu)
            if laneOf[key] == nil {
                laneOf[key] = laneNames.count
                laneNames.append(byWorker ? "worker \(laneNames.count)" : "CPU \(iv.cpu)")
            }
        }
        if !byWorker {  // CPUs in numeric order
            let cpus = laneOf.keys.sorted()
            laneOf = Dictionary(uniqueKeysWithValues: cpus.enumerated().map { ($1, $0) })
            laneNames = cpus.map { "CPU \($0)" }
        }

        let threads = Array(o.traces.prefix(64))
        let threadTop = top + 18
        let laneTop = threadTop + Double(threads.count) * rowHeight + 40
        let height = laneTop + Double(laneNames.count) * (rowHeight * 2) + 60
        var out: [String] = []
        out.append(#"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(width))" height="\#(Int(height))" viewBox="0 0 \#(Int(width)) \#(Int(height))" font-family="sans-serif" font-size="11">"#)
        out.append(#"<rect width="100%" height="100%" fill="white"/>"#)
        out.append(#"<text x="\#(left)" y="20" font-size="14" font-weight="bold">\#(escape(title))</text>"#)
        out.append(#"<text x="\#(left)" y="36" fill="rgb(85,85,85)">\#(escape(subtitle)). One row per thread (bars: when it ran), then one per \#(byWorker ? "worker" : "CPU"); colour: priority level</text>"#)

        // Time grid.
        let totalMs = Double(o.windowTicks) * msPerTick
        let step = niceStep(totalMs / 10)
        var t = 0.0
        while t <= totalMs + 1e-9 {
            let gx = left + plotWidth * t / totalMs
            out.append(#"<line x1="\#(f(gx))" y1="\#(f(threadTop - 4))" x2="\#(f(gx))" y2="\#(f(height - 40))" stroke="rgb(221,221,221)"/>"#)
            out.append(#"<text x="\#(f(gx))" y="\#(f(height - 26))" text-anchor="middle" fill="rgb(85,85,85)">\#(f(t)) ms</text>"#)
            t += step
        }

        func bar(_ trace: ThreadTrace, _ iv: RunInterval, y: Double, h: Double) -> String {
            let x0 = x(iv.start), x1 = max(x(iv.end), x0 + 0.6)
            let lane = laneOf[byWorker ? iv.osThread : UInt(iv.cpu)].map { laneNames[$0] } ?? "?"
            let tip = String(format: "%@ %d (level %d) on %@, CPU %d: %.3f-%.3f ms", trace.role, trace.index, trace.priorityLevel,
                             lane, iv.cpu, ms(iv.start), ms(iv.end))
            return #"<rect x="\#(f(x0))" y="\#(f(y))" width="\#(f(x1 - x0))" height="\#(f(h))" fill="\#(colour(trace))"><title>\#(escape(tip))</title></rect>"#
        }

        out.append(#"<text x="8" y="\#(f(threadTop - 6))" font-weight="bold">threads</text>"#)
        for (row, trace) in threads.enumerated() {
            let y = threadTop + Double(row) * rowHeight
            out.append(#"<text x="8" y="\#(f(y + rowHeight - 3))">\#(escape("\(trace.role) \(trace.index) (\(trace.priorityLevel))"))</text>"#)
            for iv in trace.intervals where iv.end > start && iv.start < end {
                out.append(bar(trace, iv, y: y + 1, h: rowHeight - 2))
            }
        }
        if o.traces.count > threads.count {
            out.append(#"<text x="8" y="\#(f(laneTop - 22))" fill="rgb(85,85,85)">(\#(o.traces.count - threads.count) more threads not shown as rows)</text>"#)
        }

        out.append(#"<text x="8" y="\#(f(laneTop - 6))" font-weight="bold">\#(byWorker ? "workers" : "CPUs")</text>"#)
        for (lane, name) in laneNames.enumerated() {
            let y = laneTop + Double(lane) * rowHeight * 2
            out.append(#"<text x="8" y="\#(f(y + rowHeight + 3))">\#(escape(name))</text>"#)
            out.append(#"<rect x="\#(left)" y="\#(f(y))" width="\#(f(plotWidth))" height="\#(f(rowHeight * 2 - 4))" fill="rgb(244,244,244)"/>"#)
        }
        for (trace, iv) in all {
            guard let lane = laneOf[byWorker ? iv.osThread : UInt(iv.cpu)] else { continue }
            out.append(bar(trace, iv, y: laneTop + Double(lane) * rowHeight * 2, h: rowHeight * 2 - 4))
        }

        // Legend: one swatch per level present.
        var lx = left
        for level in Set(o.traces.map(\.priorityLevel)).sorted() {
            let sample = o.traces.first { $0.priorityLevel == level }!
            out.append(#"<rect x="\#(f(lx))" y="\#(f(height - 16))" width="12" height="10" fill="\#(colour(sample, shade: 0))"/>"#)
            out.append(#"<text x="\#(f(lx + 16))" y="\#(f(height - 7))">level \#(level)</text>"#)
            lx += 90
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }

    /// Hue by priority level: .low (8) and below blue, .normal (16) green,
    /// .high (24) and above red; threads of one level alternate in
    /// lightness so that adjacent bars stay distinct.
    static func colour(_ trace: ThreadTrace, shade: Int? = nil) -> String {
        let hue = min(220, max(0, 220 - Double(trace.priorityLevel - 8) * 220 / 16))
        let lightness = [42, 56, 70][(shade ?? trace.index) % 3]
        return "hsl(\(Int(hue)),70%,\(lightness)%)"
    }

    static func niceStep(_ raw: Double) -> Double {
        let magnitude = pow(10, floor(log10(max(raw, 1e-9))))
        for m in [1.0, 2, 5, 10] where m * magnitude >= raw { return m * magnitude }
        return 10 * magnitude
    }

    static func f(_ x: Double) -> String { String(format: "%.1f", x) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
