//go:build linux

package shm_test

import (
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/bench"
)

// Benchmarks of the Queue, against baselines measured in the same run (the
// engine is internal/bench's, as for the round trips):
//
//	go test -run '^$' -bench Queue -count 3 .
//
//   - Throughput: a stream of 64-byte messages from this process to the
//     peer (blocking Send; the peer receives with Receive, which spins
//     before it sleeps, and releases each message or every 32), against a
//     minimal ring of 64-byte slots (the hardware's floor).
//   - Latency: a 64-byte message there and back through two queues, with
//     the default spin and with SetSpin(0) (waiters asleep in the kernel),
//     against the raw spin and raw futex ping-pongs; one way is half.
//   - Request/response of 64 B to 1 MiB through two queues (read back with
//     Copy) against a Unix socket pair (the whole message written and read
//     back).
//   - 1 MiB messages streamed with Send and Copy, against copy() of 1 MiB.
//   - Uncontended Claim+Commit+Receive+Release in one goroutine.
//   - 4 producer processes (blocking Send) into one queue, against one.
//
// Throughputs report "rate-x-NAME", the ratio of their rate to the
// baseline's (higher is better); round trips, as the others, "x-NAME", the
// ratio of their times (lower is better).

func init() {
	shm.RegisterChild("bench-helper", func(args []string) error {
		i, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		return bench.ServeHelper(args[0], i)
	})
}

// compareBudget is about how long the queue benchmarks' comparisons take,
// the baselines being much slower than the queue in some.
const compareBudget = 2 * time.Second

