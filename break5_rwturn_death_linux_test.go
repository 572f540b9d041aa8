//go:build linux

package shm

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	// args: name: take the write lock and wait to be killed.
	registerChild("brk5-holdw", func(args []string) error {
		seg, a, err := openTurnArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		a.rw.Lock()
		atomic.AddInt32(&a.ready, 1)
		time.Sleep(time.Minute)
		return nil
	})
	// args: name: LockTimeout(5 s); record its result (1 nil, 2
	// ErrOwnerDead, 3 other) and OwnerDied, hold 20 ms, Unlock.
	registerChild("brk5-takeover", func(args []string) error {
		seg, a, err := openTurnArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		err = a.rw.LockTimeout(5 * time.Second)
		died := a.rw.OwnerDied()
		if died {
			atomic.StoreInt32(&a.died, 1)
		}
		switch {
		case err == nil:
			atomic.StoreInt32(&a.res, 1)
		case errors.Is(err, ErrOwnerDead):
			atomic.StoreInt32(&a.res, 2)
		default:
			atomic.StoreInt32(&a.res, 3)
			return err
		}
		a.writeInside(0)
		time.Sleep(20 * time.Millisecond)
		a.rw.Unlock()
		return nil
	})
}

// keepTurn stores a readers' turn (now+turnLength) every 500 µs, as a
// patient reader does, until the returned function is called.
func keepTurn(rw *RWMutex) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			rw.askTurn()
			select {
			case <-done:
				return
			case <-time.After(500 * time.Microsecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// TestBreak5RWTurnOwnerDeadYield: a writer that takes the lock over from
// a writer killed holding it (ErrOwnerDead), during a readers' turn, lets
// w go and waits for the turn to end. Another writer takes w meanwhile
// (here the test, through w itself), sees ErrOwnerDead itself, and then
// either repairs the data (MarkConsistent) or not. The first writer's
// LockTimeout must report ErrOwnerDead exactly when the lock it ends up
// holding is still marked: ErrOwnerDead means "repair the data", and nil
// means the data is sound.
func TestBreak5RWTurnOwnerDeadYield(t *testing.T) {
	for _, repair := range []bool{true, false} {
		name := "unrepaired"
		if repair {
			name = "repaired"
		}
		t.Run(name, func(t *testing.T) {
			segName, a := newTurnArea(t)
			h := startChild(t, "brk5-holdw", segName)
			waitCount(t, &a.ready, 1, 20*time.Second)
			h.kill()
			stop := keepTurn(&a.rw)
			stopped := false
			defer func() {
				if !stopped {
					stop()
				}
			}()
			w1 := startChild(t, "brk5-takeover", segName)
			// Wait for w1 to take w over and let it go for the turn: w
			// free and marked.
			deadline := time.Now().Add(10 * time.Second)
			for {
				st := atomic.LoadUint64(&a.rw.w.state)
				if st&mHeld == 0 && st&mInconsistent != 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the waiting writer never took over and let go (w %#x)", st)
				}
				time.Sleep(200 * time.Microsecond)
			}
			// Another writer gets in before w1 is back.
			if err := a.rw.w.LockTimeout(time.Second); !errors.Is(err, ErrOwnerDead) {
				t.Fatalf("second writer: %v, want ErrOwnerDead", err)
			}
			stop()
			stopped = true
			atomic.StoreInt64(&a.rw.turn, 0)
			if repair {
				a.rw.MarkConsistent()
			}
			time.Sleep(2 * time.Millisecond)
			a.rw.Unlock()
			w1.wait(10 * time.Second)
			res, died := atomic.LoadInt32(&a.res), atomic.LoadInt32(&a.died) != 0
			t.Logf("first writer: result %d (1 nil, 2 ErrOwnerDead), OwnerDied %v", res, died)
			if (res == 2) != died {
				t.Errorf("the writer that took over, let go for a turn and locked again got result %d (1 nil, 2 ErrOwnerDead) with OwnerDied %v", res, died)
			}
			if !repair && res != 2 {
				t.Errorf("the lock is still marked and the writer was not told")
			}
			if a.bad != 0 {
				t.Errorf("%s", a.msg[:])
			}
		})
	}
}

// TestBreak5RWTurnOwnerDeadOnce: a writer killed holding the lock, a
// writer that takes it over during readers' turns (kept asked for 30 ms,
// so that it lets w go at least once), and a reader waiting: the writer
// gets ErrOwnerDead with OwnerDied set; after it unlocks without
// MarkConsistent the next writer is told too; after MarkConsistent, the
// next one is not.
func TestBreak5RWTurnOwnerDeadOnce(t *testing.T) {
	segName, a := newTurnArea(t)
	h := startChild(t, "brk5-holdw", segName)
	waitCount(t, &a.ready, 1, 20*time.Second)
	h.kill()
	stop := keepTurn(&a.rw)
	w1 := startChild(t, "brk5-takeover", segName)
	time.Sleep(30 * time.Millisecond)
	stop()
	w1.wait(10 * time.Second)
	if res, died := atomic.LoadInt32(&a.res), atomic.LoadInt32(&a.died) != 0; res != 2 || !died {
		t.Fatalf("first writer: result %d (want 2, ErrOwnerDead), OwnerDied %v", res, died)
	}
	if err := a.rw.LockTimeout(time.Second); !errors.Is(err, ErrOwnerDead) || !a.rw.OwnerDied() {
		t.Fatalf("next writer, still marked: %v, OwnerDied %v", err, a.rw.OwnerDied())
	}
	a.rw.MarkConsistent()
	a.rw.Unlock()
	if err := a.rw.LockTimeout(time.Second); err != nil || a.rw.OwnerDied() {
		t.Fatalf("writer after MarkConsistent: %v, OwnerDied %v", err, a.rw.OwnerDied())
	}
	a.rw.Unlock()
	if err := a.rw.RLockTimeout(time.Second); err != nil {
		t.Fatalf("reader: %v", err)
	}
	a.rw.RUnlock()
}
