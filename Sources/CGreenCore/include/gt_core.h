// gt_core.h: the C/assembly core of GreenThreads, and the whole of its interface.
//
// The core owns what Swift cannot express: the context switch, the first frame
// of a new thread, the per-OS-thread state that signal handlers read, the
// SIGVTALRM (preemption) and SIGSEGV (stack guard) handlers, parking an OS
// thread with the green thread it was running when preempted (park.c), and
// the system calls whose errno must be read right after the call. It knows
// nothing of Swift types: a green thread is a `gt_thread_core` and an opaque
// pointer; the scheduler lives in Swift and is reached through the hook
// registered with `gt_install_hooks`.
//
// Invariants (see docs/preemption.md):
// - A context is switched only while the switching OS thread's `critical`
//   count is raised; the context that resumes lowers it. So the count is the
//   single "preemption disabled" bracket for every switch path.
// - No green thread runs on an OS thread whose state belongs to an
//   asynchronously preempted one: a preempted thread keeps its OS thread,
//   which parks (inside the handler, on the thread's own stack) and gives its
//   processor to a spare OS thread. Only cooperative switches (yield, block,
//   exit) switch green threads on one OS thread.
#ifndef GT_CORE_H
#define GT_CORE_H

#include <stdint.h>
#include <stddef.h>
#include <signal.h>
#include <time.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Context switch (switch_{arch}_{abi}_elf_gas.S)

/// Saves the callee-saved registers of the calling context on its stack,
/// stores its stack pointer in `*save_sp`, then resumes the context whose
/// stack pointer is `load_sp`. Returns when someone switches back.
void gt_switch(void **save_sp, void *load_sp);

/// Builds the first frame of a new context on a stack whose highest usable
/// address is `stack_top` (16-byte aligned). When switched to, the context
/// calls `entry(arg)` on a 16-byte aligned stack; `entry` must never return
/// (the trampoline traps if it does). Returns the stack pointer for `gt_switch`.
void *gt_context_make(void *stack_top, void (*entry)(void *), void *arg);

/// Size in bytes of the frame `gt_switch` pushes (asserted against the
/// assembly in context.c; tests and stack accounting rely on it).
size_t gt_switch_frame_size(void);

// ---------------------------------------------------------------------------
// Control block of one green thread: the part the core and the signal
// handlers must read. Lives at the top of the thread's stack region; the Swift
// `GreenThread` object owns the rest.

#define GT_NAME_CAPACITY 48

typedef struct gt_thread_core {
    void *sp;                    // saved stack pointer while switched out
    uintptr_t exclusivity[2];    // Swift's exclusivity access set, swapped at each switch
    uint64_t id;
    int32_t saved_errno;         // errno of this thread while switched out
    volatile int32_t no_preempt; // withoutPreemption depth (read by the handler on the same OS thread)
    void *stack_low;             // lowest usable byte of the stack
    void *stack_high;            // one past the highest usable byte
    void *guard_low;             // guard region [guard_low, stack_low), may be empty
    uint64_t cpu_ticks;          // time-stamp counter ticks spent running
    uint64_t switches;           // times switched in
    uint64_t preemptions;        // times preempted by the timer
    uint64_t deferrals;          // preemptions deferred (critical section, withoutPreemption)
    uint64_t cpu_tick_ns;        // CPU time by the OS thread's CPU-time tick: periods seen x period
    int32_t debt_periods;        // CPU used beyond the average slice (deficit round-robin)
    int32_t effective_level;     // effective priority, mirrored for the handler's quick check
    uint64_t parked_periods;     // slice periods used before its last preemption (park.c -> Swift)
    void *preempt_context;       // ucontext_t saved when it parked with its OS thread (park.c)
    void *owner;                 // opaque: the Swift GreenThread (unretained)
    char name[GT_NAME_CAPACITY]; // NUL-terminated copy, for async-signal-safe messages
} gt_thread_core;