// startHelpers starts k helper processes for the peer.
func startHelpers(tb testing.TB, p *bench.Peer, k int) {
	tb.Helper()
	err := p.StartHelpers(k, func(segment string, index int) *exec.Cmd {
		return shm.ChildCommand("bench-helper", segment, strconv.Itoa(index))
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// streamRunner is a sampler of a stream (or of QueueProducers): one sample
// per run of n messages, its time.
func streamRunner(tb testing.TB, p *bench.Peer, name string, j bench.Job) namedRun {
	return namedRun{name, func(n int) []time.Duration {
		el := runStream(tb, p, j, n)
		return []time.Duration{el}
	}}
}

// runStream runs j with n messages and returns its time, scaled to n
// messages if the job rounded n down.
func runStream(tb testing.TB, p *bench.Peer, j bench.Job, n int) time.Duration {
	sent := n
	if j.Producers > 1 {
		sent = max(n-n%j.Producers, j.Producers)
	}
	j.N = sent
	_, el, err := p.RunJob(j, 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return el * time.Duration(n) / time.Duration(sent)
}

// benchStream times b.N messages of j (ns/op per message; bytes/op makes
// go test print MB/s), then reports its rate against each baseline's
// ("rate-x-NAME").
func benchStream(b *testing.B, p *bench.Peer, j bench.Job, baselines ...namedRun) {
	b.ReportAllocs()
	if j.Size > 0 {
		b.SetBytes(int64(j.Size))
	}
	b.ResetTimer()
	el := runStream(b, p, j, b.N)
	b.StopTimer()
	b.ReportMetric(float64(el.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(b.N)/el.Seconds()/1e6, "Mmsgs/s")
	_, ratios := compareWithin(b.N, compareBudget, streamRunner(b, p, "", j).run, baselines...)
	for i := range ratios {
		b.ReportMetric(1/ratios[i], "rate-x-"+baselines[i].name)
	}
}

// benchTrips times b.N round trips of j and reports their ratio to each
// baseline's, the median round trip and half of it (one way).
func benchTrips(b *testing.B, p *bench.Peer, j bench.Job, baselines ...namedRun) {
	b.ReportAllocs()
	b.StopTimer()
	j.N = b.N
	if err := p.PrepareJob(j); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	p.Drive(0, nil)
	b.StopTimer()
	if err := p.Finish(); err != nil {
		b.Fatal(err)
	}
	st, ratios := compareWithin(b.N, compareBudget, jobRunner(b, p, "", j).run, baselines...)
	for i := range ratios {
		b.ReportMetric(ratios[i], "x-"+baselines[i].name)
	}
	if st != nil {
		med := float64(bench.Median(st)) / sampleBatch
		b.ReportMetric(med, "median-ns/op")
		b.ReportMetric(med/2, "one-way-ns")
	}
}

// BenchmarkQueueThroughput streams 64-byte messages from this process to
// the peer: the raw ring, and a Queue whose consumer releases each message
// or every 32.
func BenchmarkQueueThroughput(b *testing.B) {
	p := startPeer(b)
	defer shm.SetSpin(-1)
	rawJob := bench.Job{Mode: bench.RawRing, Spin: -1}
	raw := streamRunner(b, p, "raw-ring", rawJob)
	cases := []struct {
		name string
		j    bench.Job
		base []namedRun
	}{
		{"raw-ring", rawJob, nil},
		{"queue", bench.Job{Mode: bench.QueueStream, Spin: -1, Size: 64}, []namedRun{raw}},
		{"queue-batch32", bench.Job{Mode: bench.QueueStream, Spin: -1, Size: 64, Batch: 32}, []namedRun{raw}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchStream(b, p, c.j, c.base...) })
	}
}

// BenchmarkQueueLatency makes round trips of a 64-byte message through two
// queues (one way: half of one), with the default spin and with SetSpin(0),
// against the raw spin and raw futex ping-pongs (whose round trip tells the
// CPUs' placement).
func BenchmarkQueueLatency(b *testing.B) { benchPingPong(b, "queue", bench.QueuePingPong) }

// benchPingPong makes round trips of a 64-byte message in mode (a ping-pong
// through two queues or two logs), named name, with the default spin and
// with SetSpin(0), against the raw spin and raw futex ping-pongs.
func benchPingPong(b *testing.B, name string, mode bench.Mode) {
	p := startPeer(b)
	defer shm.SetSpin(-1)
	spinJob := bench.Job{Mode: bench.RawSpin, Spin: 0}
	futexJob := bench.Job{Mode: bench.RawFutex, Spin: 0}
	spin := jobRunner(b, p, "raw-spin", spinJob)
	futex := jobRunner(b, p, "raw-futex", futexJob)
	cases := []struct {
		name string
		j    bench.Job
		base []namedRun
	}{
		{"raw-spin", spinJob, nil},
		{"raw-futex", futexJob, nil},
		{name, bench.Job{Mode: mode, Spin: -1, Size: 64}, []namedRun{spin, futex}},
		{name + "-spin0", bench.Job{Mode: mode, Spin: 0, Size: 64}, []namedRun{futex, spin}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchTrips(b, p, c.j, c.base...) })
	}
}

// queueSizes are the request/response sizes.
var queueSizes = []int{64, 4 << 10, 64 << 10, 1 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkQueueRequestResponse makes round trips of a message of each
// size through two queues (the peer sends back what it received; this
// process reads it back with Copy), against a Unix socket pair carrying the
// same messages.
func BenchmarkQueueRequestResponse(b *testing.B) {
	p := startPeer(b)
	defer shm.SetSpin(-1)
	for _, size := range queueSizes {
		unixJob := bench.Job{Mode: bench.UnixSocketSized, Spin: -1, Size: size}
		unix := jobRunner(b, p, "unix", unixJob)
		b.Run("unix-"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(2 * size))
			benchTrips(b, p, unixJob)
		})
		b.Run("queue-"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(2 * size))
			benchTrips(b, p, bench.Job{Mode: bench.QueuePingPong, Spin: -1, Size: size}, unix)
		})
	}
}

// BenchmarkQueueCopy1MiB streams 1 MiB messages from this process to the
// peer, copied in by Send and out by Copy, against copy() of 1 MiB in this
// process: "rate-x-copy" is the ratio of the bandwidths.
func BenchmarkQueueCopy1MiB(b *testing.B) {
	p := startPeer(b)
	defer shm.SetSpin(-1)
	memcpy := namedRun{"copy", timed(bench.CopyLoop(1 << 20))}
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(1 << 20)
		benchLoop(b, bench.CopyLoop(1<<20))
	})
	b.Run("queue", func(b *testing.B) {
		benchStream(b, p, bench.Job{Mode: bench.QueueCopy, Spin: -1, Size: 1 << 20}, memcpy)
	})
}

