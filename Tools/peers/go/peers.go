// Command peers measures Go goroutines on the workloads that gt-bench
// measures for GreenThreads, so that both can be set side by side in one run
// (see ../README.md for the shared definitions).
//
// Each workload prints one JSON object per line on stdout: the median of
// -reps repetitions under the metric's own name, with "_min" and "_max"
// beside it. Diagnostics go to stderr, so stdout stays machine-readable.
//
//	spawn   start N goroutines that all park on a gate, release, join all;
//	        seconds, and peak RSS growth per goroutine.
//	switch  unbuffered channel ping-pong between two goroutines with
//	        GOMAXPROCS=1; nanoseconds per one-way switch (half a round trip).
//	mutex   sync.Mutex lock+unlock: uncontended, and two goroutines
//	        hammering one lock; nanoseconds per lock+unlock.
//
// Every spawn repetition runs in a fresh child process (this same binary with
// -spawn-once): the runtime keeps goroutine descriptors and stacks for reuse,
// so a second round in the same process would start warm and grow RSS by
// almost nothing.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const peerName = "go"

type options struct {
	workload    string
	sizes       []int
	reps        int
	switchIters int
	mutexIters  int
}

func main() {
	workload := flag.String("workload", "all", "spawn, switch, mutex or all")
	sizesFlag := flag.String("n", "10000,100000,1000000", "spawn sizes, comma-separated")
	reps := flag.Int("reps", 3, "repetitions per figure (median, min and max are reported)")
	switchIters := flag.Int("switch-iters", 1_000_000, "round trips per switch repetition")
	mutexIters := flag.Int("mutex-iters", 10_000_000, "lock+unlock pairs per uncontended repetition (each contended goroutine does a fifth)")
	quick := flag.Bool("quick", false, "small sizes for a smoke run: spawn 10000 only, a tenth of the iterations")
	spawnOnce := flag.Int("spawn-once", 0, "internal: run one spawn round of this size and print its raw result")
	flag.Parse()

	if *spawnOnce > 0 {
		seconds, peakBytes := spawnRound(*spawnOnce)
		fmt.Printf("%.9f %d\n", seconds, peakBytes)
		return
	}

	if *quick {
		// Only defaults shrink: a flag given explicitly wins over -quick.
		explicit := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
		if !explicit["n"] {
			*sizesFlag = "10000"
		}
		if !explicit["switch-iters"] {
			*switchIters /= 10
		}
		if !explicit["mutex-iters"] {
			*mutexIters /= 10
		}
	}

	sizes, err := parseSizes(*sizesFlag)
	if err != nil || *reps < 1 || *switchIters < 1 || *mutexIters < 5 {
		fmt.Fprintln(os.Stderr, "peers: bad arguments:", err)
		os.Exit(2)
	}
	opts := options{*workload, sizes, *reps, *switchIters, *mutexIters}

	ran := false
	if opts.workload == "all" || opts.workload == "spawn" {
		runSpawn(opts)
		ran = true
	}
	if opts.workload == "all" || opts.workload == "switch" {
		runSwitch(opts)
		ran = true
	}
	if opts.workload == "all" || opts.workload == "mutex" {
		runMutex(opts)
		ran = true
	}
	if !ran {
		fmt.Fprintf(os.Stderr, "peers: unknown workload %q (spawn, switch, mutex or all)\n", opts.workload)
		os.Exit(2)
	}
}

// MARK: spawn

func runSpawn(opts options) {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers: cannot find own executable:", err)
		os.Exit(1)
	}
	for _, n := range opts.sizes {
		var seconds, perThread []float64
		var failure string
		for r := 0; r < opts.reps; r++ {
			child := exec.Command(self, "-spawn-once", strconv.Itoa(n))
			child.Stderr = os.Stderr // a runtime crash (out of memory) explains itself
			out, err := child.Output()
			var s float64
			var peak int64
			if err == nil {
				_, err = fmt.Sscan(string(out), &s, &peak)
			}
			if err != nil {
				failure = fmt.Sprintf("child process for n=%d: %v", n, err)
				break
			}
			seconds = append(seconds, s)
			perThread = append(perThread, float64(peak)/float64(n))
		}
		if failure != "" {
			emit(kv("peer", peerName), kv("workload", "spawn"), kv("n", n), kv("error", failure))
			continue
		}
		fields := []field{kv("peer", peerName), kv("workload", "spawn"), kv("n", n)}
		fields = append(fields, summary("seconds", seconds, 6)...)
		fields = append(fields, summary("rss_per_thread_bytes", perThread, 0)...)
		fields = append(fields, kv("reps", opts.reps), kv("gomaxprocs", runtime.GOMAXPROCS(0)))
		emit(fields...)
	}
}

// spawnRound starts n goroutines, waits until all of them exist at once,
// samples the memory high-water mark, then releases and joins them all.
// The /proc read is excluded from the time.
func spawnRound(n int) (seconds float64, peakBytes int64) {
	baseline := statusBytes("VmRSS")
	var started, finished sync.WaitGroup
	started.Add(n)
	finished.Add(n)
	gate := make(chan struct{})

	begin := time.Now()
	for i := 0; i < n; i++ {
		// A named function with arguments, not a closure: the arguments are
		// copied onto the new stack, so no per-goroutine heap object is made
		// that a green-thread runtime would not make either.
		go parkOnGate(&started, &finished, gate)
	}
	started.Wait()
	parkedAt := time.Now()
	peak := statusBytes("VmHWM")
	releasedAt := time.Now()
	close(gate)
	finished.Wait()
	elapsed := time.Since(begin) - releasedAt.Sub(parkedAt)
	return elapsed.Seconds(), peak - baseline
}

