//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/bench"
)

// The queue section of shm bench: internal/bench's queue modes, each kind
// against its baseline, the kinds taking turns in rounds.

// queueCounts are the sizes of the queue section's runs.
type queueCounts struct {
	rounds  int // rounds in which the kinds take turns
	stream  int // 64-byte messages per stream run
	trips   int // 64-byte round trips per kind (in all)
	copies  int // 1 MiB messages per run
	ops     int // uncontended operations per kind (in all)
	produce int // messages per run from the producers
}

func newQueueCounts(quick bool, scale int) queueCounts {
	c := queueCounts{rounds: 10, stream: 200_000, trips: 20_000, copies: 200, ops: 2_000_000, produce: 100_000}
	if quick {
		c = queueCounts{rounds: 3, stream: 10_000, trips: 1_000, copies: 20, ops: 100_000, produce: 4_000}
	}
	c.stream *= scale
	c.trips *= scale
	c.copies *= scale
	c.ops *= scale
	c.produce *= scale
	return c
}

// helperCommand is the command of helper process index for segment.
func helperCommand(segment string, index int) *exec.Cmd {
	self, _ := os.Executable()
	return exec.Command(self, "bench", "-helper", strconv.Itoa(index), "-peer", segment)
}

func queueBench(w io.Writer, c queueCounts) error {
	p, err := startPeer()
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.StartHelpers(3, helperCommand); err != nil {
		return err
	}
	defer shm.SetSpin(-1)
	fmt.Fprintf(w, "\nQueue (64 KiB rings; messages above 32 KiB through 4 MiB rings), %d rounds, kinds taking turns:\n", c.rounds)

	// Latency first: its raw spin round trip tells where the two CPUs are.
	if err := queueLatency(w, p, c); err != nil {
		return err
	}
	if err := queueThroughput(w, p, c); err != nil {
		return err
	}
	if err := queueRequestResponse(w, p, c); err != nil {
		return err
	}
	if err := queueCopy(w, p, c); err != nil {
		return err
	}
	if err := queueUncontended(w, c); err != nil {
		return err
	}
	return queueProducers(w, p, c)
}

// runRounds runs each job rounds times, the jobs taking turns, and returns
// each one's run times.
func runRounds(p *bench.Peer, rounds int, jobs []bench.Job) ([][]time.Duration, error) {
	ts := make([][]time.Duration, len(jobs))
	for r := 0; r < rounds; r++ {
		for i, j := range jobs {
			_, el, err := p.RunJob(j, 0, nil)
			if err != nil {
				return nil, err
			}
			ts[i] = append(ts[i], el)
		}
	}
	return ts, nil
}

