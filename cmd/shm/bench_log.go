//go:build linux

package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/bench"
)

// The log section of shm bench: the broadcast Log and the latest-value
// Cell, each kind against baselines measured in the same run, the kinds
// taking turns in rounds, and each figure that has a target said to hold
// or not.

// logReaders is the most reader processes of the throughput runs: the
// peer and 7 helpers.
const logReaders = 8

// The targets.
const (
	targetReaders = 0.9 // Append rate with 8 readers, x the rate with 1: at least
	targetQueue   = 0.8 // Append rate with 1 reader, x the Queue's Send rate: at least
	targetSpin    = 1.3 // Log round trip, x the raw spin round trip: at most
	targetFutex   = 1.2 // Log spin0 round trip, x the raw futex round trip: at most
	targetCell    = 2.0 // Cell Store (Load), x copy() in (out): at most
)

// targets counts the targets that held.
type targets struct{ held, all int }

// atMost and atLeast check a ratio against a target and say so.
func (t *targets) atMost(x, limit float64) string  { return t.check(x <= limit, "<= ", limit) }
func (t *targets) atLeast(x, limit float64) string { return t.check(x >= limit, ">= ", limit) }

func (t *targets) check(ok bool, op string, limit float64) string {
	t.all++
	if ok {
		t.held++
		return op + fmt.Sprintf("%.1f", limit) + "\tyes"
	}
	return op + fmt.Sprintf("%.1f", limit) + "\tNO"
}

func logBench(w io.Writer, c queueCounts) error {
	p, err := startPeer()
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.StartHelpers(logReaders-1, helperCommand); err != nil {
		return err
	}
	defer shm.SetSpin(-1)
	fmt.Fprintf(w, "\nLog and Cell (64 KiB rings), %d rounds, kinds taking turns:\n", c.rounds)
	var t targets
	// Latency first: its raw spin round trip tells where the two CPUs are.
	if err := logLatency(w, p, c, &t); err != nil {
		return err
	}
	if err := logThroughput(w, p, c, &t); err != nil {
		return err
	}
	if err := cellOps(w, c, &t); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nLog and Cell targets held: %d of %d\n", t.held, t.all)
	return nil
}

// placement says where the two CPUs look to be, from the raw spin round
// trip.
func placement(spin time.Duration) string {
	if spin < 350*time.Nanosecond {
		return "CPUs close together"
	}
	return "CPUs far apart"
}

