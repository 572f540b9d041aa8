//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/bench"
)

func init() {
	register(&command{
		name:    "bench",
		args:    "[-quick] [-trips N] [-locks-only] [-queue-only] [-log-only] [-queue-scale N] [-scale [-scale-procs N] [-scale-time D]]",
		summary: "measure locks, events, queues, logs and cells against sync, pipes, sockets, futex, spin and copy baselines",
		help: `
Measures, in this process and in worker processes of this program:

  - uncontended lock+unlock, read lock, TryLock and event Set (ns per
    operation), against sync.Mutex, sync.RWMutex and one atomic
    compare-and-swap;
  - round trips between two processes (ping-pong) through every event kind
    and a mutex handed back and forth, against a pipe pair, a Unix socket
    pair, a raw eventfd ping-pong (blocking reads), a raw futex wait/wake
    ping-pong (the kernel's floor) and a raw spin on a shared word (the
    hardware's floor): median, mean (what a user pays, stalls included)
    and 99th percentile of each round trip, and the ratio of the medians
    (and of the means, to the raw spin) to each baseline;
  - the same round trips with both processes pinned to CPU 0, where
    spinning cannot help (nobody spins there);
  - 2 and 4 processes contending for one Mutex (ns per protected increment,
    and how often the lock went to another process) against the same
    processes under a raw futex compare-and-swap mutex and goroutines
    under a sync.Mutex;
  - the CPU time a waiter uses while idle in a Wait for a second;
  - the targets of the locks and events, each with its ratios and whether
    it held in this run: RWMutex Lock+Unlock at most 1.1x sync.RWMutex;
    busy events' round trips at most 1.15x the raw spin, kernel events'
    and the mutex hand-off's at most 1.3x; the EventFD's at most 1.2x the
    raw eventfd; a contended Mutex at most 1.0x the raw futex mutex;
  - the Queue: one-way latency of a 64-byte message (half a round trip
    through two queues, with the default spin and with SetSpin(0)) against
    the raw spin and raw futex round trips; the throughput of 64-byte
    messages from one process to another against a minimal ring of 64-byte
    slots (the hardware's floor); request/response round trips of 64 B to
    1 MiB against a Unix socket pair; the bandwidth of 1 MiB messages (Send,
    then Copy in the other process) against copy(); Claim+Commit+Receive+
    Release in one goroutine; and 4 producer processes against 1;
  - the Log and the Cell, each figure with its target: one-way latency of a
    64-byte message (half a round trip through two logs, each process
    appending to one and reading the other with Copy; with the default spin
    against half the raw spin round trip, target 1.3x at most, and with
    SetSpin(0) against the raw futex, 1.2x at most); the rate of Appends of
    64-byte messages with 8 reader processes (each copying every message
    out as fast as it can) against 1 (0.9x at least), and with 1 against
    the Queue's Send rate to 1 consumer (0.8x at least); a Cell's Store and
    Load of a 64-byte value against copy() of 64 bytes into and out of a
    segment (2x at most).

With -scale, only the scale section, which is long (four scenarios of
-scale-time each, 10s by default, plus a baseline as long): -scale-procs
processes (64 by default) on one lock or event, each figure with its target:

  - a Mutex that every process locks in a loop, incrementing a shared
    counter: total acquisitions per second against 2 processes (measured
    in the same run, half before and half after; 0.5x at least), the
    fewest acquisitions of any process against the mean (0.25x at least),
    and the counter against the sum of the processes' counts (equal);
  - an RWMutex with as many reader processes looping RLock/RUnlock and 2
    writers (each holds it 2µs and sleeps 1ms between writes): a writer's
    wait for the lock at p50, p99 (50ms at most) and max, every writer and
    every reader getting in, and no holder ever finding a writer inside;
  - one ManualEvent Set releasing every process asleep in its Wait: the
    time from the Set to the first and to the last return (CLOCK_MONOTONIC,
    median over rounds), and all of them released every round;
  - an AutoEvent with every process waiting in a WaitTimeout loop, Set
    10000 times, each Set once the last was taken: exactly 10000 releases.

The machine is shared, so every figure is a ratio against a baseline
measured in the same run, the kinds taking turns in chunks. "spin0" rows run
both processes with SetSpin(0): waiters sleep in the kernel at once.`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("quick", false, "a short run (a few seconds), for tests")
			fs.Int("trips", 100000, "round trips per kind")
			fs.Bool("queue-only", false, "measure the Queue only (with -log-only: the Queue, the Log and the Cell)")
			fs.Bool("log-only", false, "measure the Log and the Cell only")
			fs.Bool("locks-only", false, "measure the locks and events only (no Queue, Log or Cell, no scale section)")
			fs.Int("queue-scale", 1, "run the Queue's measurements `N` times longer")
			fs.Bool("scale", false, "measure many processes on one lock or event only (long: see -scale-time)")
			fs.Int("scale-procs", 64, "with -scale: `N` processes on the lock or event")
			fs.Duration("scale-time", 10*time.Second, "with -scale: each timed scenario's length `D`")
			fs.String("scale-worker", "", "internal: with -helper, be scale worker N of segment `NAME`")
			fs.String("peer", "", "internal: answer round trips on segment `NAME`")
			fs.Int("helper", 0, "internal: with -peer, be producer process `N` of the queue measurements")
			fs.Bool("one-cpu", false, "internal: run the round trips here (started pinned) and print them as JSON")
			fs.String("idle", "", "internal: wait on segment `NAME`'s event and report the CPU time")
		},
		run: runBench,
	})
}

