// Scenarios for the benchmark area (see main.swift).
import CGreenCore
import GreenThreads
import Glibc

let benchmarkScenarios: [String: () throws -> Void] = [:]
