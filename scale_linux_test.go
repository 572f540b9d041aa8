package shm_test

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/bench"
)

// The scale scenarios of issue 14 (internal/bench, scale_linux.go; the same
// code that shm bench -scale runs), checked for correctness only: 64
// processes on one Mutex, 64 readers and 2 writers on one RWMutex, 64
// waiters released by one ManualEvent Set, 64 waiters on one AutoEvent.
// No timing is asserted (the machine is shared); the Mutex's starvation
// floor is, since the issue asks for it: the fewest acquisitions of any
// process at least a quarter of the mean.
//
// A short run by default; SHM_TORTURE=1 runs each scenario for 10 s (and
// the ManualEvent for 40 rounds, the AutoEvent for 10 000 Sets), as the
// issue measures them.

func init() {
	shm.RegisterChild("scale-worker", func(args []string) error {
		i, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		return bench.ServeScale(args[0], i)
	})
}

const (
	scaleProcs   = 64
	scaleWriters = 2
	// scaleFloor is the fewest acquisitions of a Mutex process over the
	// mean, at least.
	scaleFloor = 0.25
)

func TestScale(t *testing.T) {
	d, rounds, sets := 2*time.Second, 5, 2000
	if os.Getenv("SHM_TORTURE") != "" {
		d, rounds, sets = 10*time.Second, 40, 10000
	}
	began := time.Now()
	c, err := bench.StartScale(scaleProcs+scaleWriters, func(segment string, index int) *exec.Cmd {
		return shm.ChildCommand("scale-worker", segment, strconv.Itoa(index))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	t.Run("Mutex", func(t *testing.T) {
		r, err := c.MutexScale(scaleProcs, d)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d processes, %v: %d acquisitions (%.0f/s), fewest %d, mean %.0f (fewest/mean %.2f), %d lock waits timed out",
			r.Procs, r.Duration.Round(time.Millisecond), r.Total, r.Rate, r.Fewest, r.Mean, r.FewestRatio(), r.Timeouts)
		if err := r.Check(); err != nil {
			t.Error(err)
		}
		for i, n := range r.Counts {
			if n == 0 {
				t.Errorf("process %d never got the lock", i)
			}
		}
		if r.FewestRatio() < scaleFloor {
			t.Errorf("starvation: the fewest acquisitions (%d) are %.2f of the mean (%.0f), below %.2f; counts %v",
				r.Fewest, r.FewestRatio(), r.Mean, scaleFloor, r.Counts)
		}
	})

	t.Run("RWMutex", func(t *testing.T) {
		r, err := c.RWScale(scaleProcs, scaleWriters, d)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d readers, %d writers, %v: writes %v, writer wait p50 %v p99 %v max %v; reads fewest %d, mean %.0f, reader wait max %v; waits over 1s: %d readers', %d writers'",
			r.Readers, r.Writers, r.Duration.Round(time.Millisecond), r.Writes, r.WaitP50, r.WaitP99, r.WaitMax, r.ReadFewest, r.ReadMean, r.ReadWaitMax, r.ReadTimeouts, r.WriteTimeouts)
		if err := r.Check(); err != nil {
			t.Error(err)
		}
		for i, n := range r.Writes {
			if n == 0 {
				t.Errorf("writer %d never got in", i)
			}
		}
		for i, n := range r.Reads {
			if n == 0 {
				t.Errorf("reader %d never got in", i)
			}
		}
	})

	t.Run("ManualEvent", func(t *testing.T) {
		r, err := c.ManualRelease(scaleProcs, rounds)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d waiters, %d rounds: released %v; first %v, last %v (medians), last at most %v",
			r.Procs, r.Rounds, r.Released, r.FirstMedian, r.LastMedian, r.LastMax)
		if err := r.Check(); err != nil {
			t.Error(err)
		}
	})

	t.Run("AutoEvent", func(t *testing.T) {
		r, err := c.AutoReleases(scaleProcs, sets)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d waiters, %d Sets in %v: %d releases; per waiter fewest %d, mean %.1f",
			r.Waiters, r.Sets, r.Elapsed.Round(time.Millisecond), r.Releases, r.Fewest, r.Mean)
		if err := r.Check(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("whole test (%d worker processes): %v", c.Workers(), time.Since(began).Round(time.Millisecond))
}