// idleShared is the idle waiter's segment.
type idleShared struct {
	mode    uint32 // which event the waiter waits on: bench.AutoEvent or bench.BusyAutoEvent
	idle    uint32 // the waiter is about to wait
	idleCPU int64  // the waiter's CPU time, ns
	_       [48]byte
	auto    shm.AutoEvent
	_       [56]byte
	busy    shm.BusyAutoEvent
	_       [56]byte
}

// A round-trip kind as the table shows it.
type rtKind struct {
	name string
	mode bench.Mode
	spin int // SetSpin on both sides (-1: default)
}

var (
	kSpin  = rtKind{"raw spin (hardware floor)", bench.RawSpin, 0}
	kFutex = rtKind{"raw futex (kernel floor)", bench.RawFutex, 0}
	kPipe  = rtKind{"pipe pair", bench.Pipe, 0}
	kUnix  = rtKind{"Unix socket pair", bench.UnixSocket, 0}
	kEfd   = rtKind{"raw eventfd (blocking read)", bench.RawEventFD, 0}
	kinds  = []rtKind{
		kSpin, kFutex, kPipe, kUnix, kEfd,
		{"AutoEvent spin0", bench.AutoEvent, 0},
		{"ManualEvent spin0", bench.ManualEvent, 0},
		{"AutoEvent", bench.AutoEvent, -1},
		{"ManualEvent", bench.ManualEvent, -1},
		{"BusyAutoEvent", bench.BusyAutoEvent, -1},
		{"BusyManualEvent", bench.BusyManualEvent, -1},
		{"EventFD (auto)", bench.EventFD, -1},
		{"Mutex hand-off", bench.MutexHandoff, -1},
		{"Mutex hand-off spin0", bench.MutexHandoff, 0},
	}
	baselines = []rtKind{kFutex, kSpin, kPipe, kUnix, kEfd}
)

// A target is one of the figures the package promises, checked in the run
// that measured it.
type target struct {
	what   string
	ratios []float64 // the ratios the target bounds (for round trips: of the medians and of the means)
	limit  float64   // the most each may be (or, with atLeast, the least)
	of     string    // what the ratio is against
	least  bool      // a floor, not a ceiling
}

func (t target) held() bool {
	for _, r := range t.ratios {
		if t.least && r < t.limit || !t.least && r > t.limit {
			return false
		}
	}
	return true
}

// printTargets prints each target with the ratios measured and whether it
// held.
func printTargets(w io.Writer, ts []target) {
	fmt.Fprintln(w, "\nTargets (round trips: the ratio of the medians, then of the means; both must hold):")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, t := range ts {
		rs := make([]string, len(t.ratios))
		for i, r := range t.ratios {
			rs[i] = fmt.Sprintf("%.2f", r)
		}
		cmp, verdict := "<=", "held"
		if t.least {
			cmp = ">="
		}
		if !t.held() {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "  %s\t%s x %s\t(target %s %.2f)\t%s\n", t.what, strings.Join(rs, " / "), t.of, cmp, t.limit, verdict)
	}
	tw.Flush()
}

