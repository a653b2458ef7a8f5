// The snapshot types (KernelSnapshot, StackTrace, ...) live in the small
// GTSnapshot module that the tools share; `import GreenThreads` brings them
// along, so programs never import GTSnapshot themselves.
@_exported import GTSnapshot
