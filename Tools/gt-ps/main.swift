// Entry point; the command is in GTPS.swift.
GTPS.main()
