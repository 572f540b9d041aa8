//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-shm/shm/internal/bench"
)

// The scale section of shm bench (-scale): many processes on one lock or
// event (issue 14), each figure with its target, said to hold or not. The
// worker processes are this program run as shm bench -scale-worker NAME
// -helper N; they are started once and take part in every scenario.

// The targets.
const (
	targetScaleRate   = 0.5                   // Mutex, N processes: throughput x that of 2, at least
	targetScaleFewest = 0.25                  // Mutex, N processes: fewest acquisitions x the mean, at least
	targetWriterP99   = 50 * time.Millisecond // RWMutex: a writer's wait at p99, at most
)

// scaleWriters is how many writers the RWMutex scenario has.
const scaleWriters = 2

// scaleCounts are the sizes of the scale section.
type scaleCounts struct {
	procs  int           // processes on the lock or event
	d      time.Duration // each timed scenario's length
	rounds int           // ManualEvent rounds
	sets   int           // AutoEvent Sets
}

// scaleFlags reads the -scale flags: nil without -scale.
func scaleFlags(e *env, quick bool) (*scaleCounts, error) {
	if !e.flags.Lookup("scale").Value.(flag.Getter).Get().(bool) {
		return nil, nil
	}
	c := &scaleCounts{
		procs: flagInt(e, "scale-procs"),
		d:     e.flags.Lookup("scale-time").Value.(flag.Getter).Get().(time.Duration),
		sets:  10000,
	}
	if quick {
		c.sets = 1000
	}
	if c.procs < 2 || c.procs > bench.MaxScaleWorkers-scaleWriters {
		return nil, usageErrorf("-scale-procs must be from 2 to %d", bench.MaxScaleWorkers-scaleWriters)
	}
	if c.d < 100*time.Millisecond {
		return nil, usageErrorf("-scale-time must be at least 100ms")
	}
	// A ManualEvent round takes a little more than its settle time (100
	// ms): about as many rounds as fit in the scenario's time.
	c.rounds = min(max(int(c.d/(250*time.Millisecond)), 3), 40)
	return c, nil
}

// scaleWorkerCommand is the command of scale worker index for segment.
func scaleWorkerCommand(segment string, index int) *exec.Cmd {
	self, _ := os.Executable()
	return exec.Command(self, "bench", "-scale-worker", segment, "-helper", strconv.Itoa(index))
}

// scaleRow is a row of the scale table: a figure, its value, and its
// target if it has one.
type scaleRow struct {
	name, value string
	target      string // "" if none
	held        bool
}

