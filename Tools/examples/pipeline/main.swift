// gt-example-pipeline: a producer/consumer pipeline over channels.
//
//   source ──numbers──▶ square ×4 ──squares──▶ sink
//
// One source thread sends the numbers 1...N into a small buffered channel;
// four squarer threads take numbers from it and send their squares on; one
// sink thread adds them up. A full channel makes its senders wait and an
// empty one its receivers, so the fast stages wait for the slow ones and no
// buffer grows beyond its capacity. Closing a channel is how a stage says
// "no more": receivers drain what is buffered, then get nil.
//
// Prints how many items each thread handled and checks the sum against the
// closed form N(N+1)(2N+1)/6; exits with status 1 if they differ.
//
//   swift run gt-example-pipeline [count]
import Glibc
import GreenThreads

let count = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 100_000
let squarers = 4
let capacity = 64

print("pipeline: source -> \(squarers) squarers -> sink, \(count) numbers, channels of capacity \(capacity)")

let (perThread, sum) = try Kernel.run { () -> ([(String, Int)], Int) in
    let numbers = GreenChannel<Int>(capacity: capacity, name: "numbers")
    let squares = GreenChannel<Int>(capacity: capacity, name: "squares")

    // The source closes `numbers` when it is done: the squarers' loops end.
    let source = try GreenThread.spawn(name: "source") { () -> Int in
        for n in 1...count { try numbers.send(n) }
        numbers.close()
        return count
    }
    let workers = try (0..<squarers).map { i in
        try GreenThread.spawn(name: "square-\(i)") { () -> Int in
            var handled = 0
            while let n = numbers.receive() {
                try squares.send(n * n)
                handled += 1
            }
            return handled
        }
    }
    let sink = try GreenThread.spawn(name: "sink") { () -> (items: Int, sum: Int) in
        var items = 0, sum = 0
        while let square = squares.receive() {
            sum += square
            items += 1
        }
        return (items, sum)
    }

    var rows = [(source.thread.name, try source.join())]
    for w in workers { rows.append((w.thread.name, try w.join())) }
    // Several threads send on `squares`: only once every one of them is done
    // may it close, which ends the sink's loop.
    squares.close()
    let total = try sink.join()
    rows.append((sink.thread.name, total.items))
    return (rows, total.sum)
}

print("THREAD     ITEMS")
for (name, items) in perThread {
    print(name + String(repeating: " ", count: max(1, 11 - name.count)) + "\(items)")
}
let expected = count * (count + 1) * (2 * count + 1) / 6
let ok = sum == expected
print("sum of squares 1...\(count) = \(sum) (expected \(expected)): \(ok ? "OK" : "WRONG")")
if !ok { exit(1) }