func logLatency(w io.Writer, p *bench.Peer, c queueCounts, t *targets) error {
	jobs := []bench.Job{
		{Mode: bench.RawSpin, Spin: 0},
		{Mode: bench.RawFutex, Spin: 0},
		{Mode: bench.QueuePingPong, Spin: -1, Size: 64},
		{Mode: bench.LogPingPong, Spin: -1, Size: 64},
		{Mode: bench.LogPingPong, Spin: 0, Size: 64},
	}
	names := []string{"raw spin (hardware floor)", "raw futex (kernel floor)", "Queue (for comparison)", "Log", "Log spin0 (reader asleep)"}
	ts, err := tripRounds(p, c.rounds, c.trips, jobs)
	if err != nil {
		return fmt.Errorf("log latency: %w", err)
	}
	spin, futex := median(ts[0]), median(ts[1])
	fmt.Fprintf(w, "\nOne-way latency, 64 bytes: half a round trip through two logs (each process appends to one and reads the other with Copy), %d round trips per kind (each timed); raw spin round trip %s (%s):\n",
		c.trips, fmtDur(spin), placement(spin))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tone way\tround trip\tp99\tx spin\tx futex\ttarget\theld\t")
	for i, n := range names {
		m := median(ts[i])
		xs, xf := float64(m)/float64(spin), float64(m)/float64(futex)
		target := "\t"
		switch i {
		case 3:
			target = "x spin " + t.atMost(xs, targetSpin)
		case 4:
			target = "x futex " + t.atMost(xf, targetFutex)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t\n", n, fmtDur(m/2), fmtDur(m), fmtDur(p99(ts[i])), xs, xf, target)
	}
	tw.Flush()
	return nil
}

func logThroughput(w io.Writer, p *bench.Peer, c queueCounts, t *targets) error {
	jobs := []bench.Job{
		{Mode: bench.QueueStream, Spin: -1, N: c.stream, Size: 64},
		{Mode: bench.LogStream, Spin: -1, N: c.stream, Size: 64, Readers: 1},
		{Mode: bench.LogStream, Spin: -1, N: c.stream, Size: 64, Readers: logReaders},
	}
	names := []string{"Queue Send, 1 consumer", "Log Append, 1 reader", fmt.Sprintf("Log Append, %d readers", logReaders)}
	ts := make([][]time.Duration, len(jobs))
	cpu := make([][]time.Duration, len(jobs)) // the writer's CPU time
	type counts struct{ recv, lost, skip int64 }
	got := make([]counts, len(jobs))
	for r := 0; r < c.rounds; r++ {
		for i, j := range jobs {
			_, el, err := p.RunJob(j, 0, nil)
			if err != nil {
				return fmt.Errorf("log throughput: %w", err)
			}
			ts[i] = append(ts[i], el)
			cpu[i] = append(cpu[i], p.DriveCPU())
			if j.Mode == bench.LogStream {
				recv, lost, skip := p.LogReaders()
				got[i].recv += recv
				got[i].lost += lost
				got[i].skip += skip
			}
		}
	}
	fmt.Fprintf(w, "\nThroughput, 64-byte messages from one process, %d per run (rate: higher is better); the writer's time, from its first Append to its last, and its thread's CPU time (the cost per message, whatever share of the 2 CPUs the readers leave it); each reader a process copying every message out (Copy) as fast as it can:\n", c.stream)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/msg\tM msgs/s\trate x Queue\trate x 1 reader\tCPU ns/msg\tCPU x 1 reader\treaders received\ttarget\theld\t")
	q, one := float64(bench.Median(ts[0])), float64(bench.Median(ts[1]))
	oneCPU := float64(bench.Median(cpu[1]))
	for i, n := range names {
		m := float64(bench.Median(ts[i]))
		mc := float64(bench.Median(cpu[i]))
		cpuX := "-"
		if i == 2 {
			cpuX = fmt.Sprintf("%.2f", mc/oneCPU)
		}
		recv, target, xq, x1 := "-", "\t", fmt.Sprintf("%.2f", q/m), fmt.Sprintf("%.2f", one/m)
		if i == 0 {
			xq, x1 = "1.00", "-"
		}
		if jobs[i].Mode == bench.LogStream {
			all := float64(c.rounds) * float64(c.stream) * float64(jobs[i].Readers)
			recv = fmt.Sprintf("%.1f%%", 100*float64(got[i].recv)/all)
			if got[i].skip != 0 {
				recv += fmt.Sprintf(" (%d skipped unreported)", got[i].skip)
			}
		}
		switch i {
		case 1:
			target = "x Queue " + t.atLeast(q/m, targetQueue)
		case 2:
			target = "x 1 reader " + t.atLeast(one/m, targetReaders)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%s\t%s\t%.1f\t%s\t%s\t%s\t\n", n, m/float64(c.stream), float64(c.stream)/m*1e3, xq, x1, mc/float64(c.stream), cpuX, recv, target)
	}
	tw.Flush()
	return nil
}

func cellOps(w io.Writer, c queueCounts, t *targets) error {
	seg, err := shm.Create("", bench.CellOpsSize())
	if err != nil {
		return err
	}
	defer seg.Close()
	o, err := bench.NewCellOps(seg.Bytes())
	if err != nil {
		return err
	}
	defer o.Close()
	list := []struct {
		name string
		f    func(n int)
	}{
		{"copy() in, 64 B", o.CopyInLoop},
		{"Cell.Store, 64 B", o.StoreLoop},
		{"copy() out, 64 B", o.CopyOutLoop},
		{"Cell.Load, 64 B", o.LoadLoop},
	}
	const chunk = 1000
	ts := make([][]time.Duration, len(list))
	for done := 0; done < c.ops; done += chunk {
		for i, o := range list {
			start := time.Now()
			o.f(chunk)
			ts[i] = append(ts[i], time.Since(start))
		}
	}
	per := make([]float64, len(list))
	for i := range list {
		per[i] = float64(bench.Median(ts[i])) / chunk
	}
	fmt.Fprintf(w, "\nCell, one goroutine, a segment's memory (%d operations each, median of chunks of %d):\n", c.ops, chunk)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/op\tx copy\ttarget\theld\t")
	for i, o := range list {
		x, target := "-", "\t"
		if i%2 == 1 {
			r := per[i] / per[i-1]
			x = fmt.Sprintf("%.2f", r)
			target = "x copy " + t.atMost(r, targetCell)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t\n", o.name, per[i], x, target)
	}
	tw.Flush()
	return nil
}