/// Stack-depth measurement: paint `window` bytes starting `gap` bytes below
/// the caller's stack pointer; later, the bytes from the window's top that
/// were overwritten (plus `gap`) is the extra depth reached in between.
void *gt_stack_paint(size_t gap, size_t window);
size_t gt_stack_paint_depth(const void *bottom, size_t window);

/// Copies `name` (truncated) into the block; NULL leaves it empty, which
/// messages print as "thread-<id>".
void gt_thread_core_set_name(gt_thread_core *core, const char *name);

// ---------------------------------------------------------------------------
// Per-OS-thread state: one instance per OS thread, in TLS. For an OS thread
// of the kernel (an "M", Go's name) it says which green thread the M runs,
// which processor (P: the right to run green threads) it holds, and its
// timers; its own signal handlers read it, and other threads read the
// fields marked atomic. See park.c for the protocol that moves processors
// between Ms.

typedef struct gt_worker_state {
    gt_thread_core *current;       // green thread this M runs, NULL in its scheduling context
    // current->owner, or NULL when current is: kept beside `current` by the
    // switch so that the mutex fast paths find their thread in one load.
    void *current_owner;
    void *machine;                 // opaque: the Swift Machine of this OS thread (unretained)
    void *processor;               // atomic: the Swift Processor this M holds, or NULL (park.c)
    int32_t is_worker;             // 1 while this OS thread is an M of the running kernel
    // volatile: shared with this OS thread's own signal handler, so every
    // access must really happen where the code says (the sig_atomic_t rule).
    volatile int32_t critical;        // kernel preempt-disable count (see invariants)
    volatile int32_t preempt_pending; // a preemption came due while deferred; honour it when safe
    int32_t preemption_enabled;    // the kernel's configuration
    uint64_t slice_start;          // TSC when the current thread got the CPU (accounting)
    uint32_t slice_periods;        // tick periods of CPU time the current thread has used
    uint32_t periods_per_slice;    // its slice, in tick periods
    int64_t tick_ns;               // the tick period
    uint64_t ticks;                // SIGVTALRM deliveries on this M
    uint64_t preemptions;          // preemptions taken on this M
    uint64_t deferrals;            // preemptions deferred on this M
    uint64_t parks;                // times this M parked with a preempted thread
    uint64_t no_spare;             // preemptions put off because no spare M was ready
    timer_t tick_timer;            // periodic, CLOCK_THREAD_CPUTIME_ID
    int32_t timers_armed;
    int32_t tid;                   // kernel thread id, for tgkill (atomic)
    int32_t preempt_requested;     // set (atomically) by wakers on other threads
    // park.c: futex word this M sleeps on while parked or spare; bumped by
    // whoever hands it a processor or wakes it.
    uint32_t park_word;
    int32_t parked;                // atomic: 1 while parked with its preempted thread
    int32_t pinned;                // atomic: pinned to the giver's CPU by a hand-off (park.c)
    // A spare M woken by a parking M finds that M here: it must requeue the
    // parked thread (in Swift) before it schedules. Written before the wake.
    struct gt_worker_state *handoff_from;
    struct gt_worker_state *next_spare;   // link in the spare stack (park.c lock)
    struct gt_worker_state *next_returned; // link in the returned list (park.c lock)
    // Issue 6 (stack traces): a gt_trace_request another thread posted for
    // this M's running thread (gt_unwind.h); taken, atomically, by the
    // SIGVTALRM handler, which passes it to the trace hook.
    void *trace_request;
    // This OS thread's errno (fixed for its life): the switch saves and
    // restores a green thread's errno through it, with no libc call.
    int *errno_location;
    // Swift exclusivity accesses this OS thread had open when it became an
    // M (Kernel.run's caller may be inside one), set aside until it stops
    // being one: meanwhile its access set holds only the running green
    // thread's (see the switch in Scheduler.swift).
    uintptr_t base_exclusivity[2];
} gt_worker_state;

/// This OS thread's state. Swift reads it only inside a critical section (or
/// on a non-worker thread): outside one, the calling green thread may be
/// preempted and resumed on another OS thread right after the call.
gt_worker_state *gt_self(void);

