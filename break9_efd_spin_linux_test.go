//go:build linux

package shm

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func b9EFD(t *testing.T, kind EventKind) (*Managed, *EventFD) {
	t.Helper()
	cfg := Config{Name: testName(t), Size: 64}
	cfg.AddEvent(kind)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ev, err := m.Event(0)
	if err != nil {
		t.Fatal(err)
	}
	return m, ev.(*EventFD)
}

// TestBreak9EFDCloseDuringSpin: a Wait (no deadline) spinning with a large
// SetSpin when the Managed is closed must end with ErrClosed promptly.
func TestBreak9EFDCloseDuringSpin(t *testing.T) {
	for _, kind := range []EventKind{EventFDAuto, EventFDManual} {
		old := SetSpin(1 << 24)
		m, e := b9EFD(t, kind)
		if fullSpin() == 0 {
			SetSpin(old)
			t.Skip("no spinning here")
		}
		done := make(chan error, 1)
		go func() { done <- e.Wait() }()
		time.Sleep(5 * time.Millisecond)
		start := time.Now()
		m.Close()
		closeTook := time.Since(start)
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("kind %v: Wait still running 10 s after Close", kind)
		}
		el := time.Since(start)
		SetSpin(old)
		t.Logf("kind %v: Close took %v, Wait returned %v after %v", kind, closeTook, err, el)
		if !errors.Is(err, ErrClosed) {
			t.Errorf("kind %v: Wait returned %v after Close, want ErrClosed", kind, err)
		}
		if el > 300*time.Millisecond {
			t.Errorf("kind %v: Wait ended %v after Close (spinning with SetSpin(1<<24) ignores Close)", kind, el)
		}
	}
}

// TestBreak9EFDCancelDuringSpin: a context cancelled while an EventFD
// waiter spins; how late does WaitContext return?
func TestBreak9EFDCancelDuringSpin(t *testing.T) {
	for _, kind := range []EventKind{EventFDAuto, EventFDManual} {
		_, e := b9EFD(t, kind)
		var worst time.Duration
		for i := 0; i < 50; i++ {
			ctx, cancel := context.WithCancel(context.Background())
			var at time.Time
			time.AfterFunc(time.Duration(i%5)*10*time.Microsecond, func() { at = time.Now(); cancel() })
			err := e.WaitContext(ctx)
			late := time.Since(at)
			if err == nil {
				t.Fatalf("kind %v: WaitContext succeeded on an event nobody set", kind)
			}
			worst = max(worst, late)
		}
		t.Logf("kind %v: worst lateness after cancel %v", kind, worst)
		// EventFD waits see a cancellation only at the end of a ctxSlice
		// poll (no watcher wakes them): bounded, but about 20 ms late.
		if worst > 250*time.Millisecond {
			t.Errorf("kind %v: WaitContext returned %v after its cancellation", kind, worst)
		}
		// timeouts
		var worstT time.Duration
		for _, d := range []time.Duration{0, time.Microsecond, 50 * time.Microsecond, time.Millisecond} {
			for i := 0; i < 20; i++ {
				start := time.Now()
				err := e.WaitTimeout(d)
				if !errors.Is(err, ErrTimeout) {
					t.Fatalf("WaitTimeout(%v) = %v", d, err)
				}
				worstT = max(worstT, time.Since(start)-d)
			}
		}
		t.Logf("kind %v: worst lateness after timeout %v", kind, worstT)
		if worstT > 250*time.Millisecond {
			t.Errorf("kind %v: WaitTimeout returned %v late", kind, worstT)
		}
		old := SetSpin(1 << 24)
		for _, d := range []time.Duration{0, time.Microsecond, 50 * time.Microsecond} {
			start := time.Now()
			err := e.WaitTimeout(d)
			late := time.Since(start) - d
			t.Logf("kind %v SetSpin(1<<24): WaitTimeout(%v) %v late %v", kind, d, err, late)
			if late > 20*time.Millisecond {
				t.Errorf("kind %v SetSpin(1<<24): WaitTimeout(%v) %v late", kind, d, late)
			}
		}
		SetSpin(old)
	}
}

// TestBreak9EFDClosedWaiterStealsSet: the eventfd is shared with other
// processes (each holds a descriptor of the same eventfd). A waiter whose
// Managed was closed keeps spinning on it, and takes a Set another process
// makes after Close: Wait returns nil after Close returned, and the Set is
// gone for the live waiters. (dup models the other process's descriptor.)
func TestBreak9EFDClosedWaiterStealsSet(t *testing.T) {
	t.Run("spin1<<24", func(t *testing.T) { b9ClosedSteal(t, 1<<24) })
	t.Run("defaultSpin", func(t *testing.T) { b9ClosedSteal(t, -1) })
}

func b9ClosedSteal(t *testing.T, spin int) {
	old := SetSpin(spin)
	defer SetSpin(old)
	m, e := b9EFD(t, EventFDAuto)
	if fullSpin() == 0 {
		t.Skip("no spinning here")
	}
	other, err := unix.Dup(e.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other)
	done := make(chan error, 1)
	go func() { done <- e.Wait() }()
	time.Sleep(5 * time.Millisecond)
	m.Close()
	time.Sleep(10 * time.Millisecond)
	select {
	case err := <-done:
		t.Skipf("Wait already ended (%v) 10 ms after Close", err)
	default:
	}
	if _, err := unix.Write(other, efdOne[:]); err != nil {
		t.Fatal(err)
	}
	err = <-done
	var buf [8]byte
	_, rerr := unix.Read(other, buf[:])
	t.Logf("Wait after Close: %v; the other process's read of the counter: %v", err, rerr)
	if err == nil && rerr == unix.EAGAIN {
		t.Errorf("a Wait on a closed Managed took a Set made after Close (returned nil); live waiters lost it")
	}
}
