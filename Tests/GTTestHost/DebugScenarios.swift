// Scenarios for the debug area (see main.swift).
import CGreenCore
import GreenThreads
import Glibc

let debugScenarios: [String: () throws -> Void] = [:]
