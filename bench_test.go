//go:build linux

package shm_test

import (
	"os/exec"
	"testing"
	"time"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/bench"
)

// Benchmarks, each against baselines measured in the same run.
//
// The machines these run on are shared and noisy, so a benchmark's absolute
// ns/op says little; what it reports besides is the ratio of its operation
// to each baseline ("x-sync.Mutex", "x-futex", ...). A ratio comes from a
// second phase after the timed loop: the operation and its baselines run
// alternately in chunks, and the ratio is that of their median chunk times,
// so that a burst of load from elsewhere hits both sides alike.
//
//	go test -run '^$' -bench . -benchtime 100000x
//
// Round trips go between this process and a peer process (the test binary
// re-executed as the "bench-peer" child), through each event kind, a mutex
// hand-off, and the baselines: a pipe pair, a Unix socket pair, a raw futex
// wait/wake ping-pong (the kernel's floor) and a raw spin ping-pong on a
// shared word (the hardware's floor). They are internal/bench's, the same
// code that shm bench runs; this is an external test package because that
// package imports shm.

// ratioRounds is how many chunks each side of a comparison runs.
const ratioRounds = 15

// A sampler runs n iterations and returns the times of its samples, each
// of a fixed number of iterations (the same on both sides of a comparison).
type sampler func(n int) []time.Duration

type namedRun struct {
	name string
	run  sampler
}

// compare runs subject and each baseline alternately, ratioRounds chunks of
// about n/ratioRounds iterations each, and reports the ratio of subject's
// median sample to each baseline's as the metric "x-NAME". Medians, and
// alternation, keep a burst of load from elsewhere from tipping the ratio.
func compare(b *testing.B, n int, subject sampler, baselines ...namedRun) []time.Duration {
	b.Helper()
	st, ratios := compareRatios(n, subject, baselines...)
	for i := range ratios {
		b.ReportMetric(ratios[i], "x-"+baselines[i].name)
	}
	return st
}

// compareRatios is compare without the reporting: it returns subject's
// samples and the ratio of its median to each baseline's (nil, nil when n
// is too small to mean anything).
func compareRatios(n int, subject sampler, baselines ...namedRun) ([]time.Duration, []float64) {
	return compareWithin(n, 0, subject, baselines...)
}

// compareWithin is compareRatios in about budget (0: no limit): chunks
// of fewer than n/ratioRounds iterations (200 at least) when the sides,
// timed on a first chunk of 200, would take longer than that.
func compareWithin(n int, budget time.Duration, subject sampler, baselines ...namedRun) ([]time.Duration, []float64) {
	if n < 1000 {
		return nil, nil // the framework's warm-up runs: too short to mean anything
	}
	chunk := max(n/ratioRounds, 200)
	if budget > 0 {
		const first = 200
		var per time.Duration // an iteration of every side
		for _, run := range append([]sampler{subject}, runs(baselines)...) {
			for _, t := range run(first) {
				per += t / first
			}
		}
		if per > 0 {
			chunk = max(min(chunk, int(budget/ratioRounds/per)), 200)
		}
	}
	var st []time.Duration
	bt := make([][]time.Duration, len(baselines))
	for r := 0; r < ratioRounds; r++ {
		st = append(st, subject(chunk)...)
		for i, base := range baselines {
			bt[i] = append(bt[i], base.run(chunk)...)
		}
	}
	ratios := make([]float64, len(baselines))
	for i := range baselines {
		ratios[i] = float64(bench.Median(st)) / float64(bench.Median(bt[i]))
	}
	return st, ratios
}

func runs(ns []namedRun) []sampler {
	var s []sampler
	for _, n := range ns {
		s = append(s, n.run)
	}
	return s
}

// opsSample is how many operations one sample of an uncontended loop times.
const opsSample = 1000

// timed makes a sampler of a loop of n operations.
func timed(f func(n int)) sampler {
	return func(n int) []time.Duration {
		ts := make([]time.Duration, 0, n/opsSample+1)
		for ; n > 0; n -= opsSample {
			t := time.Now()
			f(min(n, opsSample))
			ts = append(ts, time.Since(t))
		}
		return ts
	}
}

