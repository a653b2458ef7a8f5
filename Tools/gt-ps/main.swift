// `--stacks=all` is one option with an optional value, which ArgumentParser
// has no form for: it becomes the hidden --all-stacks flag here
// (`--stacks=grouped` is plain --stacks).
var arguments = Array(CommandLine.arguments.dropFirst())
arguments = arguments.map { $0 == "--stacks=all" ? "--all-stacks" : $0 == "--stacks=grouped" ? "--stacks" : $0 }
GTPS.main(arguments)
