package shm

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	// args: name, hold (µs): two goroutines take the write lock in turn,
	// each holding it for hold, with no pause between, until told to stop.
	registerChild("brk2-writers", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		hold := time.Duration(atoi(args[1])) * time.Microsecond
		atomic.AddInt32(&a.ready, 1)
		var wg sync.WaitGroup
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for atomic.LoadInt32(&a.woken) == 0 {
					a.rw.Lock()
					time.Sleep(hold)
					a.rw.Unlock()
				}
			}()
		}
		wg.Wait()
		return nil
	})
}

// TestBreak2RWReaderNotStarvedByWriters (regression guard): writers that
// take the lock back to back (two per process, two processes, each holding
// it about a millisecond; SHM_BREAK2_HOLD sets the hold in µs) must not keep
// a reader out for long: nothing hands the lock to the readers an Unlock
// woke, so this is the reader-side starvation the writer preference could
// cause. It held: worst waits of 0.2 to 35 ms for holds of 0 to 1000 µs.
func TestBreak2RWReaderNotStarvedByWriters(t *testing.T) {
	holdUS := "1000"
	if v := os.Getenv("SHM_BREAK2_HOLD"); v != "" {
		holdUS = v
	}
	name, _, a := newArea(t)
	var cs []*child
	for i := 0; i < 2; i++ {
		cs = append(cs, startChild(t, "brk2-writers", name, holdUS))
	}
	waitCount(t, &a.ready, 2, 20*time.Second)
	time.Sleep(50 * time.Millisecond)
	var worst time.Duration
	fails := 0
	for i := 0; i < 10; i++ {
		start := time.Now()
		if err := a.rw.RLockTimeout(time.Second); err != nil {
			fails++
			worst = time.Second
			continue
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
		a.rw.RUnlock()
		time.Sleep(5 * time.Millisecond)
	}
	atomic.StoreInt32(&a.woken, 1)
	for _, c := range cs {
		c.wait(10 * time.Second)
	}
	t.Logf("longest read-lock wait %v, %d of 10 timed out after 1 s", worst, fails)
	if worst > 200*time.Millisecond {
		t.Errorf("a reader waited %v (%d of 10 waits timed out after 1 s) for writers that each hold about 1 ms", worst, fails)
	}
}
