//go:build linux

package shm

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	// args: name, what (mutex|write|read): open the segment twice, lock
	// through the first mapping, close it (ready=1), then when told
	// (woken=1) close the second (ready=2), and wait to be killed.
	registerChild("brk-twice", func(args []string) error {
		s1, a1, err := openArea(args[0])
		if err != nil {
			return err
		}
		s2, a2, err := openArea(args[0])
		if err != nil {
			return err
		}
		switch args[1] {
		case "mutex":
			a1.mu.Lock()
		case "write":
			a1.rw.Lock()
		case "read":
			a1.rw.RLock()
		}
		s1.Close()
		atomic.StoreInt32(&a2.ready, 1)
		for atomic.LoadInt32(&a2.woken) == 0 {
			time.Sleep(time.Millisecond)
		}
		atomic.StoreInt32(&a2.ready, 2)
		s2.Close()
		time.Sleep(time.Hour)
		return nil
	})
}

// TestBreakCloseOneOfTwoMappings: a process that closes one of two Segments
// of the same segment keeps the locks it holds (it still has the segment
// open); once it closes the last one it gives them up, as the Mutex doc
// says, although it is still running. (Linux only: elsewhere owner death
// is judged by PID and start time, and a live process that closed the
// segment keeps its locks, which the Mutex doc does not say.)
func TestBreakCloseOneOfTwoMappings(t *testing.T) {
	for _, what := range []string{"mutex", "write", "read"} {
		t.Run(what, func(t *testing.T) {
			name, _, a := newArea(t)
			c := startChild(t, "brk-twice", name, what)
			waitCount(t, &a.ready, 1, 20*time.Second)
			lock := func(d time.Duration) error {
				var err error
				switch what {
				case "mutex":
					if err = a.mu.LockTimeout(d); err == nil || errors.Is(err, ErrOwnerDead) {
						a.mu.Unlock()
					}
				case "write", "read":
					if err = a.rw.LockTimeout(d); err == nil || errors.Is(err, ErrOwnerDead) {
						a.rw.Unlock()
					}
				}
				return err
			}
			if err := lock(300 * time.Millisecond); !errors.Is(err, ErrTimeout) {
				t.Fatalf("the holder closed one of its two mappings: lock: %v, want a timeout", err)
			}
			atomic.StoreInt32(&a.woken, 1)
			waitCount(t, &a.ready, 2, 20*time.Second)
			time.Sleep(10 * time.Millisecond)
			start := time.Now()
			err := lock(2 * time.Second)
			want := error(ErrOwnerDead)
			if what == "read" {
				want = nil // a dead reader's share is released silently
			}
			if err != want {
				t.Fatalf("the holder closed its last mapping: lock: %v, want %v", err, want)
			}
			if d := time.Since(start); d > 200*time.Millisecond {
				t.Errorf("taken over after %v", d)
			}
			c.kill()
		})
	}
}
