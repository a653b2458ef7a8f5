import GreenThreads
import Glibc

let args = CommandLine.arguments
let scenario = args.count > 1 ? args[1] : "basic"
switch scenario {
case "basic":
    let r = try Kernel.run(KernelConfiguration(workers: 1)) { () -> Int in
        var order: [String] = []
        let a = try GreenThread.spawn(name: "a") { () -> Int in
            for i in 0..<3 { order.append("a\(i)"); GreenThread.yield() }
            return 1
        }
        let b = try GreenThread.spawn(name: "b") { () -> Int in
            for i in 0..<3 { order.append("b\(i)"); GreenThread.yield() }
            return 2
        }
        let s = try a.join() + b.join()
        print(order)
        return s
    }
    print("result", r)
default:
    print("unknown scenario")
    exit(2)
}