// Uncontended operations (internal/bench's loops), on primitives in a real
// segment.

func newUncontended(b *testing.B) *bench.Prims {
	seg, err := shm.Create(shm.TestName(b), 4096)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { seg.Close() })
	u, err := shm.View[bench.Prims](seg.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	return u
}

var (
	vsSyncMutex = namedRun{"sync.Mutex", timed(bench.SyncMutexLoop)}
	vsRLock     = namedRun{"sync.RWMutex.RLock", timed(bench.SyncRLockLoop)}
	vsWLock     = namedRun{"sync.RWMutex.Lock", timed(bench.SyncWLockLoop)}
	vsCAS       = namedRun{"CAS", timed(bench.CASLoop)}
)

// benchLoop times loop(b.N) and reports its ratio to the baselines.
func benchLoop(b *testing.B, loop func(n int), baselines ...namedRun) {
	b.ReportAllocs()
	b.ResetTimer()
	loop(b.N)
	b.StopTimer()
	compare(b, b.N, timed(loop), baselines...)
}

func BenchmarkBaselineSyncMutex(b *testing.B)    { benchLoop(b, bench.SyncMutexLoop) }
func BenchmarkBaselineSyncRWMutexR(b *testing.B) { benchLoop(b, bench.SyncRLockLoop) }
func BenchmarkBaselineSyncRWMutexW(b *testing.B) { benchLoop(b, bench.SyncWLockLoop) }
func BenchmarkBaselineCAS(b *testing.B)          { benchLoop(b, bench.CASLoop) }

func BenchmarkMutex(b *testing.B) {
	benchLoop(b, newUncontended(b).MutexLoop, vsSyncMutex, vsCAS)
}

func BenchmarkMutexTryLock(b *testing.B) {
	benchLoop(b, newUncontended(b).TryLockLoop, vsSyncMutex, vsCAS)
}

func BenchmarkRWMutexRLock(b *testing.B) {
	benchLoop(b, newUncontended(b).RLockLoop, vsRLock, vsCAS)
}

func BenchmarkRWMutexLock(b *testing.B) {
	benchLoop(b, newUncontended(b).WLockLoop, vsWLock, vsCAS)
}

func BenchmarkAutoEventSetReset(b *testing.B) {
	benchLoop(b, newUncontended(b).AutoSetResetLoop, vsCAS)
}

func BenchmarkAutoEventSetWait(b *testing.B) {
	benchLoop(b, newUncontended(b).AutoSetWaitLoop, vsCAS)
}

func BenchmarkManualEventSetReset(b *testing.B) {
	benchLoop(b, newUncontended(b).ManualSetResetLoop, vsCAS)
}

func BenchmarkBusyAutoEventSetWait(b *testing.B) {
	benchLoop(b, newUncontended(b).BusyAutoSetWaitLoop, vsCAS)
}

// Between processes.

func init() {
	shm.RegisterChild("bench-peer", func(args []string) error { return bench.Serve(args[0]) })
}

