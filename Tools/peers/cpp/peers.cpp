// peers.cpp: the C and C++ peers of GreenThreads' gt-bench, measured on the
// same workloads as ../go/peers.go and with the same definitions (see
// ../README.md):
//
//   boost-context  switch: a raw boost::context::fiber resume ping-pong.
//   boost-fiber    spawn N fibers parked on a condition variable, release,
//                  join all; yield and unbuffered-channel ping-pong; the
//                  boost::fibers::mutex uncontended and with two OS threads.
//   pthread        spawn threads with default attributes (8 MiB stacks), all
//                  parked at once, release, join; condition-variable
//                  ping-pong on one core and across two; pthread_mutex.
//
// Output: one JSON object per line on stdout, the median of -reps runs under
// the metric's own name with "_min" and "_max" beside it. Diagnostics go to
// stderr. Every spawn repetition runs in a fresh child process (this binary
// with -spawn-once) so that freed stacks cached by malloc or glibc's thread
// stack cache cannot make a later repetition look cheaper.
//
// Built without Boost headers, only the pthread peer is compiled in: the
// Boost peers then print a note on stderr and nothing on stdout.

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef PEERS_WITH_BOOST
#if __has_include(<boost/fiber/all.hpp>) && __has_include(<boost/context/fiber.hpp>)
#define PEERS_WITH_BOOST 1
#else
#define PEERS_WITH_BOOST 0
#endif
#endif

#if PEERS_WITH_BOOST
#include <boost/context/fiber.hpp>
#include <boost/context/stack_traits.hpp>
#include <boost/fiber/all.hpp>
#include <boost/version.hpp>
#endif

extern char** environ;

namespace {

// MARK: options

struct Options {
    std::string peer = "all";
    std::string workload = "all";
    std::vector<long> sizes{10000, 100000, 1000000};
    std::vector<long> pthreadSizes{10000};
    int reps = 3;
    long switchIters = 1000000;
    long mutexIters = 10000000;
};

[[noreturn]] void usage(const char* complaint) {
    if (complaint != nullptr) std::fprintf(stderr, "peers: %s\n", complaint);
    std::fprintf(stderr,
                 "usage: peers [-quick] [-peer boost-context|boost-fiber|pthread|all]\n"
                 "             [-workload spawn|switch|mutex|all] [-n N,N,...] [-pthread-n N,...]\n"
                 "             [-reps R] [-switch-iters K] [-mutex-iters K]\n");
    std::exit(2);
}

std::vector<long> parseSizes(const std::string& list) {
    std::vector<long> sizes;
    std::stringstream in(list);
    std::string part;
    while (std::getline(in, part, ',')) {
        char* end = nullptr;
        long n = std::strtol(part.c_str(), &end, 10);
        if (end == part.c_str() || *end != '\0' || n < 1) usage("bad size list");
        sizes.push_back(n);
    }
    if (sizes.empty()) usage("empty size list");
    return sizes;
}

long parsePositive(const char* text) {
    char* end = nullptr;
    long n = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || n < 1) usage("expected a positive number");
    return n;
}

// MARK: measurement helpers