const benchTimeout = 2 * time.Minute

func runBench(e *env, args []string) error {
	if len(args) != 0 {
		return usageErrorf("bench takes no arguments")
	}
	quick := e.flags.Lookup("quick").Value.(flag.Getter).Get().(bool)
	trips := flagInt(e, "trips")
	if quick {
		trips = 2000
	}
	if trips < 100 {
		return usageErrorf("-trips must be at least 100")
	}
	if name := e.flags.Lookup("scale-worker").Value.String(); name != "" {
		return bench.ServeScale(name, flagInt(e, "helper"))
	}
	if name := e.flags.Lookup("peer").Value.String(); name != "" {
		if i := flagInt(e, "helper"); i != 0 {
			return bench.ServeHelper(name, i)
		}
		return bench.Serve(name)
	}
	queueOnly := e.flags.Lookup("queue-only").Value.(flag.Getter).Get().(bool)
	logOnly := e.flags.Lookup("log-only").Value.(flag.Getter).Get().(bool)
	queueScale := flagInt(e, "queue-scale")
	if queueScale < 1 {
		return usageErrorf("-queue-scale must be at least 1")
	}
	if name := e.flags.Lookup("idle").Value.String(); name != "" {
		return idleWaiter(name)
	}
	if e.flags.Lookup("one-cpu").Value.(flag.Getter).Get().(bool) {
		res, err := roundTrips(trips, true)
		if err != nil {
			return err
		}
		return json.NewEncoder(e.stdout).Encode(res)
	}
	scale, err := scaleFlags(e, quick)
	if err != nil {
		return err
	}

	w := e.stdout
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "shm bench: %d CPUs, GOMAXPROCS %d, %s, load average %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	fmt.Fprintln(w, "Ratios compare medians measured in this run, the kinds taking turns; lower is better (rates: higher).")
	if scale != nil {
		return scaleBench(w, *scale)
	}
	if queueOnly || logOnly {
		if queueOnly {
			if err := queueBench(w, newQueueCounts(quick, queueScale)); err != nil {
				return err
			}
		}
		if logOnly {
			return logBench(w, newQueueCounts(quick, 1))
		}
		return nil
	}

	ops := 2_000_000
	if quick {
		ops = 100_000
	}
	var targets []target
	un := uncontended(w, ops)
	targets = append(targets, target{what: "RWMutex Lock+Unlock, uncontended", ratios: []float64{un["RWMutex Lock+Unlock"] / un["sync.RWMutex Lock+Unlock"]}, limit: 1.1, of: "sync.RWMutex"})

	fmt.Fprintf(w, "\nRound trip between two processes, %d per kind (each timed: the clock's reading adds the same to every kind):\n", trips)
	res, err := roundTrips(trips, false)
	if err != nil {
		return err
	}
	printTrips(w, res)
	targets = append(targets, tripTargets(res)...)

	fmt.Fprintf(w, "\nThe same with both processes pinned to CPU 0 (taskset -c 0), where nobody spins:\n")
	one, err := oneCPU(trips)
	if err != nil {
		return err
	}
	printTrips(w, one)

	incr := trips * 10
	ct, err := contended(w, incr)
	if err != nil {
		return err
	}
	targets = append(targets, ct...)
	idle := time.Second
	if quick {
		idle = 200 * time.Millisecond
	}
	if err := idleCPU(w, idle); err != nil {
		return err
	}
	printTargets(w, targets)
	if e.flags.Lookup("locks-only").Value.(flag.Getter).Get().(bool) {
		return nil
	}
	if err := queueBench(w, newQueueCounts(quick, queueScale)); err != nil {
		return err
	}
	return logBench(w, newQueueCounts(quick, 1))
}

// Uncontended operations.