// startPeer starts a round-trip peer process, ended when the benchmark
// ends.
func startPeer(tb testing.TB) *bench.Peer {
	tb.Helper()
	p, err := bench.Start(shm.TestName(tb), func(segment string) *exec.Cmd {
		return shm.ChildCommand("bench-peer", segment)
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// sampleBatch is how many round trips one sample times: enough to make the
// clock's cost small against a spin round trip, few enough that a process
// switch spoils few samples.
const sampleBatch = 8

// runner is a sampler of round trips in mode.
func runner(tb testing.TB, p *bench.Peer, name string, mode bench.Mode, spin int) namedRun {
	return jobRunner(tb, p, name, bench.Job{Mode: mode, Spin: spin})
}

// jobRunner is a sampler of round trips of a Job (its N set by the
// sampler).
func jobRunner(tb testing.TB, p *bench.Peer, name string, j bench.Job) namedRun {
	return namedRun{name, func(n int) []time.Duration {
		j := j
		j.N = n
		ts, _, err := p.RunJob(j, sampleBatch, make([]time.Duration, 0, n/sampleBatch))
		if err != nil {
			tb.Fatal(err)
		}
		return ts
	}}
}

// BenchmarkRoundTrip measures a round trip between two processes (ns/op)
// for each kind, and its ratio to the baselines. "spin0" runs both
// processes with SetSpin(0): waiters go straight to the kernel; the others
// run with the default (-1).
func BenchmarkRoundTrip(b *testing.B) {
	p := startPeer(b)
	defer shm.SetSpin(-1)
	futexBase := runner(b, p, "futex", bench.RawFutex, 0)
	spinBase := runner(b, p, "spin", bench.RawSpin, 0)
	pipeBase := runner(b, p, "pipe", bench.Pipe, 0)
	unixBase := runner(b, p, "unix", bench.UnixSocket, 0)
	efdBase := runner(b, p, "raw-eventfd", bench.RawEventFD, 0)
	kernel := []namedRun{futexBase, spinBase, pipeBase, unixBase}
	cases := []struct {
		name      string
		mode      bench.Mode
		spin      int
		baselines []namedRun
	}{
		{"raw-spin", bench.RawSpin, 0, nil},
		{"raw-futex", bench.RawFutex, 0, []namedRun{spinBase}},
		{"pipe", bench.Pipe, 0, []namedRun{futexBase, spinBase}},
		{"unix-socket", bench.UnixSocket, 0, []namedRun{futexBase, spinBase}},
		{"raw-eventfd", bench.RawEventFD, 0, []namedRun{futexBase, spinBase}},
		{"auto-spin0", bench.AutoEvent, 0, kernel},
		{"manual-spin0", bench.ManualEvent, 0, kernel},
		{"auto", bench.AutoEvent, -1, kernel},
		{"manual", bench.ManualEvent, -1, kernel},
		{"busy-auto", bench.BusyAutoEvent, -1, []namedRun{spinBase, futexBase}},
		{"busy-manual", bench.BusyManualEvent, -1, []namedRun{spinBase, futexBase}},
		{"eventfd", bench.EventFD, -1, append([]namedRun{efdBase}, kernel...)},
		{"mutex-handoff", bench.MutexHandoff, -1, []namedRun{spinBase, futexBase}},
		{"mutex-handoff-spin0", bench.MutexHandoff, 0, []namedRun{spinBase, futexBase}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.StopTimer()
			if err := p.Prepare(c.mode, c.spin, b.N); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			p.Drive(0, nil)
			b.StopTimer()
			if err := p.Finish(); err != nil {
				b.Fatal(err)
			}
			st := compare(b, b.N, runner(b, p, c.name, c.mode, c.spin).run, c.baselines...)
			if st != nil {
				b.ReportMetric(float64(bench.Median(st))/sampleBatch, "median-ns/op")
			}
		})
	}
}

// BenchmarkMutexContended has this process and the peer increment one
// counter under one Mutex, b.N times each; ns/op is per increment (of the
// 2*b.N). The baselines are the same two processes under a raw futex
// compare-and-swap mutex, and two goroutines under a sync.Mutex.
func BenchmarkMutexContended(b *testing.B) {
	p := startPeer(b)
	contended := func(n int) time.Duration {
		_, el, err := p.Run(bench.Contended, -1, n, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		return el
	}
	b.ResetTimer()
	el := contended(b.N)
	b.StopTimer()
	b.ReportMetric(float64(el.Nanoseconds())/float64(2*b.N), "ns/op")
	if b.N < 100 {
		return
	}
	st, rt, bt := make([]time.Duration, 0, ratioRounds), make([]time.Duration, 0, ratioRounds), make([]time.Duration, 0, ratioRounds)
	chunk := max(b.N/ratioRounds, 100)
	for r := 0; r < ratioRounds; r++ {
		st = append(st, contended(chunk))
		_, el, err := p.Run(bench.RawContended, 0, chunk, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		rt = append(rt, el)
		bt = append(bt, bench.SyncContended(chunk))
	}
	b.ReportMetric(float64(bench.Median(st))/float64(bench.Median(rt)), "x-raw-futex-mutex")
	b.ReportMetric(float64(bench.Median(st))/float64(bench.Median(bt)), "x-sync.Mutex")
}
