// Entry point; the command is in GTBench.swift.
GTBench.main()
