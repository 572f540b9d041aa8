package shm

import (
	"context"
	"errors"
	"testing"
	"time"
	"unsafe"
)

// TestBreakSpinIgnoresDeadline: SetSpin accepts up to 1<<30 polls, and the
// spin before the first sleep never looks at the deadline or the context:
// with a large setting a LockTimeout(1ms) or WaitTimeout(1ms) returns only
// when the spin is over (about 30 ns a poll: 4M polls, about 125 ms).
// The README promises that no wait outlives its deadline by more than a
// scheduling delay, however short the timeout.
func TestBreakSpinIgnoresDeadline(t *testing.T) {
	_, _, a := newArea(t)
	_, _, b := newArea(t)
	old := SetSpin(1 << 22)
	defer SetSpin(old)
	if spinBudget(unsafe.Pointer(&a.auto.state)) == 0 {
		t.Skip("no spinning here (one CPU or GOMAXPROCS=1)")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rw.RLock() // a writer waits for it
	defer a.rw.RUnlock()
	b.rw.Lock() // a reader waits for it
	defer b.rw.Unlock()
	ctxWait := func(f func(context.Context) error) func() error {
		return func() error {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(time.Millisecond, cancel)
			return f(ctx)
		}
	}
	cases := []struct {
		name string
		wait func() error
	}{
		{"Mutex.LockTimeout", func() error { return a.mu.LockTimeout(time.Millisecond) }},
		{"Mutex.LockContext(cancelled)", ctxWait(a.mu.LockContext)},
		{"RWMutex.LockTimeout", func() error { return a.rw.LockTimeout(time.Millisecond) }},
		{"RWMutex.RLockTimeout", func() error { return b.rw.RLockTimeout(time.Millisecond) }},
		{"AutoEvent.WaitTimeout", func() error { return a.auto.WaitTimeout(time.Millisecond) }},
		{"ManualEvent.WaitTimeout", func() error { return a.manual.WaitTimeout(time.Millisecond) }},
		{"BusyAutoEvent.WaitTimeout", func() error { return a.bauto.WaitTimeout(time.Millisecond) }},
		{"BusyManualEvent.WaitContext(cancelled)", ctxWait(a.bmanual.WaitContext)},
	}
	for _, c := range cases {
		SetSpin(1 << 22) // also resets the per-word adaptation
		start := time.Now()
		err := c.wait()
		el := time.Since(start)
		if err == nil || errors.Is(err, ErrOwnerDead) {
			t.Errorf("%s: succeeded on something nobody releases", c.name)
			continue
		}
		if el > 50*time.Millisecond {
			t.Errorf("%s with SetSpin(1<<22): returned %v after a 1 ms deadline (%v)", c.name, el, err)
		}
	}
}
