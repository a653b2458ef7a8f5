// The Go net/http peer of the I/O benchmark (Tools/peers/http-bench.sh):
// the same routes as Tools/examples/gt-http, keep-alive by default.
//
//	GET /quick  "ok" at once
//	GET /heavy  burns ~10 ms of CPU (calibrated at start), then "ok"
//
// Go has no goroutine priorities: heavy handlers share the CPU with quick
// ones by the scheduler's time slices (10 ms, asynchronous preemption).
package main

import (
	"flag"
	"fmt"
	"net/http"
	"runtime"
	"syscall"
	"time"
)

// threadCPU is this OS thread's CPU time (RUSAGE_THREAD), as gt-http
// measures its calibration with CLOCK_THREAD_CPUTIME_ID.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var sink uint64

//go:noinline
func burn(iterations int) uint64 {
	x := uint64(88172645463325252)
	for i := 0; i < iterations; i++ { // xorshift, as in gt-http
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// calibrate returns the iterations that take 10 ms of CPU here.
func calibrate() int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for n := 100000; ; n *= 2 {
		t0 := threadCPU()
		sink += burn(n)
		if d := threadCPU() - t0; d > 20*time.Millisecond {
			return int(float64(n) * float64(10*time.Millisecond) / float64(d))
		}
	}
}

func main() {
	port := flag.Int("port", 8082, "port on 127.0.0.1")
	flag.Parse()
	heavy := calibrate()
	ok := []byte("ok")
	mux := http.NewServeMux()
	mux.HandleFunc("/quick", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(ok)
	})
	mux.HandleFunc("/heavy", func(w http.ResponseWriter, r *http.Request) {
		sink += burn(heavy)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(ok)
	})
	fmt.Printf("go-http listening on 127.0.0.1:%d, GOMAXPROCS=%d, heavy=%d iterations\n",
		*port, runtime.GOMAXPROCS(0), heavy)
	if err := http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *port), mux); err != nil {
		fmt.Println("go-http:", err)
	}
}