/// Raises the preempt-disable count and returns this OS thread's state, in
/// one step that cannot be split by a preemption (the function lies in the
/// no-preempt code section). While raised, the caller stays on this worker.
gt_worker_state *gt_enter_critical(void);

/// Lowers the count. Returns 1 when it reached zero with a preemption
/// pending that may be honoured now (the caller should yield), else 0.
int gt_exit_critical(void);

/// Whether the calling code runs on a green thread (not a worker's idle
/// context nor a foreign OS thread). Safe at any time.
int gt_on_green_thread(void);

/// Atomically asks a worker to preempt its current thread (a higher-priority
/// thread became ready), signalling it with tgkill. Callable from any thread.
void gt_request_preemption(gt_worker_state *worker);

/// Atomically reads the current thread's no-preempt depth adjustments
/// (withoutPreemption); these touch only the calling green thread's block.
void gt_no_preempt_enter(void);
int gt_no_preempt_exit(void);

// ---------------------------------------------------------------------------
// Time-stamp counter (rdtsc / cntvct_el0): used for CPU accounting and time
// slices so the switch path makes no system call.

static inline uint64_t gt_tsc(void) {
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ __volatile__("isb; mrs %0, cntvct_el0" : "=r"(v) :: "memory");
    return v;
#else
#error "GreenThreads supports x86_64 and aarch64 only"
#endif
}

/// Word-sized atomics on plain memory. Futexes need the word's address,
/// which Synchronization's Atomic does not expose; these keep lock words in
/// memory the kernel lock and the futex calls both see.
static inline uint32_t gt_atomic_load_u32(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void gt_atomic_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t gt_atomic_exchange_u32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL); }
static inline uint32_t gt_atomic_fetch_add_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline int gt_atomic_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
static inline void gt_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#else
    __asm__ __volatile__("yield");
#endif
}

