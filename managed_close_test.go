package shm

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestManagedCloseWhileInUse: Close racing every other call never faults;
// calls in progress finish (waits end with ErrClosed) and later calls
// return ErrClosed (or nothing where they return no error).
func TestManagedCloseWhileInUse(t *testing.T) {
	for trial := 0; trial < 20; trial++ {
		c := Config{Name: testName(t), Size: 4096,
			Locks:  []LockSpec{{LockMutex, 0, 64}, {LockRW, 64, 64}},
			Events: []EventKind{EventAuto, EventManual, EventBusyAuto}}
		m, err := c.Create()
		if err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		bad := make(chan error, 64)
		ok := func(err error) bool {
			return err == nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrOwnerDead)
		}
		run := func(f func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					if err := f(); !ok(err) {
						bad <- err
						return
					}
				}
			}()
		}
		run(func() error {
			g, err := m.Lock(0)
			if err == nil {
				g.Bytes()
				g.Unlock()
			}
			return err
		})
		run(func() error {
			g, err := m.RLockTimeout(1, time.Millisecond)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				g.Unlock()
				g.Unlock() // a second Unlock does nothing
			}
			return err
		})
		run(func() error {
			g, err := m.LockTimeout(1, 50*time.Millisecond)
			if g != nil {
				time.Sleep(10 * time.Microsecond)
				g.Unlock()
			}
			return err
		})
		run(func() error {
			ev, err := m.Event(trial % 3)
			if err != nil {
				return err
			}
			ev.Set()
			return ev.WaitTimeout(time.Millisecond)
		})
		run(func() error {
			ev, err := m.Event(0)
			if err != nil {
				return err
			}
			return ev.Wait() // no timeout: Close must end it
		})
		run(func() error {
			_, err := m.LockState(1)
			m.Data()
			m.Creator()
			if _, err := m.EventState(1); !ok(err) {
				return err
			}
			return err
		})
		time.Sleep(time.Duration(trial%5) * time.Millisecond)
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		stop.Store(true)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("calls in progress did not end after Close")
		}
		close(bad)
		for err := range bad {
			t.Fatalf("trial %d: %v", trial, err)
		}
		// After Close.
		if m.Data() != nil {
			t.Fatal("Data after Close is not nil")
		}
		if _, err := m.Lock(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Lock after Close: %v", err)
		}
		if _, err := m.Mutex(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Mutex after Close: %v", err)
		}
		if _, err := m.Event(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Event after Close: %v", err)
		}
		if _, ok := m.TryLock(0); ok {
			t.Fatal("TryLock after Close succeeded")
		}
		if _, err := m.LockState(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("LockState after Close: %v", err)
		}
		if err := m.MarkConsistent(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("MarkConsistent after Close: %v", err)
		}
	}
}

// TestGuardUnlocksOnce: a Guard unlocked twice (an explicit Unlock and a
// deferred one) must not release a lock taken since by another goroutine.
func TestGuardUnlocksOnce(t *testing.T) {
	c := Config{Name: testName(t), Size: 128, Locks: []LockSpec{{LockMutex, 0, 64}, {LockRW, 64, 64}}}
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Read share: this goroutine's guard, unlocked twice, while another
	// goroutine of the process reads.
	g1, err := m.RLock(1)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := m.RLock(1)
	if err != nil {
		t.Fatal(err)
	}
	g1.Unlock()
	g1.Unlock()
	if g, ok := m.TryLock(1); ok {
		g.Unlock()
		t.Fatal("a double Unlock of one read guard released another guard's read share")
	}
	g2.Unlock()
	// Mutex: unlocked twice after another goroutine took it.
	g3, err := m.Lock(0)
	if err != nil {
		t.Fatal(err)
	}
	g3.Unlock()
	g4, err := m.Lock(0)
	if err != nil {
		t.Fatal(err)
	}
	g3.Unlock()
	if g, ok := m.TryLock(0); ok {
		g.Unlock()
		t.Fatal("a second Unlock of a guard released the lock another guard holds")
	}
	g4.Unlock()
	if g3.Bytes() != nil {
		t.Error("Bytes of an unlocked guard is not nil")
	}
}
