package shm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memEvents are the event kinds that live entirely in shared memory.
var memEvents = []EventKind{EventAuto, EventManual, EventBusyAuto, EventBusyManual}

func (a *area) event(k EventKind) Event {
	switch k {
	case EventAuto:
		return &a.auto
	case EventManual:
		return &a.manual
	case EventBusyAuto:
		return &a.bauto
	case EventBusyManual:
		return &a.bmanual
	}
	panic("no such event in area: " + k.String())
}

func isAuto(k EventKind) bool { return k == EventAuto || k == EventBusyAuto || k == EventFDAuto }

func init() {
	// args: name, kind: wait once for the event, count the release, exit.
	registerChild("event-wait", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		ev := a.event(EventKind(atoi(args[1])))
		atomic.AddInt32(&a.ready, 1)
		if err := ev.WaitTimeout(30 * time.Second); err != nil {
			return err
		}
		atomic.AddInt32(&a.woken, 1)
		return nil
	})
}

func waitCount(t *testing.T, p *int32, want int32, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for atomic.LoadInt32(p) < want {
		if time.Now().After(deadline) {
			t.Fatalf("count = %d, want %d within %v", atomic.LoadInt32(p), want, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEventProcesses: k waiters in k processes. An auto-reset event releases
// exactly one per Set; a manual-reset event releases all with one Set.
func TestEventProcesses(t *testing.T) {
	const k = 4
	for _, kind := range memEvents {
		t.Run(kind.String(), func(t *testing.T) {
			name, _, a := newArea(t)
			ev := a.event(kind)
			var cs []*child
			for i := 0; i < k; i++ {
				cs = append(cs, startChild(t, "event-wait", name, strconv.Itoa(int(kind))))
			}
			waitCount(t, &a.ready, k, 20*time.Second)
			time.Sleep(100 * time.Millisecond) // let them go to sleep
			if n := atomic.LoadInt32(&a.woken); n != 0 {
				t.Fatalf("%d waiters released before any Set", n)
			}
			if isAuto(kind) {
				for i := int32(1); i <= k; i++ {
					ev.Set()
					waitCount(t, &a.woken, i, 10*time.Second)
					time.Sleep(50 * time.Millisecond)
					if n := atomic.LoadInt32(&a.woken); n != i {
						t.Fatalf("after %d Sets, %d waiters released", i, n)
					}
				}
			} else {
				ev.Set()
				waitCount(t, &a.woken, k, 10*time.Second)
			}
			for _, c := range cs {
				c.wait(10 * time.Second)
			}
			if isAuto(kind) {
				// Every Set was consumed.
				if err := ev.WaitTimeout(0); !errors.Is(err, ErrTimeout) {
					t.Fatalf("auto event still set after its waiters took it: %v", err)
				}
			} else {
				if err := ev.WaitTimeout(0); err != nil {
					t.Fatalf("manual event not set: %v", err)
				}
				ev.Reset()
				if err := ev.WaitTimeout(20 * time.Millisecond); !errors.Is(err, ErrTimeout) {
					t.Fatalf("Wait after Reset: %v, want ErrTimeout", err)
				}
			}
		})
	}
}

func TestEventSemantics(t *testing.T) {
	for _, kind := range memEvents {
		t.Run(kind.String(), func(t *testing.T) {
			_, _, a := newArea(t)
			ev := a.event(kind)
			// A Set with nobody waiting is not lost.
			ev.Set()
			if err := ev.WaitTimeout(0); err != nil {
				t.Fatalf("Wait after Set: %v", err)
			}
			if isAuto(kind) {
				if err := ev.WaitTimeout(0); !errors.Is(err, ErrTimeout) {
					t.Fatalf("second Wait after one Set: %v, want ErrTimeout", err)
				}
			} else {
				if err := ev.WaitTimeout(0); err != nil {
					t.Fatalf("manual event cleared by Wait: %v", err)
				}
				ev.Reset()
			}
			checkTimeoutAndCancel(t, "WaitTimeout", ev.WaitTimeout, ev.WaitContext)
			// Many goroutines of one process wait at once.
			const gs = 16
			var wg sync.WaitGroup
			var released atomic.Int32
			for i := 0; i < gs; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if ev.WaitTimeout(20*time.Second) == nil {
						released.Add(1)
					}
				}()
			}
			time.Sleep(50 * time.Millisecond)
			if isAuto(kind) {
				for i := int32(1); i <= gs; i++ {
					ev.Set()
					deadline := time.Now().Add(10 * time.Second)
					for released.Load() < i && time.Now().Before(deadline) {
						time.Sleep(100 * time.Microsecond)
					}
					if released.Load() != i {
						t.Fatalf("after %d Sets, %d released", i, released.Load())
					}
				}
			} else {
				ev.Set()
			}
			wg.Wait()
			if released.Load() != gs {
				t.Fatalf("%d of %d goroutines released", released.Load(), gs)
			}
		})
	}
}

// TestEventOtherGoroutinesRun: a goroutine asleep in Wait does not hold up
// the rest of the process, even with GOMAXPROCS=1.
func TestEventOtherGoroutinesRun(t *testing.T) {
	_, _, a := newArea(t)
	old := SetSpin(0)
	defer SetSpin(old)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const sleepers = 4
	var wg sync.WaitGroup
	for i := 0; i < sleepers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); a.manual.WaitTimeout(10 * time.Second) }()
	}
	// With one P, a waiter that kept it while asleep in the kernel would
	// stop this goroutine (and timers) until its 10 s timeout.
	start := time.Now()
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	el := time.Since(start)
	a.manual.Set()
	wg.Wait()
	if el > 2*time.Second {
		t.Fatalf("with %d goroutines asleep in Wait and GOMAXPROCS 1, other goroutines waited %v", sleepers, el)
	}
}

