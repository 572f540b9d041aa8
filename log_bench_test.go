//go:build linux

package shm_test

import (
	"testing"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/bench"
)

// Benchmarks of the Log and the Cell, against baselines measured in the
// same run (the engine is internal/bench's, as for the queue; shm bench
// -log-only prints the same figures with their targets):
//
//	go test -run '^$' -bench 'Log|Cell' -count 3 .
//
//   - Append throughput: this process appends 64-byte messages as fast as
//     it can while 1 or 8 reader processes (the peer and helpers) each copy
//     every message out (Copy) as fast as they can; the time is the
//     writer's. "rate-x-1-reader" (target 0.9 at least with 8 readers) and
//     "rate-x-queue", against the Queue's Send of 64-byte messages to one
//     consumer (target 0.8 at least).
//   - Latency: a 64-byte message there and back through two logs (each
//     process appends to one and reads the other with Copy), with the
//     default spin and with SetSpin(0) (the reader asleep in the kernel),
//     against the raw spin and raw futex ping-pongs (targets 1.3 and 1.2 at
//     most); one way is half.
//   - Cell: Store and Load of a 64-byte value in one goroutine, against
//     copy() of 64 bytes into and out of the same segment (target 2 at
//     most).
//
// "lost-%" is the share of the messages the readers were told they lost
// (a broadcast log's writer never waits for them).

// benchLogStream is benchStream for LogStream, reporting besides the share
// of messages the readers were told they lost.
func benchLogStream(b *testing.B, p *bench.Peer, j bench.Job, baselines ...namedRun) {
	b.ReportAllocs()
	b.SetBytes(int64(j.Size))
	b.ResetTimer()
	el := runStream(b, p, j, b.N)
	b.StopTimer()
	recv, lost, skip := p.LogReaders() // of the timed run, before the comparisons run others
	b.ReportMetric(float64(el.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(b.N)/el.Seconds()/1e6, "Mmsgs/s")
	if all := recv + lost + skip; all > 0 {
		b.ReportMetric(100*float64(lost+skip)/float64(all), "lost-%")
	}
	_, ratios := compareWithin(b.N, compareBudget, streamRunner(b, p, "", j).run, baselines...)
	for i := range ratios {
		b.ReportMetric(1/ratios[i], "rate-x-"+baselines[i].name)
	}
}

// BenchmarkLogAppend streams 64-byte messages from this process to 1 and
// 8 reader processes, and through a Queue to one consumer.
func BenchmarkLogAppend(b *testing.B) {
	p := startPeer(b)
	startHelpers(b, p, 7)
	defer shm.SetSpin(-1)
	queueJob := bench.Job{Mode: bench.QueueStream, Spin: -1, Size: 64}
	oneJob := bench.Job{Mode: bench.LogStream, Spin: -1, Size: 64, Readers: 1}
	queue := streamRunner(b, p, "queue", queueJob)
	one := streamRunner(b, p, "1-reader", oneJob)
	b.Run("queue-send", func(b *testing.B) { benchStream(b, p, queueJob) })
	b.Run("1-reader", func(b *testing.B) { benchLogStream(b, p, oneJob, queue) })
	b.Run("8-readers", func(b *testing.B) {
		benchLogStream(b, p, bench.Job{Mode: bench.LogStream, Spin: -1, Size: 64, Readers: 8}, one, queue)
	})
}

// BenchmarkLogLatency makes round trips of a 64-byte message through two
// logs (one way: half of one), with the default spin and with SetSpin(0),
// against the raw spin and raw futex ping-pongs (whose round trip tells the
// CPUs' placement).
func BenchmarkLogLatency(b *testing.B) { benchPingPong(b, "log", bench.LogPingPong) }

// BenchmarkCell stores and loads a 64-byte value in a cell, in one
// goroutine, against copy() of 64 bytes into and out of the same segment.
func BenchmarkCell(b *testing.B) {
	seg, err := shm.Create(shm.TestName(b), bench.CellOpsSize())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { seg.Close() })
	o, err := bench.NewCellOps(seg.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(o.Close)
	copyIn := namedRun{"copy-in", timed(o.CopyInLoop)}
	copyOut := namedRun{"copy-out", timed(o.CopyOutLoop)}
	b.Run("copy-in", func(b *testing.B) { benchLoop(b, o.CopyInLoop) })
	b.Run("store", func(b *testing.B) { benchLoop(b, o.StoreLoop, copyIn, vsCAS) })
	b.Run("copy-out", func(b *testing.B) { benchLoop(b, o.CopyOutLoop) })
	b.Run("load", func(b *testing.B) { benchLoop(b, o.LoadLoop, copyOut, vsCAS) })
}

// TestBenchLogModes runs every log mode of the measuring engine a little,
// so that a broken one fails here rather than in a benchmark.
func TestBenchLogModes(t *testing.T) {
	p := startPeer(t)
	startHelpers(t, p, 7)
	defer shm.SetSpin(-1)
	for _, j := range []bench.Job{
		{Mode: bench.LogStream, Spin: -1, N: 3000, Readers: 1},
		{Mode: bench.LogStream, Spin: -1, N: 3000, Readers: 8},
		{Mode: bench.LogStream, Spin: 0, N: 300, Size: 4 << 10, Readers: 3},
		{Mode: bench.LogPingPong, Spin: -1, N: 300},
		{Mode: bench.LogPingPong, Spin: 0, N: 300, Size: 4 << 10},
		{Mode: bench.QueueProducers, Spin: -1, N: 3000, Producers: 4}, // the helpers still produce
		{Mode: bench.RawSpin, Spin: 0, N: 100},
	} {
		_, el, err := p.RunJob(j, 0, nil)
		if err != nil || el <= 0 {
			t.Fatalf("%+v: time %v, %v", j, el, err)
		}
		if j.Mode == bench.LogStream {
			recv, lost, skip := p.LogReaders()
			if recv+lost+skip != int64(j.N*j.Readers) || recv == 0 {
				t.Fatalf("%+v: the readers received %d, lost %d, skipped %d", j, recv, lost, skip)
			}
			t.Logf("%+v: %v; readers received %d, lost %d, skipped %d", j, el, recv, lost, skip)
		} else {
			t.Logf("%+v: %v", j, el)
		}
	}
	if _, _, err := p.RunJob(bench.Job{Mode: bench.LogStream, N: 10, Readers: 9}, 0, nil); err == nil {
		t.Error("9 readers with 7 helpers: no error")
	}

	mem := make([]byte, bench.CellOpsSize())
	o, err := bench.NewCellOps(mem)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	o.StoreLoop(2000)
	o.LoadLoop(2000)
	o.CopyInLoop(2000)
	o.CopyOutLoop(2000)
}
