package shm

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Round 7: the log's sleepers and the writer's wake.

// b7Sleeping waits until a reader sleeps on wake (bit 0 set), then a
// little more, so that it is in the futex.
func b7Sleeping(t *testing.T, l *Log) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); atomic.LoadUint32(l.wake)&1 == 0; {
		if time.Now().After(end) {
			t.Fatal("the reader never went to sleep")
		}
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(5 * time.Millisecond)
}

// TestBreak7LogSuccessorWakes: a writer that dies after its store of tail
// and before it wakes the readers (it saw bit 0 of wake) leaves them
// asleep, the message published. The next writer finds intent == tail
// and, unlike a cell's next writer (Cell.Writer always wakes), wakes
// nobody: the sleepers find the message only when their sleep slice ends
// (eventSlice, 100 ms, cut to ctxSlice, 20 ms, because the handle's Close
// must be able to end it): up to 20 ms late, where a woken reader takes
// microseconds.
func TestBreak7LogSuccessorWakes(t *testing.T) {
	_, l := newLog(t, 512, 0)
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Reader(LogNext)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	type res struct {
		at  time.Time
		err error
	}
	got := make(chan res, 1)
	go func() {
		_, err := r.Copy(make([]byte, 64))
		got <- res{time.Now(), err}
	}()
	b7Sleeping(t, l)
	// The dying writer's append, all of it but the wake.
	start, wk := w.begin(8)
	if !wk {
		t.Fatal("the writer did not see the sleeper")
	}
	copyToShared(l.ring, start&l.mask+qRecHeader, b6Msg(0, 8))
	w.publish(start, 8, recCommitted, false) // dead before wakeReaders
	l.wr.Store(nil)
	atomic.StoreUint64(l.writer, 0)
	time.Sleep(time.Millisecond)
	t0 := time.Now()
	w2, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	select {
	case g := <-got:
		if g.err != nil {
			t.Fatal(g.err)
		}
		if d := g.at.Sub(t0); d > 3*time.Millisecond {
			t.Errorf("the sleeper found the published message %v after the successor attached (its sleep slice ran out)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the sleeper never woke")
	}
}

// TestBreak7LogLongClaimSleepers: readers asleep (untimed, timed,
// context) while a claim stays open 30 ms (intent stored; the claim saw
// no sleeper, so its commit wakes nobody): each gets the message within a
// few of its claimSleep slices after the commit; readers that came before
// the claim are woken by it.
func TestBreak7LogLongClaimSleepers(t *testing.T) {
	_, l := newLog(t, 512, 0)
	w, _ := l.Writer()
	for round := 0; round < 2; round++ {
		before := round == 1 // readers asleep before the claim
		var rs []*LogReader
		for i := 0; i < 6; i++ {
			r, err := l.Reader(LogNext)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rs = append(rs, r)
		}
		var b []byte
		var err error
		if !before {
			if b, err = w.Claim(40); err != nil {
				t.Fatal(err)
			}
		}
		got := make(chan time.Time, len(rs))
		errs := make(chan error, len(rs))
		for i, r := range rs {
			go func() {
				buf := make([]byte, 64)
				for {
					var err error
					switch i % 3 {
					case 0:
						_, err = r.Copy(buf)
					case 1:
						_, err = r.CopyTimeout(buf, time.Duration(1)<<(i*3))
					case 2:
						var m LogMessage
						m, err = r.ReceiveTimeout(time.Duration(i) * 100 * time.Microsecond)
						if err == nil {
							err = r.Check(m)
						}
					}
					if errors.Is(err, ErrTimeout) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					got <- time.Now()
					return
				}
			}()
		}
		if before {
			b7Sleeping(t, l)
			if b, err = w.Claim(40); err != nil {
				t.Fatal(err)
			}
		}
		for i := range b {
			b[i] = byte(i)
			if i%8 == 0 {
				time.Sleep(3 * time.Millisecond)
			}
		}
		t0 := time.Now()
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		for range rs {
			select {
			case at := <-got:
				if d := at.Sub(t0); d > 50*time.Millisecond {
					t.Errorf("round %d: a reader got the message %v after the commit", round, d)
				}
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: a reader never got the message", round)
			}
		}
	}
}