// uncontended measures and prints the uncontended operations; it returns
// their ns/op by name.
func uncontended(w io.Writer, ops int) map[string]float64 {
	// Process memory is as fast as a mapping; the segments are in the round trips.
	p := new(bench.Prims)
	type op struct {
		name string
		f    func(n int)
	}
	list := []op{
		{"sync.Mutex Lock+Unlock", bench.SyncMutexLoop},
		{"sync.RWMutex RLock+RUnlock", bench.SyncRLockLoop},
		{"sync.RWMutex Lock+Unlock", bench.SyncWLockLoop},
		{"atomic CAS", bench.CASLoop},
		{"Mutex Lock+Unlock", p.MutexLoop},
		{"Mutex TryLock+Unlock", p.TryLockLoop},
		{"RWMutex RLock+RUnlock", p.RLockLoop},
		{"RWMutex Lock+Unlock", p.WLockLoop},
		{"AutoEvent Set+Reset", p.AutoSetResetLoop},
	}
	const chunk = 1000
	ts := make([][]time.Duration, len(list))
	for done := 0; done < ops; done += chunk {
		for i, o := range list {
			t := time.Now()
			o.f(chunk)
			ts[i] = append(ts[i], time.Since(t))
		}
	}
	per := make([]float64, len(list))
	for i := range list {
		per[i] = float64(bench.Median(ts[i])) / chunk
	}
	fmt.Fprintf(w, "\nUncontended, one process (%d operations each, median of chunks of %d):\n", ops, chunk)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/op\tx sync\tx CAS\t")
	syncOf := map[string]int{"Mutex Lock+Unlock": 0, "Mutex TryLock+Unlock": 0, "RWMutex RLock+RUnlock": 1, "RWMutex Lock+Unlock": 2}
	for i, o := range list {
		xs := "-"
		if j, ok := syncOf[o.name]; ok {
			xs = fmt.Sprintf("%.2f", per[i]/per[j])
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.2f\t\n", o.name, per[i], xs, per[i]/per[3])
	}
	tw.Flush()
	fmt.Fprintln(w, "Allocations and system calls on these paths: 0 (go test -run 'NoAllocs|NoSyscalls' -v .).")
	byName := map[string]float64{}
	for i, o := range list {
		byName[o.name] = per[i]
	}
	return byName
}

// Round trips.

// tripResult is one kind's round trips.
type tripResult struct {
	Name   string
	Trips  int
	Median time.Duration
	Mean   time.Duration // the total time over the round trips: what a user pays, stalls included
	P99    time.Duration
	Ratios map[string]float64 // to each baseline, by its name
	Note   string             `json:",omitempty"`
}

// startPeer starts a round-trip peer process: this program run as
// shm bench -peer.
func startPeer() (*bench.Peer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return bench.Start("", func(segment string) *exec.Cmd {
		return exec.Command(self, "bench", "-peer", segment)
	})
}

// roundTrips measures every kind, the kinds taking turns in chunks so that
// a burst of load from elsewhere hits them alike.
func roundTrips(trips int, oneCPU bool) ([]tripResult, error) {
	p, err := startPeer()
	if err != nil {
		return nil, err
	}
	defer p.Close()
	defer shm.SetSpin(-1)
	const rounds = 10
	ts := make([][]time.Duration, len(kinds))
	for i := range ts {
		ts[i] = make([]time.Duration, 0, trips)
	}
	notes := make([]string, len(kinds))
	for r := 0; r < rounds; r++ {
		for i, k := range kinds {
			n := trips / rounds
			if oneCPU && k.mode == bench.RawSpin {
				// A pure spinner on a shared CPU waits out its time slice.
				n = 2
				notes[i] = "each side spins until preempted"
			}
			if ts[i], _, err = p.Run(k.mode, k.spin, n, 1, ts[i]); err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
		}
	}
	res := make([]tripResult, len(kinds))
	byName := map[string]time.Duration{}
	for i, k := range kinds {
		s := slices.Clone(ts[i])
		slices.Sort(s)
		res[i] = tripResult{Name: k.name, Trips: len(s), Median: median(s), Mean: mean(s), P99: p99(s), Note: notes[i]}
		byName[k.name] = res[i].Median
		byName["mean "+k.name] = res[i].Mean
	}
	for i := range res {
		res[i].Ratios = map[string]float64{}
		for _, b := range baselines {
			res[i].Ratios[b.name] = float64(res[i].Median) / float64(byName[b.name])
			res[i].Ratios["mean "+b.name] = float64(res[i].Mean) / float64(byName["mean "+b.name])
		}
	}
	return res, nil
}

func printTrips(w io.Writer, res []tripResult) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tmean\tp99\tx futex\tx spin\tx pipe\tx unix\tmean x spin\t")
	for _, r := range res {
		note := ""
		if r.Note != "" {
			note = "  (" + r.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\n", r.Name, fmtDur(r.Median), fmtDur(r.Mean), fmtDur(r.P99),
			r.Ratios[kFutex.name], r.Ratios[kSpin.name], r.Ratios[kPipe.name], r.Ratios[kUnix.name], r.Ratios["mean "+kSpin.name], note)
	}
	tw.Flush()
}