func init() {
	// args: name, rounds: keep a == b under the write lock.
	registerChild("rw-writer", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		for i := 0; i < atoi(args[1]); i++ {
			a.rw.Lock()
			atomic.AddUint64(&a.a, 1)
			time.Sleep(time.Microsecond)
			atomic.AddUint64(&a.b, 1)
			a.rw.Unlock()
		}
		return nil
	})
	// args: name, rounds: check a == b under the read lock.
	registerChild("rw-reader", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		for i := 0; i < atoi(args[1]); i++ {
			a.rw.RLock()
			x, y := atomic.LoadUint64(&a.a), atomic.LoadUint64(&a.b)
			a.rw.RUnlock()
			if x != y {
				return fmt.Errorf("reader saw a=%d b=%d", x, y)
			}
		}
		return nil
	})
	// args: name: hold a read lock until another reader holds one too.
	registerChild("rw-parallel", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		a.rw.RLock()
		defer a.rw.RUnlock()
		atomic.AddInt32(&a.inside, 1)
		deadline := time.Now().Add(20 * time.Second)
		for atomic.LoadInt32(&a.inside) < 2 {
			if time.Now().After(deadline) {
				return errors.New("the other reader never got in while this one held the read lock")
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	})
}

func TestRWMutexConsistency(t *testing.T) {
	name, _, a := newArea(t)
	cs := []*child{
		startChild(t, "rw-writer", name, "3000"),
		startChild(t, "rw-writer", name, "3000"),
		startChild(t, "rw-reader", name, "20000"),
		startChild(t, "rw-reader", name, "20000"),
	}
	for _, c := range cs {
		c.wait(60 * time.Second)
	}
	if a.a != 6000 || a.b != 6000 {
		t.Fatalf("a=%d b=%d, want 6000", a.a, a.b)
	}
}

func TestRWMutexParallelReaders(t *testing.T) {
	name, _, _ := newArea(t)
	c1 := startChild(t, "rw-parallel", name)
	c2 := startChild(t, "rw-parallel", name)
	c1.wait(30 * time.Second)
	c2.wait(30 * time.Second)
}

// TestRWMutexWriterNotStarved: readers that keep the lock read-held all the
// time (their holds overlap) do not keep a writer out.
func TestRWMutexWriterNotStarved(t *testing.T) {
	_, _, a := newArea(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				a.rw.RLock()
				time.Sleep(200 * time.Microsecond)
				a.rw.RUnlock()
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 5; i++ {
		if err := a.rw.LockTimeout(5 * time.Second); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("writer starved by readers: %v", err)
		}
		a.rw.Unlock()
	}
	stop.Store(true)
	wg.Wait()
}

func TestRWMutexTryAndTimeouts(t *testing.T) {
	var rw RWMutex
	if !rw.TryRLock() || !rw.TryRLock() {
		t.Fatal("TryRLock on a free lock failed")
	}
	if rw.TryLock() {
		t.Fatal("TryLock succeeded with readers in")
	}
	if err := rw.LockTimeout(30 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("LockTimeout with readers in: %v", err)
	}
	// A writer that timed out must not keep readers out.
	if !rw.TryRLock() {
		t.Fatal("TryRLock failed after a writer gave up")
	}
	rw.RUnlock()
	rw.RUnlock()
	rw.RUnlock()
	if !rw.TryLock() {
		t.Fatal("TryLock on a free lock failed")
	}
	if rw.TryRLock() {
		t.Fatal("TryRLock succeeded while write-locked")
	}
	if err := rw.RLockTimeout(30 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RLockTimeout while write-locked: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := rw.RLockContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RLockContext while write-locked: %v", err)
	}
	rw.Unlock()
	if err := rw.RLockTimeout(0); err != nil {
		t.Fatalf("RLockTimeout on free lock: %v", err)
	}
	rw.RUnlock()
	for i, s := range rw.slots {
		if s&rCountMask != 0 { // free: 0, or marked free by a writer
			t.Fatalf("slot %d = %#x after all unlocks", i, s)
		}
	}
}
