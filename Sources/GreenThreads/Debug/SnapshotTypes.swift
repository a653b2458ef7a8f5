// The snapshot types (KernelSnapshot, StackTrace, ...) live in the small
// GTSnapshot module that the tools share, a product of its own. The library's
// API returns them, so the import is public; a program that names them
// (`let s: KernelSnapshot = Kernel.snapshot()`) imports GTSnapshot itself.
import GTSnapshot