double nowSeconds() {
    using Clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

// Reads one "kB" line of /proc/self/status (VmRSS: resident now; VmHWM: the
// resident high-water mark), in bytes.
long statusBytes(const char* key) {
    std::ifstream status("/proc/self/status");
    std::string line;
    const std::string prefix = std::string(key) + ":";
    while (std::getline(status, line)) {
        if (line.compare(0, prefix.size(), prefix) == 0) {
            return std::atol(line.c_str() + prefix.size()) * 1024;
        }
    }
    std::fprintf(stderr, "peers: no %s in /proc/self/status\n", key);
    std::exit(1);
}

struct Summary {
    double median, min, max;
};

Summary summarize(std::vector<double> samples) {
    std::sort(samples.begin(), samples.end());
    size_t m = samples.size();
    double median = m % 2 == 1 ? samples[m / 2] : (samples[m / 2 - 1] + samples[m / 2]) / 2;
    return {median, samples.front(), samples.back()};
}

// Runs one measurement once to warm caches, stacks and lazy initialisation,
// then reps times, and summarises.
Summary measure(int reps, const std::function<double()>& once, const std::function<double()>& warmUp) {
    warmUp();
    std::vector<double> samples;
    for (int r = 0; r < reps; ++r) samples.push_back(once());
    return summarize(samples);
}

// MARK: output

// Builds one JSON object with its keys in insertion order.
class JsonLine {
public:
    JsonLine& text(const char* key, const std::string& value) {
        std::string escaped;
        for (char c : value) {
            if (c == '"' || c == '\\') escaped += '\\';
            if (static_cast<unsigned char>(c) < 0x20) c = ' ';
            escaped += c;
        }
        return raw(key, "\"" + escaped + "\"");
    }
    JsonLine& integer(const char* key, long value) { return raw(key, std::to_string(value)); }
    // Rounded to the given decimals: the last digits of a timing are noise.
    JsonLine& number(const char* key, double value, int decimals) {
        char buffer[64];
        std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
        return raw(key, buffer);
    }
    JsonLine& summary(const std::string& metric, const Summary& s, int decimals) {
        number(metric.c_str(), s.median, decimals);
        number((metric + "_min").c_str(), s.min, decimals);
        return number((metric + "_max").c_str(), s.max, decimals);
    }
    void print() {
        std::printf("{%s}\n", body_.c_str());
        std::fflush(stdout);
    }

private:
    JsonLine& raw(const std::string& key, const std::string& value) {
        if (!body_.empty()) body_ += ',';
        body_ += "\"" + key + "\":" + value;
        return *this;
    }
    std::string body_;
};

// MARK: spawn, parent side

// The result of one spawn round, as a child process reports it.
struct SpawnSample {
    bool ok = false;
    double seconds = 0;
    long peakBytes = 0;
    std::string error;
};

// Prints a spawn result the way the parent parses it back.
void reportSpawnSample(const SpawnSample& sample) {
    if (sample.ok) {
        std::printf("ok %.9f %ld\n", sample.seconds, sample.peakBytes);
    } else {
        std::printf("error %s\n", sample.error.c_str());
    }
}

// Runs one spawn round in a fresh copy of this binary and reads back its
// one-line report. posix_spawn, not popen: no shell to quote the path for.
SpawnSample spawnInChild(const std::string& peer, long n) {
    SpawnSample sample;
    int fds[2];
    // Close-on-exec, so the child keeps only the end dup'ed onto its stdout.
    if (pipe2(fds, O_CLOEXEC) != 0) {
        sample.error = std::string("pipe: ") + std::strerror(errno);
        return sample;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::string size = std::to_string(n);
    std::string argv0 = "peers", flag = "-spawn-once";
    char* args[] = {&argv0[0], &flag[0], const_cast<char*>(peer.c_str()), &size[0], nullptr};
    pid_t pid = 0;
    // The child is a clone of this process until it execs, so /proc/self/exe
    // still names this binary there.
    int failure = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, args, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (failure != 0) {
        close(fds[0]);
        sample.error = std::string("posix_spawn: ") + std::strerror(failure);
        return sample;
    }
    FILE* child = fdopen(fds[0], "r");
    char line[512] = "";
    bool got = child != nullptr && std::fgets(line, sizeof line, child) != nullptr;
    if (child != nullptr) std::fclose(child);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got && std::sscanf(line, "ok %lf %ld", &sample.seconds, &sample.peakBytes) == 2) {
        sample.ok = true;
    } else if (got && std::strncmp(line, "error ", 6) == 0) {
        line[std::strcspn(line, "\n")] = '\0';
        sample.error = line + 6;
    } else if (WIFSIGNALED(status)) {
        sample.error = "child process killed by signal " + std::to_string(WTERMSIG(status)) +
                       (WTERMSIG(status) == SIGKILL ? " (the OOM killer?)" : "");
    } else {
        sample.error = "child process exited with status " + std::to_string(WEXITSTATUS(status)) + " and no result";
    }
    return sample;
}

void runSpawn(const std::string& peer, const std::vector<long>& sizes, int reps, const char* extraKey,
              long extraValue) {
    for (long n : sizes) {
        std::vector<double> seconds, perThread;
        std::string error;
        for (int r = 0; r < reps && error.empty(); ++r) {
            SpawnSample sample = spawnInChild(peer, n);
            if (!sample.ok) {
                error = sample.error;
                break;
            }
            seconds.push_back(sample.seconds);
            perThread.push_back(static_cast<double>(sample.peakBytes) / n);
        }
        JsonLine line;
        line.text("peer", peer).text("workload", "spawn").integer("n", n);
        if (!error.empty()) {
            line.text("error", error).print();
            continue;
        }
        line.summary("seconds", summarize(seconds), 6).summary("rss_per_thread_bytes", summarize(perThread), 0);
        line.integer("reps", reps).integer(extraKey, extraValue).print();
    }
}

// MARK: pthread

long defaultPthreadStackBytes() {
    pthread_attr_t attr;
    size_t size = 0;
    pthread_attr_init(&attr);
    pthread_attr_getstacksize(&attr, &size);
    pthread_attr_destroy(&attr);
    return static_cast<long>(size);
}

// Every spawned thread checks in, then sleeps until the gate opens.
struct PthreadGate {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t allParked = PTHREAD_COND_INITIALIZER;
    pthread_cond_t opened = PTHREAD_COND_INITIALIZER;
    long parked = 0;  // guarded by mutex
    long expected = 0;
    bool open = false;  // guarded by mutex
};

void* parkOnPthreadGate(void* argument) {
    auto* gate = static_cast<PthreadGate*>(argument);
    pthread_mutex_lock(&gate->mutex);
    if (++gate->parked == gate->expected) pthread_cond_signal(&gate->allParked);
    while (!gate->open) pthread_cond_wait(&gate->opened, &gate->mutex);
    pthread_mutex_unlock(&gate->mutex);
    return nullptr;
}

SpawnSample pthreadSpawnRound(long n) {
    SpawnSample sample;
    PthreadGate gate;
    gate.expected = n;
    // Touched before the baseline: the bookkeeping is not the thread's cost.
    std::vector<pthread_t> threads(n);
    long baseline = statusBytes("VmRSS");

    double begin = nowSeconds();
    long created = 0;
    int failure = 0;
    for (; created < n; ++created) {
        failure = pthread_create(&threads[created], nullptr, parkOnPthreadGate, &gate);
        if (failure != 0) break;
    }
    pthread_mutex_lock(&gate.mutex);
    if (failure != 0) gate.expected = created;  // wait only for those that exist
    while (gate.parked < gate.expected) pthread_cond_wait(&gate.allParked, &gate.mutex);
    pthread_mutex_unlock(&gate.mutex);
    double parkedAt = nowSeconds();
    long peak = statusBytes("VmHWM");
    double releasedAt = nowSeconds();

    pthread_mutex_lock(&gate.mutex);
    gate.open = true;
    pthread_cond_broadcast(&gate.opened);
    pthread_mutex_unlock(&gate.mutex);
    for (long i = 0; i < created; ++i) pthread_join(threads[i], nullptr);
    double end = nowSeconds();

    if (failure != 0) {
        sample.error = "pthread_create failed after " + std::to_string(created) + " threads: " + std::strerror(failure);
        return sample;
    }
    sample.ok = true;
    sample.seconds = (end - begin) - (releasedAt - parkedAt);
    sample.peakBytes = peak - baseline;
    return sample;
}

// The CPUs this process may use, in order.
std::vector<int> allowedCpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
        }
    }
    return cpus;
}

