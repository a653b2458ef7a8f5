// gt_unwind.h: stack traces of green threads (unwind.c), for Kernel.snapshot,
// GreenThread.stackTrace(), gt-ps, deadlock reports and crash dumps; and the
// debug socket's accept (debug_socket.c).
//
// A trace is captured as raw program counters first (cheap, and possible in
// a signal handler), and symbolized later: names with libunwind and dladdr,
// demangled with swift_demangle / __cxa_demangle only outside handlers
// (both allocate; BRIEF.md hazard 10).
//
// Where a trace comes from:
//   - the calling thread: unw_getcontext;
//   - a parked thread: the frame gt_switch saved on its stack (gt_frame.h);
//   - a preempted thread: the signal frame's ucontext (preempt_context);
//   - a thread running on another worker: that worker is asked with a
//     SIGVTALRM to walk its own interrupted context (a trace request), and
//     the asker waits with a timeout.
#ifndef GT_UNWIND_H
#define GT_UNWIND_H

#include "gt_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Frames kept per trace; deeper stacks are cut (`truncated`).
#define GT_TRACE_MAX_FRAMES 128

/// A raw trace: program counters, innermost first. `exact[i]` is 1 when
/// pc[i] is an interrupted instruction (the first frame of a signal context,
/// the frame below a signal trampoline), 0 when it is a return address
/// (symbolize pc - 1 then, or a call at a function's end names the next one).
typedef struct gt_trace {
    int32_t count;
    int32_t truncated;
    uintptr_t pc[GT_TRACE_MAX_FRAMES];
    uint8_t exact[GT_TRACE_MAX_FRAMES];
} gt_trace;

/// The calling thread's stack, from the caller of this function outward.
int gt_trace_current(gt_trace *out);
/// A parked thread's stack, from the frame gt_switch saved at `sp`.
int gt_trace_switch_frame(const void *sp, gt_trace *out);
/// A stack interrupted by a signal: `ucontext` is the handler's third argument.
int gt_trace_ucontext(void *ucontext, gt_trace *out);

// ---------------------------------------------------------------------------
// Symbols (outside signal handlers: dladdr may take the loader lock).

/// The symbol containing `pc` (exact: an interrupted instruction; else a
/// return address). Returns 0 and fills `name` (mangled, NUL-terminated) and
/// `*offset` (bytes from the symbol's start), or -1 if none is known.
int gt_symbol_lookup(uintptr_t pc, int exact, char *name, size_t name_size, uint64_t *offset);
/// The image (executable or shared object) holding `pc`: its path and load
/// base. Returns 0, or -1 if `pc` is in no image.
int gt_image_lookup(uintptr_t pc, const char **path, uintptr_t *base);
/// A demangled name (Swift or C++), malloc'ed, or NULL if `name` is neither.
char *gt_demangle(const char *name);
/// A short form for narrow displays (`GreenThread.sleep(for:)`, no module,
/// types or return type), malloc'ed, or NULL: the Swift runtime's
/// `_swift_backtrace_demangle` (what its crash backtracer prints), looked up
/// at run time because it is runtime SPI that may go away.
char *gt_demangle_short(const char *name);
/// swift_demangle from libswiftCore: returns a malloc'ed string when
/// `output_buffer` is NULL, or NULL if `mangled` is not a Swift name.
char *swift_demangle(const char *mangled, size_t mangled_length, char *output_buffer,
                     size_t *output_buffer_size, uint32_t flags);

// ---------------------------------------------------------------------------
// Trace requests: asking another worker for its running thread's trace.
//
// The asker posts a request in the worker's `trace_request` slot and kicks
// it with SIGVTALRM; the worker's handler walks its own interrupted context
// into the request (if the point is consistent: see unwind.c) and marks it
// done. The asker waits without holding the kernel lock: the thread may be
// in its own preemption path, waiting for that lock with SIGVTALRM masked.

/// Request states (`state`).
enum {
    GT_TRACE_IDLE = 0,   // not posted, or withdrawn by the asker
    GT_TRACE_POSTED,     // waiting for the worker's handler
    GT_TRACE_TAKEN,      // the handler is walking the stack
    GT_TRACE_DONE,       // `trace` holds the result
    GT_TRACE_DECLINED,   // see `reason`
};
/// Outcomes of posting and waiting (distinct from the states).
enum {
    GT_TRACE_OK = 0,
    GT_TRACE_NOT_RUNNING = 100,  // the worker runs another thread, or none
    GT_TRACE_NO_HEADROOM,        // too little stack left to run the unwinder on it
    GT_TRACE_TIMED_OUT,          // no answer in time (signal blocked, unsafe point)
    GT_TRACE_UNAVAILABLE,        // preemption signals are off
    GT_TRACE_ABANDONED,          // a handler still holds the request: never reuse it
    GT_TRACE_BUSY,               // another asker (a dump) holds the worker's slot
};

typedef struct gt_trace_request {
    int32_t state;                // GT_TRACE_IDLE...DECLINED; atomic
    int32_t reason;               // outcome when declined
    gt_worker_state *worker;      // the worker asked
    gt_thread_core *target;       // the thread expected to run there
    gt_trace trace;
} gt_trace_request;