// tripTargets are the round trips' targets: busy events within 1.15x the
// raw spin, kernel events and the mutex hand-off within 1.3x (with the
// default spin), the EventFD within 1.2x a raw eventfd ping-pong; each by
// the medians and by the means.
func tripTargets(res []tripResult) []target {
	limits := []struct {
		name  string
		limit float64
		of    rtKind
	}{
		{"BusyAutoEvent", 1.15, kSpin},
		{"BusyManualEvent", 1.15, kSpin},
		{"AutoEvent", 1.3, kSpin},
		{"ManualEvent", 1.3, kSpin},
		{"Mutex hand-off", 1.3, kSpin},
		{"EventFD (auto)", 1.2, kEfd},
	}
	var ts []target
	for _, l := range limits {
		for _, r := range res {
			if r.Name == l.name {
				ts = append(ts, target{what: l.name + " round trip", ratios: []float64{r.Ratios[l.of.name], r.Ratios["mean "+l.of.name]}, limit: l.limit, of: l.of.name})
			}
		}
	}
	return ts
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.1fms", float64(d)/1e6)
}

// oneCPU runs the round trips in a process of this program started with
// CPU 0 as its only CPU (its peer inherits that), as taskset -c 0 would.
func oneCPU(trips int) ([]tripResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n := trips / 10
	out, err := runPinned(exec.Command(self, "bench", "-one-cpu", "-trips", strconv.Itoa(max(n, 100))))
	if err != nil {
		return nil, err
	}
	var res []tripResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("one-CPU run: %w: %s", err, out)
	}
	return res, nil
}

// runPinned runs cmd with CPU 0 as its only CPU: a child inherits the
// affinity of the thread that starts it, so cmd is started from a locked
// thread pinned for the purpose (and discarded afterwards).
func runPinned(cmd *exec.Cmd) ([]byte, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		var set unix.CPUSet
		set.Set(0)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			ch <- result{nil, fmt.Errorf("pinning to CPU 0: %w", err)}
			return
		}
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			ch <- result{nil, err}
			return
		}
		out, _ := io.ReadAll(bufio.NewReader(stdout))
		if err := cmd.Wait(); err != nil {
			ch <- result{nil, fmt.Errorf("one-CPU run: %v: %s", err, stderr.String())}
			return
		}
		ch <- result{out, nil}
	}()
	r := <-ch
	return r.out, r.err
}