void pinCurrentThread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Two threads hand a turn back and forth under one mutex, each waking the
// other through its own condition variable: every handoff is one OS-level
// switch (same core) or one cross-core wake-up.
struct CondvarPingPong {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t wake[2] = {PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};
    int turn = 0;  // guarded by mutex
    long roundTrips = 0;
};

double condvarPingPongSeconds(long roundTrips, int cpuA, int cpuB) {
    CondvarPingPong game;
    game.roundTrips = roundTrips;
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    auto side = [&](int me, int cpu) {
        pinCurrentThread(cpu);
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        pthread_mutex_lock(&game.mutex);
        for (long i = 0; i < game.roundTrips; ++i) {
            while (game.turn != me) pthread_cond_wait(&game.wake[me], &game.mutex);
            game.turn = 1 - me;
            pthread_cond_signal(&game.wake[1 - me]);
        }
        pthread_mutex_unlock(&game.mutex);
    };
    std::thread a(side, 0, cpuA), b(side, 1, cpuB);
    while (ready.load() < 2) std::this_thread::yield();
    double begin = nowSeconds();
    go.store(true);
    a.join();
    b.join();
    return nowSeconds() - begin;
}

// Two threads each do opsEach lock, increment, unlock on one lock, released
// together; returns the wall time for all of it. Lock and Unlock are the
// primitive under test, so the same harness serves pthread and Boost.Fiber.
template <typename Lock, typename Unlock>
double contendedSeconds(long opsEach, Lock lock, Unlock unlock, const std::function<void()>& threadSetUp) {
    long counter = 0;
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    auto hammer = [&] {
        threadSetUp();
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        for (long i = 0; i < opsEach; ++i) {
            lock();
            ++counter;
            unlock();
        }
    };
    std::thread a(hammer), b(hammer);
    while (ready.load() < 2) std::this_thread::yield();
    double begin = nowSeconds();
    go.store(true);
    a.join();
    b.join();
    double elapsed = nowSeconds() - begin;
    if (counter != 2 * opsEach) {
        std::fprintf(stderr, "peers: mutex lost updates: %ld of %ld\n", counter, 2 * opsEach);
        std::exit(1);
    }
    return elapsed;
}