// BenchmarkQueueUncontended claims 64 bytes, commits them, receives the
// message and releases it, in one goroutine (with a Producer, and with the
// Queue's pool of producer slots), and sends and copies out a 64-byte
// message, against a buffered channel's send and receive and a CAS.
func BenchmarkQueueUncontended(b *testing.B) {
	seg, err := shm.Create(shm.TestName(b), bench.QueueOpsSize())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { seg.Close() })
	o, err := bench.NewQueueOps(seg.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(o.Close)
	vsChan := namedRun{"chan", timed(bench.ChanLoop)}
	b.Run("chan", func(b *testing.B) { benchLoop(b, bench.ChanLoop) })
	b.Run("producer-claim", func(b *testing.B) { benchLoop(b, o.ProducerClaimLoop, vsChan, vsCAS) })
	b.Run("queue-claim", func(b *testing.B) { benchLoop(b, o.QueueClaimLoop, vsChan, vsCAS) })
	b.Run("send-copy", func(b *testing.B) { benchLoop(b, o.SendCopyLoop, vsChan, vsCAS) })
}

// BenchmarkQueueProducers has 1 and 4 producer processes (the peer and
// helpers; blocking Send) send 64-byte messages to one queue that this
// process receives from (Receive, Release each): ns/op per message
// received, and the rate of 4 against 1.
func BenchmarkQueueProducers(b *testing.B) {
	p := startPeer(b)
	startHelpers(b, p, 3)
	defer shm.SetSpin(-1)
	oneJob := bench.Job{Mode: bench.QueueProducers, Spin: -1, Size: 64, Producers: 1}
	one := streamRunner(b, p, "1-producer", oneJob)
	b.Run("1-producer", func(b *testing.B) { benchStream(b, p, oneJob) })
	b.Run("4-producers", func(b *testing.B) {
		benchStream(b, p, bench.Job{Mode: bench.QueueProducers, Spin: -1, Size: 64, Producers: 4}, one)
	})
}

// TestBenchQueueModes runs every queue mode of the measuring engine a
// little, so that a broken one fails here rather than in a benchmark.
func TestBenchQueueModes(t *testing.T) {
	p := startPeer(t)
	startHelpers(t, p, 3)
	defer shm.SetSpin(-1)
	for _, j := range []bench.Job{
		{Mode: bench.RawRing, Spin: -1, N: 3000},
		{Mode: bench.QueueStream, Spin: -1, N: 3000},
		{Mode: bench.QueueStream, Spin: -1, N: 3000, Batch: 32},
		{Mode: bench.QueueStream, Spin: 0, N: 300, Size: 100 << 10},
		{Mode: bench.QueueCopy, Spin: -1, N: 20, Size: 1 << 20},
		{Mode: bench.QueuePingPong, Spin: -1, N: 300},
		{Mode: bench.QueuePingPong, Spin: 0, N: 300, Size: 4 << 10},
		{Mode: bench.QueuePingPong, Spin: -1, N: 5, Size: 1 << 20},
		{Mode: bench.UnixSocketSized, Spin: -1, N: 300},
		{Mode: bench.UnixSocketSized, Spin: -1, N: 5, Size: 1 << 20},
		{Mode: bench.QueueProducers, Spin: -1, N: 3000, Producers: 1},
		{Mode: bench.QueueProducers, Spin: -1, N: 3000, Producers: 4},
		{Mode: bench.RawSpin, Spin: 0, N: 100}, // the old modes still work after the new
	} {
		_, el, err := p.RunJob(j, 0, nil)
		if err != nil || el <= 0 {
			t.Fatalf("%+v: time %v, %v", j, el, err)
		}
		t.Logf("%+v: %v", j, el)
	}
	if _, _, err := p.RunJob(bench.Job{Mode: bench.QueueProducers, N: 10, Producers: 5}, 0, nil); err == nil {
		t.Error("5 producers with 3 helpers: no error")
	}

	mem := make([]byte, bench.QueueOpsSize())
	o, err := bench.NewQueueOps(mem)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	o.ProducerClaimLoop(2000)
	o.QueueClaimLoop(2000)
	o.SendCopyLoop(2000)
}