// tripRounds makes trips round trips of each job in rounds, the jobs
// taking turns, each trip timed, and returns each one's sorted times.
func tripRounds(p *bench.Peer, rounds, trips int, jobs []bench.Job) ([][]time.Duration, error) {
	ts := make([][]time.Duration, len(jobs))
	for r := 0; r < rounds; r++ {
		for i, j := range jobs {
			j.N = max(trips/rounds, 1)
			var err error
			if ts[i], _, err = p.RunJob(j, 1, ts[i]); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range ts {
		slices.Sort(t)
	}
	return ts, nil
}

func queueLatency(w io.Writer, p *bench.Peer, c queueCounts) error {
	jobs := []bench.Job{
		{Mode: bench.RawSpin, Spin: 0},
		{Mode: bench.RawFutex, Spin: 0},
		{Mode: bench.QueuePingPong, Spin: -1, Size: 64},
		{Mode: bench.QueuePingPong, Spin: 0, Size: 64},
	}
	names := []string{"raw spin (hardware floor)", "raw futex (kernel floor)", "Queue", "Queue spin0"}
	ts, err := tripRounds(p, c.rounds, c.trips, jobs)
	if err != nil {
		return fmt.Errorf("queue latency: %w", err)
	}
	spin, futex := median(ts[0]), median(ts[1])
	fmt.Fprintf(w, "\nOne-way latency, 64 bytes: half a round trip through two queues, %d round trips per kind (each timed); raw spin round trip %s:\n", c.trips, fmtDur(spin))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tone way\tround trip\tp99\tx spin\tx futex\t")
	for i, n := range names {
		m := median(ts[i])
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%.2f\t\n", n, fmtDur(m/2), fmtDur(m), fmtDur(p99(ts[i])),
			float64(m)/float64(spin), float64(m)/float64(futex))
	}
	tw.Flush()
	return nil
}

func queueThroughput(w io.Writer, p *bench.Peer, c queueCounts) error {
	jobs := []bench.Job{
		{Mode: bench.RawRing, Spin: -1, N: c.stream},
		{Mode: bench.QueueStream, Spin: -1, N: c.stream, Size: 64},
		{Mode: bench.QueueStream, Spin: -1, N: c.stream, Size: 64, Batch: 32},
	}
	names := []string{"raw ring (hardware floor)", "Queue, Release each", "Queue, Release every 32"}
	ts, err := runRounds(p, c.rounds, jobs)
	if err != nil {
		return fmt.Errorf("queue throughput: %w", err)
	}
	fmt.Fprintf(w, "\nThroughput, 64-byte messages from one process to another that spins, %d per run (rate: higher is better):\n", c.stream)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/msg\tM msgs/s\trate x raw ring\t")
	raw := float64(bench.Median(ts[0]))
	for i, n := range names {
		m := float64(bench.Median(ts[i]))
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t\n", n, m/float64(c.stream), float64(c.stream)/m*1e3, raw/m)
	}
	tw.Flush()
	return nil
}

func queueRequestResponse(w io.Writer, p *bench.Peer, c queueCounts) error {
	fmt.Fprintf(w, "\nRequest/response round trip through two queues (read back with Copy) against a Unix socket pair (the whole message written and read back):\n")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\ttrips\tQueue\tp99\tUnix socket\tp99\tx unix\t")
	for _, size := range []int{64, 4 << 10, 64 << 10, 1 << 20} {
		// Fewer round trips of large messages: each copies more.
		trips := max(c.trips/max(size/(16<<10), 1), 10*c.rounds)
		jobs := []bench.Job{
			{Mode: bench.QueuePingPong, Spin: -1, Size: size},
			{Mode: bench.UnixSocketSized, Spin: -1, Size: size},
		}
		ts, err := tripRounds(p, c.rounds, trips, jobs)
		if err != nil {
			return fmt.Errorf("request/response of %d bytes: %w", size, err)
		}
		q, u := median(ts[0]), median(ts[1])
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%.2f\t\n", sizeName(size), len(ts[0]), fmtDur(q), fmtDur(p99(ts[0])), fmtDur(u), fmtDur(p99(ts[1])), float64(q)/float64(u))
	}
	tw.Flush()
	return nil
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func queueCopy(w io.Writer, p *bench.Peer, c queueCounts) error {
	const size = 1 << 20
	memcpy := bench.CopyLoop(size)
	var qt, mt []time.Duration
	for r := 0; r < c.rounds; r++ {
		_, el, err := p.RunJob(bench.Job{Mode: bench.QueueCopy, Spin: -1, N: c.copies, Size: size}, 0, nil)
		if err != nil {
			return fmt.Errorf("queue copy: %w", err)
		}
		qt = append(qt, el)
		t := time.Now()
		memcpy(c.copies)
		mt = append(mt, time.Since(t))
	}
	gbs := func(d time.Duration) float64 { return float64(c.copies) * size / d.Seconds() / 1e9 }
	q, m := gbs(bench.Median(qt)), gbs(bench.Median(mt))
	fmt.Fprintf(w, "\n1 MiB messages, Send (copy in) in one process and Copy (copy out) in another, %d per run: %.2f GB/s; copy() of 1 MiB in one goroutine: %.2f GB/s (rate x %.2f)\n",
		c.copies, q, m, q/m)
	return nil
}

func queueUncontended(w io.Writer, c queueCounts) error {
	// Process memory, as for the locks (a mapping is as fast).
	o, err := bench.NewQueueOps(make([]byte, bench.QueueOpsSize()))
	if err != nil {
		return err
	}
	defer o.Close()
	type op struct {
		name string
		f    func(n int)
	}
	list := []op{
		{"chan send+receive (buffered)", bench.ChanLoop},
		{"atomic CAS", bench.CASLoop},
		{"Producer.Claim+Commit, Receive+Release", o.ProducerClaimLoop},
		{"Queue.Claim+Commit, Receive+Release", o.QueueClaimLoop},
		{"Producer.Send+Consumer.Copy (64 B)", o.SendCopyLoop},
	}
	const chunk = 1000
	ts := make([][]time.Duration, len(list))
	for done := 0; done < c.ops; done += chunk {
		for i, o := range list {
			t := time.Now()
			o.f(chunk)
			ts[i] = append(ts[i], time.Since(t))
		}
	}
	fmt.Fprintf(w, "\nQueue uncontended, one goroutine sends and receives (%d operations each, median of chunks of %d; target of Claim+Commit+Receive+Release: 60 ns):\n", c.ops, chunk)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/op\tx chan\tx CAS\t")
	per := make([]float64, len(list))
	for i := range list {
		per[i] = float64(bench.Median(ts[i])) / chunk
	}
	for i, o := range list {
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t\n", o.name, per[i], per[i]/per[0], per[i]/per[1])
	}
	tw.Flush()
	return nil
}

func queueProducers(w io.Writer, p *bench.Peer, c queueCounts) error {
	n := c.produce - c.produce%4
	jobs := []bench.Job{
		{Mode: bench.QueueProducers, Spin: -1, N: n, Size: 64, Producers: 1},
		{Mode: bench.QueueProducers, Spin: -1, N: n, Size: 64, Producers: 4},
	}
	ts, err := runRounds(p, c.rounds, jobs)
	if err != nil {
		return fmt.Errorf("queue producers: %w", err)
	}
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }
	one, four := rate(bench.Median(ts[0])), rate(bench.Median(ts[1]))
	fmt.Fprintf(w, "\n64-byte messages into one queue (blocking Send; Receive+Release each), %d per run: 4 producer processes %.2f M msgs/s in all; 1 producer process %.2f M msgs/s (rate x %.2f)\n",
		n, four, one, four/one)
	return nil
}
