// Scenarios for the sync area (see main.swift).
import CGreenCore
import GreenThreads
import Glibc

let syncScenarios: [String: () throws -> Void] = [:]