// contended has 2, then 4, processes increment one counter under one
// Mutex, n increments in all, against the same under a raw futex
// compare-and-swap mutex (RawContended) and goroutines under a sync.Mutex,
// the kinds taking turns; it prints ns per protected increment and how
// often the lock went to another process, and returns the targets (a Mutex
// at most 1.0x the raw futex mutex).
func contended(w io.Writer, n int) ([]target, error) {
	p, err := startPeer()
	if err != nil {
		return nil, err
	}
	defer p.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := p.StartHelpers(2, func(segment string, index int) *exec.Cmd {
		return exec.Command(self, "bench", "-peer", segment, "-helper", strconv.Itoa(index))
	}); err != nil {
		return nil, err
	}
	const rounds = 10
	fmt.Fprintf(w, "\nProcesses contending for one lock, %d protected increments in all per kind (median of %d runs; hand-overs: how often the next increment was another process's):\n", n, rounds)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/increment\thand-overs per 1000\tx raw futex mutex\tx sync.Mutex\t")
	var ts []target
	for _, procs := range []int{2, 4} {
		per := n / procs / rounds
		// run runs one contended round of mode and checks the count.
		run := func(what string, mode bench.Mode, spin int) (time.Duration, uint64, error) {
			want := p.Counter() + uint64(per*procs)
			_, el, err := p.RunJob(bench.Job{Mode: mode, Spin: spin, N: per, Producers: procs}, 0, nil)
			if err == nil && p.Counter() != want {
				err = fmt.Errorf("contended %s: the counter is %d, not %d", what, p.Counter(), want)
			}
			return el, p.Handovers(), err
		}
		var st, rt, bt []time.Duration
		var sh, rh uint64
		for r := 0; r < rounds; r++ {
			el, h, err := run("Mutex", bench.Contended, -1)
			if err != nil {
				return nil, err
			}
			st, sh = append(st, el), sh+h
			if el, h, err = run("raw futex mutex", bench.RawContended, 0); err != nil {
				return nil, err
			}
			rt, rh = append(rt, el), rh+h
			bt = append(bt, bench.SyncContendedN(procs, per))
		}
		total := float64(per * procs)
		m, raw, syn := float64(bench.Median(st))/total, float64(bench.Median(rt))/total, float64(bench.Median(bt))/total
		hand := func(h uint64) float64 { return 1000 * float64(h) / (total * rounds) }
		fmt.Fprintf(tw, "%d processes, Mutex\t%.1f\t%.0f\t%.2f\t%.2f\t\n", procs, m, hand(sh), m/raw, m/syn)
		fmt.Fprintf(tw, "%d processes, raw futex mutex\t%.1f\t%.0f\t1.00\t%.2f\t\n", procs, raw, hand(rh), raw/syn)
		fmt.Fprintf(tw, "%d goroutines, sync.Mutex\t%.1f\t-\t%.2f\t1.00\t\n", procs, syn, syn/raw)
		ts = append(ts, target{what: fmt.Sprintf("Mutex, %d processes contending", procs), ratios: []float64{m / raw}, limit: 1.0, of: "raw futex mutex"})
	}
	tw.Flush()
	return ts, nil
}

// idleCPU has a worker wait, idle, in an AutoEvent's Wait (default
// settings), then in a BusyAutoEvent's, and reports the CPU time it used.
func idleCPU(w io.Writer, idle time.Duration) error {
	fmt.Fprintf(w, "\nA waiter idle for %v (default settings; CPU time of the waiting process, getrusage):\n", idle)
	for _, mode := range []bench.Mode{bench.AutoEvent, bench.BusyAutoEvent} {
		conf := shm.Config{Size: int(unsafe.Sizeof(idleShared{}))}
		m, err := conf.Create()
		if err != nil {
			return err
		}
		s, _ := shm.View[idleShared](m.Data())
		atomic.StoreUint32(&s.mode, uint32(mode))
		self, _ := os.Executable()
		cmd := exec.Command(self, "bench", "-idle", m.Name())
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			m.Close()
			return err
		}
		deadline := time.Now().Add(benchTimeout)
		for atomic.LoadUint32(&s.idle) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(idle)
		if mode == bench.AutoEvent {
			s.auto.Set()
		} else {
			s.busy.Set()
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(benchTimeout):
			cmd.Process.Kill()
			err = <-done
		}
		cpu := time.Duration(atomic.LoadInt64(&s.idleCPU))
		m.Close()
		if err != nil {
			return fmt.Errorf("idle waiter: %v: %s", err, out.String())
		}
		name := map[bench.Mode]string{bench.AutoEvent: "AutoEvent.Wait", bench.BusyAutoEvent: "BusyAutoEvent.Wait"}[mode]
		fmt.Fprintf(w, "  %-20s %8s CPU, %5.2f%% of the wait\n", name, fmtDur(cpu), 100*float64(cpu)/float64(idle))
	}
	return nil
}

func idleWaiter(name string) error {
	m, err := shm.OpenManaged(name)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := shm.View[idleShared](m.Data())
	if err != nil {
		return err
	}
	before := cpuTime()
	atomic.StoreUint32(&s.idle, 1)
	if bench.Mode(atomic.LoadUint32(&s.mode)) == bench.AutoEvent {
		err = s.auto.Wait()
	} else {
		err = s.busy.Wait()
	}
	atomic.StoreInt64(&s.idleCPU, int64(cpuTime()-before))
	return err
}

// cpuTime is the user and system time this process used so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// median, mean and p99 of sorted times.
func median(s []time.Duration) time.Duration { return s[len(s)/2] }
func mean(s []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t / time.Duration(len(s))
}
func p99(s []time.Duration) time.Duration { return s[len(s)*99/100] }
