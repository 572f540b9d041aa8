package shm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// area is the layout the primitive tests share between processes.
type area struct {
	mu      Mutex
	rw      RWMutex
	auto    AutoEvent
	manual  ManualEvent
	bauto   BusyAutoEvent
	bmanual BusyManualEvent
	counter uint64 // guarded by mu or rw
	a, b    uint64 // kept equal by writers of rw
	inside  int32  // readers inside rw at once
	woken   int32  // event waiters released
	ready   int32  // children ready
}

func newArea(t testing.TB) (string, *Segment, *area) {
	t.Helper()
	name := testName(t)
	seg, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	a, err := View[area](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return name, seg, a
}

// openArea is the child's side of newArea.
func openArea(name string) (*Segment, *area, error) {
	seg, err := Open(name)
	if err != nil {
		return nil, nil, err
	}
	a, err := View[area](seg.Bytes())
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, a, nil
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func init() {
	// args: name, kind ("mutex" or "rw"), increments
	registerChild("increment", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		n := atoi(args[2])
		var wg sync.WaitGroup
		for g := 0; g < 2; g++ { // two goroutines per process
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n/2; i++ {
					if args[1] == "mutex" {
						a.mu.Lock()
						a.counter++
						a.mu.Unlock()
					} else {
						a.rw.Lock()
						a.counter++
						a.rw.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		return nil
	})
}

func TestMutexProcessesCount(t *testing.T) {
	for _, kind := range []string{"mutex", "rw"} {
		t.Run(kind, func(t *testing.T) {
			name, _, a := newArea(t)
			const procs, each = 4, 20000
			var cs []*child
			for i := 0; i < procs; i++ {
				cs = append(cs, startChild(t, "increment", name, kind, strconv.Itoa(each)))
			}
			for _, c := range cs {
				c.wait(60 * time.Second)
			}
			if got := atomic.LoadUint64(&a.counter); got != procs*each {
				t.Fatalf("counter = %d, want %d", got, procs*each)
			}
		})
	}
}

func TestMutexGoroutines(t *testing.T) {
	_, _, a := newArea(t)
	var wg sync.WaitGroup
	const gs, n = 8, 5000
	for g := 0; g < gs; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				a.mu.Lock()
				a.counter++
				a.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if a.counter != gs*n {
		t.Fatalf("counter = %d, want %d", a.counter, gs*n)
	}
}

func TestMutexTryLockTimeoutContext(t *testing.T) {
	var m Mutex
	if !m.TryLock() {
		t.Fatal("TryLock on a free mutex failed")
	}
	if m.TryLock() {
		t.Fatal("TryLock on a held mutex succeeded")
	}
	checkTimeoutAndCancel(t, "LockTimeout", m.LockTimeout, m.LockContext)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if err := m.LockContext(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockContext with deadline: %v", err)
	}
	m.Unlock()
	if err := m.LockTimeout(0); err != nil {
		t.Fatalf("LockTimeout(0) on free mutex: %v", err)
	}
	m.Unlock()
	m.Unlock() // unlocking an unlocked mutex is a no-op
	if m.state != 0 {
		t.Fatalf("state after double unlock = %#x", m.state)
	}
}

func TestMutexWakesWaiter(t *testing.T) {
	var m Mutex
	m.Lock()
	got := make(chan struct{})
	go func() {
		m.Lock()
		close(got)
		m.Unlock()
	}()
	time.Sleep(50 * time.Millisecond) // let it sleep in the kernel
	m.Unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by Unlock")
	}
}

// checkTimeoutAndCancel checks a wait that cannot succeed: the timed form
// returns ErrTimeout (which is also os.ErrDeadlineExceeded) after about its
// timeout, and the context form returns context.Canceled promptly once the
// context is cancelled.
func checkTimeoutAndCancel(t *testing.T, what string, timed func(time.Duration) error, withCtx func(context.Context) error) {
	t.Helper()
	const d = 40 * time.Millisecond
	start := time.Now()
	err := timed(d)
	el := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: %v, want ErrTimeout", what, err)
	}
	if el < d || el > 2*time.Second {
		t.Fatalf("%s(%v) returned after %v", what, d, el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- withCtx(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: %v", what, err)
		}
	case <-time.After(time.Second):
		t.Fatalf("%s did not return promptly after its context was cancelled", what)
	}
}

func init() {
	// args: name, what ("mutex", "rw", "rlock"): lock, say so, then wait to be killed.
	registerChild("hold", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		switch args[1] {
		case "mutex":
			a.mu.Lock()
		case "rw":
			a.rw.Lock()
		case "rlock":
			a.rw.RLock()
		}
		atomic.AddInt32(&a.ready, 1)
		time.Sleep(time.Minute)
		return fmt.Errorf("not killed")
	})
}

func waitReady(t *testing.T, a *area, n int32) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadInt32(&a.ready) < n {
		if time.Now().After(deadline) {
			t.Fatalf("children not ready: %d of %d", atomic.LoadInt32(&a.ready), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOwnerDeath(t *testing.T) {
	for _, what := range []string{"mutex", "rw", "rlock"} {
		t.Run(what, func(t *testing.T) {
			name, _, a := newArea(t)
			c := startChild(t, "hold", name, what)
			waitReady(t, a, 1)
			lock := func(d time.Duration) error {
				if what == "mutex" {
					return a.mu.LockTimeout(d)
				}
				return a.rw.LockTimeout(d)
			}
			if err := lock(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
				t.Fatalf("lock held by a live process: %v, want ErrTimeout", err)
			}
			c.kill()
			died := time.Now()
			err := lock(5 * time.Second)
			took := time.Since(died)
			if what == "rlock" {
				// A dead reader's share is released silently.
				if err != nil {
					t.Fatalf("lock after reader died: %v", err)
				}
			} else {
				if !errors.Is(err, ErrOwnerDead) {
					t.Fatalf("lock after owner died: %v, want ErrOwnerDead", err)
				}
				if !a.mu.OwnerDied() && !a.rw.OwnerDied() {
					t.Fatal("OwnerDied false after takeover")
				}
			}
			t.Logf("recovered %v after the kill", took)
			if took > time.Second {
				t.Fatalf("recovery took %v, want < 1s", took)
			}
			// The mark stays until MarkConsistent.
			if what == "mutex" {
				a.mu.Unlock()
				if err := a.mu.LockTimeout(time.Second); !errors.Is(err, ErrOwnerDead) {
					t.Fatalf("relock before MarkConsistent: %v, want ErrOwnerDead", err)
				}
				a.mu.MarkConsistent()
				a.mu.Unlock()
				if err := a.mu.LockTimeout(time.Second); err != nil {
					t.Fatalf("relock after MarkConsistent: %v", err)
				}
				a.mu.Unlock()
			} else {
				a.rw.MarkConsistent()
				a.rw.Unlock()
				if err := a.rw.RLockTimeout(time.Second); err != nil {
					t.Fatalf("RLock after recovery: %v", err)
				}
				a.rw.RUnlock()
			}
		})
	}
}

func TestRWMutexReaderRecoversDeadWriter(t *testing.T) {
	name, _, a := newArea(t)
	c := startChild(t, "hold", name, "rw")
	waitReady(t, a, 1)
	if a.rw.TryRLock() {
		t.Fatal("TryRLock succeeded while a writer holds the lock")
	}
	c.kill()
	err := a.rw.RLockTimeout(5 * time.Second)
	if !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("RLock after writer died: %v, want ErrOwnerDead", err)
	}
	a.rw.RUnlock()
	if err := a.rw.LockTimeout(time.Second); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Lock after recovery, before MarkConsistent: %v", err)
	}
	a.rw.MarkConsistent()
	a.rw.Unlock()
}