func parkOnGate(started, finished *sync.WaitGroup, gate chan struct{}) {
	started.Done()
	<-gate
	finished.Done()
}

// statusBytes reads one "kB" line of /proc/self/status (VmRSS: resident now;
// VmHWM: the resident high-water mark) and returns it in bytes.
func statusBytes(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, key+":") {
			fields := strings.Fields(line[len(key)+1:])
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	fmt.Fprintf(os.Stderr, "peers: no %s in /proc/self/status\n", key)
	os.Exit(1)
	return 0
}

// MARK: switch

func runSwitch(opts options) {
	// One P, so every channel operation that blocks is a goroutine switch on
	// the same OS thread, never a cross-core wake-up.
	previous := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(previous)

	channelPingPong(opts.switchIters / 10) // warm-up: stacks grown, code paged in
	samples := make([]float64, opts.reps)
	for r := range samples {
		elapsed := channelPingPong(opts.switchIters)
		// A round trip is two one-way switches.
		samples[r] = float64(elapsed.Nanoseconds()) / float64(2*opts.switchIters)
	}
	fields := []field{kv("peer", peerName), kv("workload", "switch"), kv("variant", "chan-unbuffered"), kv("iters", opts.switchIters)}
	fields = append(fields, summary("ns_per_switch", samples, 2)...)
	fields = append(fields, kv("reps", opts.reps), kv("gomaxprocs", 1))
	emit(fields...)
}

// channelPingPong bounces a value between this goroutine and an echo
// goroutine over two unbuffered channels, roundTrips times.
func channelPingPong(roundTrips int) time.Duration {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	begin := time.Now()
	for i := 0; i < roundTrips; i++ {
		ping <- i
		<-pong
	}
	elapsed := time.Since(begin)
	close(ping)
	return elapsed
}

// MARK: mutex

// Package level, so the compiler cannot prove the lock private to one loop.
var uncontendedMutex sync.Mutex

func runMutex(opts options) {
	uncontended := func() float64 {
		begin := time.Now()
		for i := 0; i < opts.mutexIters; i++ {
			uncontendedMutex.Lock()
			uncontendedMutex.Unlock()
		}
		return float64(time.Since(begin).Nanoseconds()) / float64(opts.mutexIters)
	}
	uncontended() // warm-up
	samples := make([]float64, opts.reps)
	for r := range samples {
		samples[r] = uncontended()
	}
	fields := []field{kv("peer", peerName), kv("workload", "mutex"), kv("variant", "uncontended"), kv("iters", opts.mutexIters)}
	fields = append(fields, summary("ns_per_op", samples, 2)...)
	fields = append(fields, kv("reps", opts.reps), kv("threads", 1))
	emit(fields...)

	// Contended: a fifth of the pairs per goroutine keeps the run as long as
	// the uncontended one while contention makes each pair slower.
	perGoroutine := opts.mutexIters / 5
	contendedMutex(perGoroutine / 10) // warm-up
	for r := range samples {
		samples[r] = float64(contendedMutex(perGoroutine).Nanoseconds()) / float64(2*perGoroutine)
	}
	fields = []field{kv("peer", peerName), kv("workload", "mutex"), kv("variant", "contended"), kv("iters", 2*perGoroutine)}
	fields = append(fields, summary("ns_per_op", samples, 2)...)
	fields = append(fields, kv("reps", opts.reps), kv("threads", 2), kv("gomaxprocs", runtime.GOMAXPROCS(0)))
	emit(fields...)
}

// contendedMutex has two goroutines each do opsEach lock, increment, unlock
// on one mutex, released together; it returns the wall time for all of it.
func contendedMutex(opsEach int) time.Duration {
	var mu sync.Mutex
	counter := 0
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(2)
	done.Add(2)
	for g := 0; g < 2; g++ {
		go func() {
			ready.Done()
			<-start
			for i := 0; i < opsEach; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			done.Done()
		}()
	}
	ready.Wait()
	begin := time.Now()
	close(start)
	done.Wait()
	elapsed := time.Since(begin)
	if counter != 2*opsEach {
		fmt.Fprintf(os.Stderr, "peers: mutex lost updates: %d of %d\n", counter, 2*opsEach)
		os.Exit(1)
	}
	return elapsed
}

// MARK: output

type field struct {
	key   string
	value interface{}
}

func kv(key string, value interface{}) field { return field{key, value} }

// summary gives the median under the metric's name and the extremes beside
// it, rounded to the given number of decimals (the last digits are noise).
func summary(metric string, samples []float64, decimals int) []field {
	sorted := append([]float64(nil), samples...)
	sort.Float64s(sorted)
	var median float64
	if m := len(sorted); m%2 == 1 {
		median = sorted[m/2]
	} else {
		median = (sorted[m/2-1] + sorted[m/2]) / 2
	}
	round := func(x float64) json.Number {
		scale := math.Pow(10, float64(decimals))
		return json.Number(strconv.FormatFloat(math.Round(x*scale)/scale, 'f', -1, 64))
	}
	return []field{
		kv(metric, round(median)),
		kv(metric+"_min", round(sorted[0])),
		kv(metric+"_max", round(sorted[len(sorted)-1])),
	}
}

// emit prints one JSON object with the keys in the order given, which
// encoding/json's maps would not keep.
func emit(fields ...field) {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(f.key)
		value, err := json.Marshal(f.value)
		if err != nil {
			value, _ = json.Marshal(fmt.Sprint(f.value))
		}
		b.Write(key)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	fmt.Println(b.String())
}

func parseSizes(list string) ([]int, error) {
	var sizes []int
	for _, part := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad spawn size %q", part)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}
