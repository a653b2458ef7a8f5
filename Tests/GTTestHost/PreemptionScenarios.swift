import CGreenCore
import GreenThreads
import Glibc

let preemptionScenarios: [String: () throws -> Void] = [:]