/// Registers the handler hook and finds the loader's code (where a walk
/// must wait). `signals_enabled`: whether the kernel's SIGVTALRM handler is
/// installed (without it a SIGVTALRM would kill the process, so no request
/// is sent). Idempotent.
void gt_trace_support_install(int signals_enabled);
/// Posts `r` for `target`, which worker `w` should be running. The caller
/// keeps `w` alive (its state is the worker's TLS). Returns GT_TRACE_OK,
/// GT_TRACE_UNAVAILABLE or GT_TRACE_BUSY. The request must stay valid for the process's life
/// (a late handler may still look at it).
int gt_trace_request_post(gt_trace_request *r, gt_worker_state *w, gt_thread_core *target);
/// Waits for the answer, signalling thread `tid` every millisecond, at most
/// `timeout_ns`. Returns GT_TRACE_OK or an outcome; on a timeout the request
/// is withdrawn (or GT_TRACE_ABANDONED if a handler still holds it). Needs
/// no lock; callable from a signal handler.
int gt_trace_request_wait(gt_trace_request *r, int tid, int64_t timeout_ns);
/// Clears `r` from worker `w`'s slot if it is still there (caller keeps `w` alive).
void gt_trace_request_unpost(gt_trace_request *r, gt_worker_state *w);
/// Post, wait and unpost in one call, for the crash dump (no locks there).
int gt_trace_request_run(gt_trace_request *r, gt_worker_state *w, gt_thread_core *target, int64_t timeout_ns);

/// Racy but tear-free reads of a worker's counters from another thread.
typedef struct gt_worker_counters {
    uint64_t ticks, preemptions, deferrals, parks, slice_start;
    int32_t tid, is_worker;
} gt_worker_counters;
void gt_worker_counters_read(const gt_worker_state *w, gt_worker_counters *out);

// ---------------------------------------------------------------------------
// Crash dumps: every green thread's raw trace (PCs, images, offsets) on
// stderr, and in <dir>/gt-<pid>.crash when a dump directory is set, when the
// program dies of a fatal signal. `gt-ps --dump FILE` renders it. SIGQUIT
// (GT_DUMP_ON=SIGQUIT) only wakes the snapshot server, which prints a
// symbolized snapshot.

/// What the kernel knows of one thread, copied by the walker (Swift) into
/// the dump's pre-allocated table.
typedef struct gt_dump_thread {
    gt_thread_core *core;
    gt_worker_state *worker_state;   // the worker running it, or NULL
    int32_t state;                   // GT_DUMP_* below
    int32_t worker;                  // worker index, or -1
    int32_t base_priority;
    int32_t effective_priority;
    uint64_t wait_object;
    uint64_t wait_owner;             // thread id, 0 if none
    char wait_kind[24];              // "" when not waiting
} gt_dump_thread;
enum { GT_DUMP_READY = 0, GT_DUMP_RUNNING, GT_DUMP_BLOCKED, GT_DUMP_SLEEPING, GT_DUMP_FINISHED };

/// The walker: called in the dumping handler with `kernel`; it takes the
/// kernel lock if it can (setting `*locked`) and calls gt_dump_add for each
/// live thread without allocating. `release` is called at the end of the
/// dump with the same arguments, to drop the lock when `*locked`.
typedef void (*gt_dump_walker)(void *kernel, int32_t *locked);
void gt_dump_set_walker(gt_dump_walker walker, gt_dump_walker release, void *kernel);
/// Where dumps are also written (GT_DUMP_DIR), or "" / NULL for stderr
/// only. Returns -1 if the path is too long. Call before a crash can happen.
int gt_dump_set_directory(const char *dir);
/// Adds one thread to the dump in progress (oldest first). Returns 0, or -1
/// when the table is full (the dump then says how many were left out).
int gt_dump_add(const gt_dump_thread *thread);
/// Prints the dump (the walker's threads, with traces) to `fd` and the dump
/// file; `signal` and `ucontext` describe the interrupted thread.
/// Async-signal-safe.
void gt_dump_all(int fd, int signal, void *ucontext);

/// Installs the fatal-signal handlers (SIGILL, SIGFPE, SIGABRT; SIGSEGV and
/// SIGBUS are fault.c's, which calls gt_crash_dump) that dump before
/// chaining to the previous handler or the default action. Idempotent.
int gt_crash_handlers_install(void);
/// Makes SIGQUIT write one byte to `notify_fd` (non-blocking: the snapshot
/// server's dump pipe) and continue, or restores its previous disposition.
int gt_quit_dump_install(int notify_fd);
void gt_quit_dump_uninstall(void);

/// The crash dump for fatal `signal`, at most once per process.
void gt_crash_dump(int signal, void *ucontext);

// ---------------------------------------------------------------------------
// The debug socket's calls that Swift's Glibc module does not export.

/// accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK): the
/// connection is close-on-exec from its first instant, so a child forked
/// by another thread meanwhile never inherits it. Returns the fd, or -1
/// with errno set (read it right after, in the caller's wrapper).
int gt_accept_cloexec(int listener);

#ifdef __cplusplus
}
#endif
#endif