void runPthread(const Options& o) {
    const char* peer = "pthread";
    if (o.workload == "all" || o.workload == "spawn") {
        runSpawn(peer, o.pthreadSizes, o.reps, "stack_bytes", defaultPthreadStackBytes());
    }
    if (o.workload == "all" || o.workload == "switch") {
        // A kernel switch costs microseconds, not nanoseconds: a twentieth
        // of the round trips keeps the run to seconds.
        long roundTrips = std::max(1L, o.switchIters / 20);
        std::vector<int> cpus = allowedCpus();
        if (cpus.empty()) cpus.push_back(0);
        struct Placement {
            const char* variant;
            int cpuA, cpuB;
        };
        std::vector<Placement> placements{{"condvar-one-core", cpus[0], cpus[0]}};
        if (cpus.size() >= 2) {
            placements.push_back({"condvar-two-cores", cpus[0], cpus[1]});
        } else {
            std::fprintf(stderr, "peers: one CPU only: skipping pthread condvar-two-cores\n");
        }
        for (const Placement& p : placements) {
            Summary s = measure(
                o.reps, [&] { return condvarPingPongSeconds(roundTrips, p.cpuA, p.cpuB) * 1e9 / (2.0 * roundTrips); },
                [&] { return condvarPingPongSeconds(std::max(1L, roundTrips / 10), p.cpuA, p.cpuB); });
            JsonLine()
                .text("peer", peer)
                .text("workload", "switch")
                .text("variant", p.variant)
                .integer("iters", roundTrips)
                .summary("ns_per_switch", s, 2)
                .integer("reps", o.reps)
                .print();
        }
    }
    if (o.workload == "all" || o.workload == "mutex") {
        static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
        auto uncontended = [&](long ops) {
            double begin = nowSeconds();
            for (long i = 0; i < ops; ++i) {
                pthread_mutex_lock(&mutex);
                pthread_mutex_unlock(&mutex);
            }
            return (nowSeconds() - begin) * 1e9 / ops;
        };
        Summary s = measure(o.reps, [&] { return uncontended(o.mutexIters); }, [&] { return uncontended(o.mutexIters / 10); });
        JsonLine()
            .text("peer", peer)
            .text("workload", "mutex")
            .text("variant", "uncontended")
            .integer("iters", o.mutexIters)
            .summary("ns_per_op", s, 2)
            .integer("reps", o.reps)
            .integer("threads", 1)
            .print();

        long opsEach = o.mutexIters / 5;
        auto contended = [&](long ops) {
            return contendedSeconds(
                ops, [] { pthread_mutex_lock(&mutex); }, [] { pthread_mutex_unlock(&mutex); }, [] {});
        };
        s = measure(o.reps, [&] { return contended(opsEach) * 1e9 / (2.0 * opsEach); }, [&] { return contended(opsEach / 10); });
        JsonLine()
            .text("peer", peer)
            .text("workload", "mutex")
            .text("variant", "contended")
            .integer("iters", 2 * opsEach)
            .summary("ns_per_op", s, 2)
            .integer("reps", o.reps)
            .integer("threads", 2)
            .print();
    }
}