func scaleBench(w io.Writer, c scaleCounts) error {
	fmt.Fprintf(w, "\nScale: %d processes on one lock or event, %v per timed scenario; a worker process each, started once:\n", c.procs, c.d)
	s, err := bench.StartScale(c.procs+scaleWriters, scaleWorkerCommand)
	if err != nil {
		return err
	}
	defer s.Close()

	var rows []scaleRow
	var wrong []error // correctness failures: the command fails after the table
	held, all := 0, 0
	add := func(name, value, target string, ok bool) {
		rows = append(rows, scaleRow{name, value, target, ok})
		if target != "" {
			all++
			if ok {
				held++
			}
		}
	}
	check := func(err error) bool {
		if err != nil {
			wrong = append(wrong, err)
			return false
		}
		return true
	}

	// Mutex: the 2-process baseline for half the time before the N
	// processes, and half after, so that load from elsewhere hits both.
	b1, err := s.MutexScale(2, c.d/2)
	if err != nil {
		return err
	}
	m, err := s.MutexScale(c.procs, c.d)
	if err != nil {
		return err
	}
	b2, err := s.MutexScale(2, c.d/2)
	if err != nil {
		return err
	}
	base := float64(b1.Total+b2.Total) / (b1.Duration + b2.Duration).Seconds()
	add("Mutex, 2 processes (baseline): acquisitions/s", fmtRate(base), "", false)
	add(fmt.Sprintf("Mutex, %d processes: acquisitions/s", c.procs), fmtRate(m.Rate), "", false)
	add("  throughput x 2 processes", fmt.Sprintf("%.2f", m.Rate/base), fmt.Sprintf(">= %.2f", targetScaleRate), m.Rate/base >= targetScaleRate)
	add("  fewest acquisitions / mean", fmt.Sprintf("%.2f (%d / %.0f)", m.FewestRatio(), m.Fewest, m.Mean),
		fmt.Sprintf(">= %.2f", targetScaleFewest), m.FewestRatio() >= targetScaleFewest)
	ok := check(b1.Check()) && check(m.Check()) && check(b2.Check())
	add("  shared counter == sum of the counts", fmt.Sprintf("%d", m.Counter), "equal", ok)
	if m.Timeouts != 0 {
		add("  lock waits longer than 1s (made again)", fmt.Sprintf("%d", m.Timeouts), "", false)
	}

	rw, err := s.RWScale(c.procs, scaleWriters, c.d)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("RWMutex, %d readers, %d writers", rw.Readers, rw.Writers), "", "", false)
	add("  writer wait p50", fmtDur(rw.WaitP50), "", false)
	add("  writer wait p99", fmtDur(rw.WaitP99), "<= "+fmtDur(targetWriterP99), rw.WaitP99 <= targetWriterP99)
	add("  writer wait max", fmtDur(rw.WaitMax), "", false)
	add(fmt.Sprintf("  writer's %v sleep between writes, overrun p50 / p99 (the scheduler's floor)", rw.Pause), fmtDur(rw.NapP50)+" / "+fmtDur(rw.NapP99), "", false)
	writesIn := true
	var ws []string
	for _, n := range rw.Writes {
		writesIn = writesIn && n > 0
		ws = append(ws, strconv.FormatUint(n, 10))
	}
	add("  writes, each writer", strings.Join(ws, ", "), "> 0 each", writesIn)
	add("  reads per reader: fewest / mean", fmt.Sprintf("%d / %.0f (%.2f)", rw.ReadFewest, rw.ReadMean, rw.ReadFewestRatio()), "> 0 each", rw.ReadFewest > 0)
	add("  reader wait max", fmtDur(rw.ReadWaitMax), "", false)
	add("  holders that found a writer inside", fmt.Sprintf("%d", rw.Violations), "0", check(rw.Check()))
	if rw.ReadTimeouts+rw.WriteTimeouts != 0 {
		add("  lock waits longer than 1s (made again): readers, writers", fmt.Sprintf("%d, %d", rw.ReadTimeouts, rw.WriteTimeouts), "", false)
	}

	me, err := s.ManualRelease(c.procs, c.rounds)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("ManualEvent, %d waiters asleep, one Set, %d rounds", me.Procs, me.Rounds), "", "", false)
	add("  time to the first waiter's return (median)", fmtDur(me.FirstMedian), "", false)
	add("  time to the last waiter's return (median)", fmtDur(me.LastMedian), "", false)
	add("  time to the last waiter's return (max)", fmtDur(me.LastMax), "", false)
	full := 0
	for _, n := range me.Released {
		if n == me.Procs {
			full++
		}
	}
	add(fmt.Sprintf("  rounds that released all %d", me.Procs), fmt.Sprintf("%d of %d", full, me.Rounds), "every round", check(me.Check()))

	ae, err := s.AutoReleases(c.procs, c.sets)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("AutoEvent, %d waiters, %d Sets", ae.Waiters, ae.Sets), "", "", false)
	add("  releases counted by the waiters", fmt.Sprintf("%d", ae.Releases), fmt.Sprintf("exactly %d", ae.Sets), check(ae.Check()))
	add("  time, Set to Set taken", fmt.Sprintf("%s (%s each)", fmtDur(ae.Elapsed), fmtDur(ae.Elapsed/time.Duration(max(ae.Sets, 1)))), "", false)
	add("  releases per waiter: fewest / mean", fmt.Sprintf("%d / %.1f", ae.Fewest, ae.Mean), "", false)

	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\tvalue\ttarget\theld")
	for _, r := range rows {
		verdict := ""
		if r.target != "" {
			verdict = "missed"
			if r.held {
				verdict = "held"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.value, r.target, verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRWMutex: each writer holds the lock %v and sleeps %v between writes; a wait is from the call of Lock (RLock, after a TryRLock failed) to its return.\n", rw.Hold, rw.Pause)
	fmt.Fprintf(w, "ManualEvent: the Set %v after the last waiter said it was about to wait; times from before the Set to each Wait's return (CLOCK_MONOTONIC).\n", me.Settle)
	fmt.Fprintf(w, "AutoEvent: each waiter loops WaitTimeout(%v); each Set once the last one was taken (IsSet false).\n", ae.WaitTimeout)
	fmt.Fprintf(w, "\nScale targets held: %d of %d\n", held, all)
	if len(wrong) != 0 {
		return fmt.Errorf("scale: %v", wrong)
	}
	return nil
}

// fmtRate formats a rate per second.
func fmtRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2f M/s", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1f k/s", r/1e3)
	}
	return fmt.Sprintf("%.0f /s", r)
}
