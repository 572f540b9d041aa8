//go:build linux

package shm

import (
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	// args: name: RLock (a writer holds the lock), to be killed waiting.
	registerChild("brk5-rwait", func(args []string) error {
		seg, a, err := openTurnArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		atomic.AddInt32(&a.ready, 1)
		a.rw.RLock()
		atomic.AddInt64(&a.nR, 1)
		time.Sleep(time.Minute)
		return nil
	})
	// args: name: once ready is counted and stop set, take the write lock
	// once and report how long it took (in res, µs).
	registerChild("brk5-lockonce", func(args []string) error {
		seg, a, err := openTurnArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		atomic.AddInt32(&a.ready, 1)
		for atomic.LoadInt32(&a.stop) == 0 {
			time.Sleep(20 * time.Microsecond)
		}
		start := time.Now()
		if err := a.rw.LockTimeout(5 * time.Second); err != nil {
			return err
		}
		atomic.StoreInt32(&a.res, int32(time.Since(start)/time.Microsecond))
		a.rw.Unlock()
		return nil
	})
}

// lockOnce runs brk5-lockonce, calling before once it is ready to lock,
// and returns how long its LockTimeout took.
func lockOnce(t *testing.T, segName string, a *turnArea, before func()) time.Duration {
	atomic.StoreInt32(&a.ready, 0)
	atomic.StoreInt32(&a.stop, 0)
	atomic.StoreInt32(&a.res, -1)
	c := startChild(t, "brk5-lockonce", segName)
	waitCount(t, &a.ready, 1, 20*time.Second)
	before()
	atomic.StoreInt32(&a.stop, 1)
	c.wait(10 * time.Second)
	return time.Duration(atomic.LoadInt32(&a.res)) * time.Microsecond
}

// TestBreak5RWTurnDamaged: whatever the turn word holds (huge, negative,
// past, far future, just inside or outside the longest turn), a writer in
// another process is never held up for more than a turn can last (10 ms
// ahead at most), never hangs, and TryLock fails only for a value that
// could be a live turn.
func TestBreak5RWTurnDamaged(t *testing.T) {
	segName, a := newTurnArea(t)
	now := func() int64 { return time.Now().UnixNano() }
	cases := []struct {
		name string
		val  func() int64
		live bool // a turn that may still last
	}{
		{"max", func() int64 { return math.MaxInt64 }, false},
		{"min", func() int64 { return math.MinInt64 }, false},
		{"-1", func() int64 { return -1 }, false},
		{"1", func() int64 { return 1 }, false},
		{"past", func() int64 { return now() - int64(time.Millisecond) }, false},
		{"hour ago", func() int64 { return now() - int64(time.Hour) }, false},
		{"hour ahead", func() int64 { return now() + int64(time.Hour) }, false},
		// 5 ms beyond, not 1: the value comes nearer while the other
		// process gets round to locking (under load, more than 1 ms
		// later: it then found the value inside the longest turn, and
		// rightly waited for it).
		{"just beyond", func() int64 { return now() + int64(2*turnLength) + int64(5*time.Millisecond) }, false},
		{"longest", func() int64 { return now() + int64(2*turnLength) - int64(100*time.Microsecond) }, true},
		{"turn", func() int64 { return now() + int64(turnLength) }, true},
		{"min+now", func() int64 { return math.MinInt64 + now() }, false},
	}
	var worst time.Duration
	for _, c := range cases {
		atomic.StoreInt64(&a.rw.turn, c.val())
		got := a.rw.TryLock()
		if got {
			a.rw.Unlock()
		}
		if got == c.live {
			t.Errorf("%s: TryLock %v", c.name, got)
		}
		d := lockOnce(t, segName, a, func() { atomic.StoreInt64(&a.rw.turn, c.val()) })
		t.Logf("%s: writer waited %v", c.name, d)
		if d > worst {
			worst = d
		}
		limit := 3 * time.Millisecond
		if c.live {
			limit = 2*turnLength + 5*time.Millisecond
		}
		if d > limit {
			t.Errorf("%s: the writer waited %v (limit %v)", c.name, d, limit)
		}
		// LockTimeout honours a deadline shorter than the turn.
		atomic.StoreInt64(&a.rw.turn, c.val())
		start := time.Now()
		err := a.rw.LockTimeout(time.Millisecond)
		el := time.Since(start)
		if err == nil {
			a.rw.Unlock()
		}
		if c.live && err == nil {
			t.Errorf("%s: LockTimeout(1ms) got the lock during a turn", c.name)
		}
		if el > 5*time.Millisecond {
			t.Errorf("%s: LockTimeout(1ms) took %v", c.name, el)
		}
		atomic.StoreInt64(&a.rw.turn, 0)
	}
	t.Logf("worst writer wait %v", worst)
}

// TestBreak5RWTurnReaderKilledInTurn: a reader SIGKILLed while it waits
// (and keeps its turn asked) behind a writer delays the writers after it
// by at most one turn, once.
func TestBreak5RWTurnReaderKilledInTurn(t *testing.T) {
	segName, a := newTurnArea(t)
	var worst time.Duration
	for trial := 0; trial < 4; trial++ {
		atomic.StoreInt32(&a.ready, 0)
		atomic.StoreInt32(&a.res, 0)
		a.rw.Lock()
		r := startChild(t, "brk5-rwait", segName)
		waitCount(t, &a.ready, 1, 20*time.Second)
		// Wait for it to ask its turn, and past a refresh or two.
		deadline := time.Now().Add(5 * time.Second)
		for atomic.LoadInt64(&a.rw.turn) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the waiting reader never asked its turn")
			}
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(time.Duration(trial) * 2 * time.Millisecond)
		d := lockOnce(t, segName, a, func() {
			r.kill()
			if atomic.LoadInt64(&a.nR) != 0 {
				t.Error("the reader got in while the writer held the lock")
			}
			a.rw.Unlock()
		})
		if d > worst {
			worst = d
		}
		if d > 2*turnLength+3*time.Millisecond {
			t.Errorf("trial %d: a writer waited %v after the reader died in its turn", trial, d)
		}
		if d := lockOnce(t, segName, a, func() {}); d > 3*time.Millisecond {
			t.Errorf("trial %d: the next writer waited %v too", trial, d)
		}
		t.Logf("trial %d: first writer waited %v", trial, d)
	}
	t.Logf("worst writer wait after a reader died in its turn: %v", worst)
}