#if PEERS_WITH_BOOST

// MARK: boost-context

namespace ctx = boost::context;

// Resumes a fiber that resumes straight back, roundTrips times: each resume
// is one raw jump_fcontext plus the fiber bookkeeping around it.
double contextPingPongSeconds(long roundTrips) {
    bool stop = false;
    ctx::fiber echo{[&stop](ctx::fiber&& caller) {
        while (!stop) caller = std::move(caller).resume();
        return std::move(caller);
    }};
    echo = std::move(echo).resume();  // enter it once, outside the timing
    double begin = nowSeconds();
    for (long i = 0; i < roundTrips; ++i) echo = std::move(echo).resume();
    double elapsed = nowSeconds() - begin;
    stop = true;
    echo = std::move(echo).resume();  // let it return, so its stack is freed
    return elapsed;
}

void runBoostContext(const Options& o) {
    if (o.workload != "all" && o.workload != "switch") return;  // switch is its only workload
    Summary s = measure(
        o.reps, [&] { return contextPingPongSeconds(o.switchIters) * 1e9 / (2.0 * o.switchIters); },
        [&] { return contextPingPongSeconds(o.switchIters / 10); });
    JsonLine()
        .text("peer", "boost-context")
        .text("workload", "switch")
        .text("variant", "fiber-resume")
        .integer("iters", o.switchIters)
        .summary("ns_per_switch", s, 2)
        .integer("reps", o.reps)
        .print();
}

// MARK: boost-fiber

namespace bf = boost::fibers;