/// Takes a lock word from 0 to `value`, spinning for up to `budget` CPU
/// pauses (holders keep the core's locks for tens to hundreds of
/// nanoseconds). 1 when taken; 0 tells the caller to sleep on its futex.
/// Shared by the kernel and park locks. The wait between looks doubles up
/// to 32 pauses: waiters that looked after every pause kept the line away
/// from the holder, and one that gave up after 100 pauses while two workers
/// yielded in turn fell into the futex (a system call, and a sleep) on
/// about one acquisition in 200 (gt_pi_lock).
static inline int gt_spin_acquire(uint32_t *word, uint32_t value, int budget) {
    int pause = 1;
    for (int spent = 0; spent <= budget; spent += pause) {
        uint32_t free_word = 0;
        if (__atomic_load_n(word, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(word, &free_word, value, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return 1;
        for (int i = 0; i < pause; i++) gt_cpu_relax();
        if (pause < 32) pause *= 2;
    }
    return 0;
}

/// How far this OS thread's gt_tls_state lies from its thread pointer: the
/// same on every thread (the variable is initial-exec TLS), set at load.
extern intptr_t gt_tls_state_offset;

/// The calling OS thread's thread pointer, by a volatile asm: a caller that
/// switched green threads in between (and may now run on another OS thread)
/// reads it again; the compiler may not reuse it across calls the way it may
/// reuse a `__thread` variable's address.
static inline char *gt_thread_pointer(void) {
    char *tp;
#if defined(__x86_64__)
    __asm__ volatile("movq %%fs:0, %0" : "=r"(tp));
#elif defined(__aarch64__)
    __asm__ volatile("mrs %0, tpidr_el0" : "=r"(tp));
#else
#error "GreenThreads supports x86-64 and aarch64"
#endif
    return tp;
}

/// The calling OS thread's state, inline. A preemption cannot move a thread
/// to another OS thread (it keeps its own), so any instruction boundary is a
/// safe place to read it.
static inline gt_worker_state *gt_self_inline(void) {
    return (gt_worker_state *)(gt_thread_pointer() + gt_tls_state_offset);
}

/// The current green thread's owner pointer (the Swift GreenThread), or
/// NULL outside a green thread. Inline: the mutex fast paths call it twice
/// per lock and unlock.
static inline void *gt_current_owner(void) {
    return gt_self_inline()->current_owner;
}

/// Ticks of `gt_tsc` per second, measured once per process.
uint64_t gt_tsc_frequency(void);

// ---------------------------------------------------------------------------
// Preemption: the handler, the timers, and parking (park.c).

/// Issue 6: the hook the SIGVTALRM handler calls first when this M's
/// `trace_request` is set (registered by unwind.c). It only walks the
/// interrupted context into the request's buffer: async-signal-safe.
typedef void (*gt_trace_hook)(gt_worker_state *w, void *request, void *ucontext);
void gt_set_trace_hook(gt_trace_hook hook);

/// Installs the SIGVTALRM handler. Returns 0, or -1 with errno EBUSY when the
/// host program already handles SIGVTALRM (we never take a signal over
/// silently). Idempotent across kernels.
int gt_preemption_install(void);
/// Restores the previous SIGVTALRM disposition.
void gt_preemption_uninstall(void);

/// Creates and arms this M's CPU-time tick of `tick_ns`. Returns 0 or -1
/// with errno set.
int gt_worker_timers_start(gt_worker_state *w, int64_t tick_ns);
/// CPU time consumed so far by the OS thread `thread` (a pthread_t), in ns,
/// or -1: the monitor's test for an M blocked in the OS.
int64_t gt_thread_cpu_ns_of(unsigned long thread);
/// The scheduler state letter of OS thread `tid` in /proc ('R' running or
/// runnable, 'S' sleeping, 'D' uninterruptible, ...), or 0 if unknown.
char gt_os_thread_state(int tid);
void gt_worker_timers_stop(gt_worker_state *w);

// ---------------------------------------------------------------------------
// Parking (park.c): the protocol that keeps a preempted thread on its OS
// thread and moves processors between OS threads. Async-signal-safe: the
// handler uses it.

/// The kernel-wide part: the stack of spare Ms, the list of Ms that parked
/// after losing their processor, and the monitor's wake-up descriptor (an
/// eventfd, see gt_monitor_open). One kernel runs at a time;
/// `gt_park_setup` starts each.
void gt_park_setup(int monitor_event_fd);

// ---------------------------------------------------------------------------
// The monitor's sleep (sys.c). It waits on two descriptors: an eventfd that
// anyone (a signal handler included) writes to wake it now, and a timerfd
// set to the earliest time it must look again. A thread that adds an
// earlier deadline re-arms the timer instead of waking the monitor, so a
// short sleep costs the monitor one wake-up (at the deadline), not two.

/// Opens the pair (close-on-exec, non-blocking). 0, or an errno.
int gt_monitor_open(int *event_fd, int *timer_fd);
void gt_monitor_close(int event_fd, int timer_fd);
/// Sets the timer to the CLOCK_MONOTONIC time `deadline_ns` (absolute);
/// a time already past fires at once. Replaces any earlier setting.
void gt_monitor_arm(int timer_fd, int64_t deadline_ns);
/// Wakes the monitor now (async-signal-safe).
void gt_monitor_wake(int event_fd);
/// Sleeps until the eventfd is written or the timer fires (or a signal),
/// then clears the eventfd if it was written.
void gt_monitor_wait(int event_fd, int timer_fd);

/// Parks the calling M with its current thread: gives its processor to a
/// spare M (which requeues the thread), or, if the monitor already took the
/// processor away, posts itself to the returned list for the monitor; then
/// sleeps until a processor is handed back (`gt_park_resume`). `context` is
/// the signal frame's ucontext, or NULL (park.c then captures one). Call
/// with `critical` raised to 1 by the caller. Returns 1 if it parked, 0 if
/// no spare M was ready (the preemption stays pending; the monitor is asked
/// for more spares).
int gt_park(gt_worker_state *w, void *context);

/// Honours a preemption that was deferred (critical section, no-preempt
/// region) or a lost processor, outside any handler: raises `critical`,
/// parks, lowers it. Called when gt_exit_critical / gt_no_preempt_exit
/// returned 1.
void gt_park_pending(void);

/// Hands processor `p` to the parked or spare M `w`: stores it and wakes
/// `w`. The caller (Swift, kernel lock held) has set up everything `w`
/// needs first; the release store publishes it.
void gt_park_resume(gt_worker_state *w, void *p);

/// Spare Ms: a spare M pushes itself and sleeps; a parking M pops one. The
/// stack is guarded by a spin lock taken only with preemption deferred.
void gt_spare_push(gt_worker_state *w);
/// Removes `w` from the spare stack if it is there (retiring it); 1 if removed.
int gt_spare_remove(gt_worker_state *w);
int gt_spare_count(void);
/// Takes a spare M off the stack (the monitor hands it a retaken processor).
gt_worker_state *gt_spare_pop(void);
/// Sleeps until `w->park_word` differs from `seen` (or `timeout_ns` passes,
/// if >= 0).
void gt_park_wait(gt_worker_state *w, uint32_t seen, int64_t timeout_ns);
/// Restores the calling Machine's affinity after a hand-off pinned it.
void gt_unpin_self(gt_worker_state *w);
/// Wakes `w` without handing it anything (retire, shut down).
void gt_park_wake(gt_worker_state *w);
/// Bumps a futex word and wakes one thread sleeping on it (park words, the
/// keeper's and the netpoller thread's words).
void gt_wake_word(uint32_t *word);
/// Takes the next M that parked after losing its processor, or NULL.
gt_worker_state *gt_returned_pop(void);
/// Atomically takes the processor away from `w` if it still holds `p`;
/// 1 on success (the monitor's hand-off of a blocked M).
int gt_processor_retake(gt_worker_state *w, void *p);
/// Whether the calling M still holds a processor (Swift reads it inside a
/// critical section). Inline: read about three times per switch, and it
/// touches no thread-local (state.c's reason to stay out of line).
static inline void *gt_held_processor(gt_worker_state *w) {
    return __atomic_load_n(&w->processor, __ATOMIC_ACQUIRE);
}
/// The highest priority level with a ready thread, mirrored by the Swift run
/// queue for the handler's quick "is anyone waiting" check (-1: none).
void gt_set_highest_ready(int level);
/// The level last published by gt_set_highest_ready (relaxed: a spinner's hint).
int gt_highest_ready(void);

/// allocator.c: whether the context interrupted by a signal is inside the
/// memory allocator (holding its locks), so it must not be parked. Built
/// once per kernel, before any handler runs.
void gt_allocator_ranges_build(void);
int gt_allocator_busy(void *context);
/// Allocator entry points found (for tests).
int gt_allocator_span_count(void);

/// Test hook: 0 disables one hazard fix so a regression test can prove it
/// fails without it. Names: "errno", "exclusivity", "eintr", "handoff",
/// "allocator", "rehearsal". Returns the previous value, -1 for an unknown name, -2 in a
/// release build: the switches exist only in debug builds (the test hosts),
/// so release builds keep every fix with no test on the signal handler or
/// the switch path.
int gt_fix_set(const char *name, int enabled);
enum { GT_FIX_ERRNO = 0, GT_FIX_EXCLUSIVITY, GT_FIX_EINTR, GT_FIX_HANDOFF, GT_FIX_ALLOCATOR, GT_FIX_REHEARSAL, GT_FIX_COUNT };
/// The switch itself, for Swift code (which asks only under `#if DEBUG`).
int gt_fix_is_enabled(int which);
#if defined(DEBUG) && DEBUG
extern int gt_fix_flags[GT_FIX_COUNT];
static inline int gt_fix_enabled(int which) { return gt_fix_flags[which]; }
#else
static inline int gt_fix_enabled(int which) { (void)which; return 1; }
#endif

// ---------------------------------------------------------------------------
// Swift runtime entry points we call (exported by libswiftCore).

void swift_task_enterThreadLocalContext(char *state);
void swift_task_exitThreadLocalContext(char *state);

// ---------------------------------------------------------------------------
// Stacks and the guard-fault handler.

/// Registers a slab [base, base+length) carved into stacks of `stride` bytes,
/// each starting with `guard` bytes of guard region. Async-signal-safe to
/// read; at most GT_MAX_SLABS slabs.
#define GT_MAX_SLABS 4096
int gt_slab_register(void *base, size_t length, size_t stride, size_t guard);

/// Installs the SIGSEGV/SIGBUS handler on an alternate stack and remembers
/// the previous handlers to chain faults that are not guard hits.
int gt_fault_handler_install(void);
/// Gives this OS thread an alternate signal stack (workers call it).
/// The previous alternate stack is stored in `previous` and reinstated by
/// teardown (the host thread that runs worker 0 may have its own).
int gt_altstack_setup(void **out_mem, size_t *out_size, stack_t *previous);
void gt_altstack_teardown(void *mem, size_t size, const stack_t *previous);

/// The MADV_GUARD_INSTALL advice (Linux 6.13+).
#define GT_MADV_GUARD_INSTALL 102

// ---------------------------------------------------------------------------
// System calls with errno read right after the call (see sys.c).

typedef struct gt_sysresult { long value; int error; } gt_sysresult;

gt_sysresult gt_sys_mmap(size_t length, int prot, int flags, void **out);
gt_sysresult gt_sys_munmap(void *addr, size_t length);
gt_sysresult gt_sys_madvise(void *addr, size_t length, int advice);
gt_sysresult gt_sys_mprotect(void *addr, size_t length, int prot);
/// Installs up to 256 guard regions (`first + i * stride`, `guard` bytes
/// each) in one process_madvise call; value = guards installed.
gt_sysresult gt_sys_guard_install_batch(void *first, size_t stride, size_t guard, int count);
/// The kernel lock: a priority-inheriting futex word (0 free, else the
/// owner's tid). Lock and unlock on the same OS thread (state.c).
void gt_pi_lock(uint32_t *word);
/// Acquisitions of any kernel lock in this process that did not get it by
/// spinning and asked the kernel (FUTEX_LOCK_PI): a contention gauge.
uint64_t gt_pi_lock_sleeps(void);
int gt_pi_try_lock(uint32_t *word);
void gt_pi_unlock(uint32_t *word);
/// The running kernel's lock word, for the question below: the test host's
/// lock audit asks it on every foreign lock taken. NULL between kernels,
/// and for kernels where no thread is ever parked (without preemption) or
/// the program does not run (the rehearsal).
void gt_note_kernel_lock(uint32_t *word);
/// Whether the calling OS thread holds the running kernel's lock.
int gt_kernel_lock_held_by_caller(void);
gt_sysresult gt_sys_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);
gt_sysresult gt_sys_futex_wake(uint32_t *addr, int count);
gt_sysresult gt_sys_gettid(void);
gt_sysresult gt_sys_tgkill(int tid, int sig);
gt_sysresult gt_sys_nanosleep(int64_t ns);
gt_sysresult gt_sys_sched_yield(void);
int64_t gt_clock_monotonic_ns(void);
int64_t gt_thread_cpu_ns(void);

/// Reads errno / sets errno for the calling OS thread (Swift cannot name the
/// TLS variable directly).
int gt_errno_get(void);
void gt_errno_set(int value);
/// errno's address on the calling OS thread.
int *gt_errno_location(void);

/// CPUs in this thread's affinity mask, or -1.
int gt_affinity_cpu_count(void);
/// Names the calling OS thread (shown by top -H, gdb, perf).
void gt_set_thread_name(const char *name);
/// Sets the calling OS thread's timer slack (prctl PR_SET_TIMERSLACK).
void gt_set_timer_slack_ns(unsigned long ns);
/// Moves the calling OS thread to SCHED_FIFO at `priority`; 0 or -errno
/// (EPERM without CAP_SYS_NICE or an RLIMIT_RTPRIO allowance).
int gt_raise_to_realtime(int priority);
/// 1 if this process runs with a CET shadow stack (x86-64).
int gt_shadow_stack_enabled(void);

/// Writes a string to stderr with one write(2), async-signal-safe.
void gt_write_stderr(const char *s);

#ifdef __cplusplus
}
#endif
#endif
