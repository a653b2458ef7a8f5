// Entry point; the command is in GTFairness.swift.
GTFairness.main()