SpawnSample fiberSpawnRound(long n) {
    SpawnSample sample;
    bf::mutex mutex;
    bf::condition_variable allParked, opened;
    long parked = 0;    // guarded by mutex
    bool open = false;  // guarded by mutex
    // Touched before the baseline: the bookkeeping is not the fiber's cost.
    std::vector<bf::fiber> fibers(n);
    long baseline = statusBytes("VmRSS");

    double begin = nowSeconds();
    try {
        // The default launch policy only queues a fiber; they all first run
        // when this (main) fiber blocks below, in round-robin order.
        for (long i = 0; i < n; ++i) {
            fibers[i] = bf::fiber([&] {
                std::unique_lock<bf::mutex> lock(mutex);
                if (++parked == n) allParked.notify_one();
                opened.wait(lock, [&] { return open; });
            });
        }
    } catch (const std::exception& e) {
        // Cannot unwind the fibers already made without running them: give up.
        std::printf("error fiber creation failed: %s\n", e.what());
        std::fflush(stdout);
        std::_Exit(1);
    }
    {
        std::unique_lock<bf::mutex> lock(mutex);
        allParked.wait(lock, [&] { return parked == n; });
    }
    double parkedAt = nowSeconds();
    long peak = statusBytes("VmHWM");
    double releasedAt = nowSeconds();
    {
        std::unique_lock<bf::mutex> lock(mutex);
        open = true;
    }
    opened.notify_all();
    for (bf::fiber& f : fibers) f.join();
    double end = nowSeconds();

    sample.ok = true;
    sample.seconds = (end - begin) - (releasedAt - parkedAt);
    sample.peakBytes = peak - baseline;
    return sample;
}

// Two fibers on this thread yield to each other until each has yielded
// roundTrips times; main waits in join, so the ready queue holds only them.
double fiberYieldSeconds(long roundTrips) {
    auto body = [roundTrips] {
        for (long i = 0; i < roundTrips; ++i) boost::this_fiber::yield();
    };
    bf::fiber a(body), b(body);
    double begin = nowSeconds();
    a.join();
    b.join();
    return nowSeconds() - begin;
}

// Main bounces a value off an echo fiber over two unbuffered channels.
double fiberChannelSeconds(long roundTrips) {
    bf::unbuffered_channel<long> ping, pong;
    bf::fiber echo([&] {
        long value;
        while (ping.pop(value) == bf::channel_op_status::success) pong.push(value);
    });
    double begin = nowSeconds();
    long value = 0;
    for (long i = 0; i < roundTrips; ++i) {
        ping.push(i);
        pong.pop(value);
    }
    double elapsed = nowSeconds() - begin;
    ping.close();
    echo.join();
    return elapsed;
}

void runBoostFiber(const Options& o) {
    const char* peer = "boost-fiber";
    if (o.workload == "all" || o.workload == "spawn") {
        runSpawn(peer, o.sizes, o.reps, "stack_bytes", static_cast<long>(ctx::stack_traits::default_size()));
    }
    if (o.workload == "all" || o.workload == "switch") {
        struct Variant {
            const char* name;
            double (*run)(long);
        };
        for (Variant v : {Variant{"yield", fiberYieldSeconds}, Variant{"channel-unbuffered", fiberChannelSeconds}}) {
            // Both count one-way switches: a yield is one, a round trip two.
            Summary s = measure(
                o.reps, [&] { return v.run(o.switchIters) * 1e9 / (2.0 * o.switchIters); },
                [&] { return v.run(o.switchIters / 10); });
            JsonLine()
                .text("peer", peer)
                .text("workload", "switch")
                .text("variant", v.name)
                .integer("iters", o.switchIters)
                .summary("ns_per_switch", s, 2)
                .integer("reps", o.reps)
                .print();
        }
    }
    if (o.workload == "all" || o.workload == "mutex") {
        bf::mutex mutex;
        auto uncontended = [&](long ops) {
            double begin = nowSeconds();
            for (long i = 0; i < ops; ++i) {
                mutex.lock();
                mutex.unlock();
            }
            return (nowSeconds() - begin) * 1e9 / ops;
        };
        Summary s = measure(o.reps, [&] { return uncontended(o.mutexIters); }, [&] { return uncontended(o.mutexIters / 10); });
        JsonLine()
            .text("peer", peer)
            .text("workload", "mutex")
            .text("variant", "uncontended")
            .integer("iters", o.mutexIters)
            .summary("ns_per_op", s, 2)
            .integer("reps", o.reps)
            .integer("threads", 1)
            .print();

        // Two OS threads, one fiber each: a loser suspends its fiber and its
        // thread's scheduler sleeps until the holder's unlock wakes it.
        long opsEach = o.mutexIters / 5;
        auto contended = [&](long ops) {
            return contendedSeconds(
                ops, [&] { mutex.lock(); }, [&] { mutex.unlock(); },
                // Creates this thread's fiber scheduler before the clock runs.
                [] { (void)boost::this_fiber::get_id(); });
        };
        s = measure(o.reps, [&] { return contended(opsEach) * 1e9 / (2.0 * opsEach); }, [&] { return contended(opsEach / 10); });
        JsonLine()
            .text("peer", peer)
            .text("workload", "mutex")
            .text("variant", "contended")
            .integer("iters", 2 * opsEach)
            .summary("ns_per_op", s, 2)
            .integer("reps", o.reps)
            .integer("threads", 2)
            .print();
    }
}

#endif  // PEERS_WITH_BOOST

int spawnOnce(const std::string& peer, long n) {
    if (peer == "pthread") {
        reportSpawnSample(pthreadSpawnRound(n));
        return 0;
    }
#if PEERS_WITH_BOOST
    if (peer == "boost-fiber") {
        reportSpawnSample(fiberSpawnRound(n));
        return 0;
    }
#endif
    std::printf("error no spawn workload for peer %s\n", peer.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    bool quick = false;
    bool sizesGiven = false, switchGiven = false, mutexGiven = false;
    for (int i = 1; i < argc; ++i) {
        std::string flag = argv[i];
        if (flag.rfind("--", 0) == 0) flag.erase(0, 1);  // accept -flag and --flag alike
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
            return argv[++i];
        };
        if (flag == "-quick") {
            quick = true;
        } else if (flag == "-peer") {
            o.peer = value();
        } else if (flag == "-workload") {
            o.workload = value();
        } else if (flag == "-n") {
            o.sizes = parseSizes(value());
            sizesGiven = true;
        } else if (flag == "-pthread-n") {
            o.pthreadSizes = parseSizes(value());
        } else if (flag == "-reps") {
            o.reps = static_cast<int>(parsePositive(value()));
        } else if (flag == "-switch-iters") {
            o.switchIters = parsePositive(value());
            switchGiven = true;
        } else if (flag == "-mutex-iters") {
            o.mutexIters = parsePositive(value());
            mutexGiven = true;
        } else if (flag == "-spawn-once") {
            std::string peer = value();
            return spawnOnce(peer, parsePositive(value()));
        } else if (flag == "-h" || flag == "-help") {
            usage(nullptr);
        } else {
            usage(("unknown flag " + std::string(argv[i])).c_str());
        }
    }
    // Only defaults shrink: a flag given explicitly wins over -quick.
    if (quick) {
        if (!sizesGiven) o.sizes = {10000};
        if (!switchGiven) o.switchIters /= 10;
        if (!mutexGiven) o.mutexIters /= 10;
    }
    if (o.mutexIters < 50 || o.switchIters < 10) usage("too few iterations to measure");
    const std::vector<std::string> workloads{"all", "spawn", "switch", "mutex"};
    if (std::find(workloads.begin(), workloads.end(), o.workload) == workloads.end()) usage("unknown workload");
    const std::vector<std::string> peers{"all", "boost-context", "boost-fiber", "pthread"};
    if (std::find(peers.begin(), peers.end(), o.peer) == peers.end()) usage("unknown peer");

    bool wantContext = o.peer == "all" || o.peer == "boost-context";
    bool wantFiber = o.peer == "all" || o.peer == "boost-fiber";
#if PEERS_WITH_BOOST
    if (wantContext) runBoostContext(o);
    if (wantFiber) runBoostFiber(o);
#else
    if (wantContext || wantFiber) {
        std::fprintf(stderr, "peers: built without Boost headers: skipping boost-context and boost-fiber\n");
    }
#endif
    if (o.peer == "all" || o.peer == "pthread") runPthread(o);
    return 0;
}
