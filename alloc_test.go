package shm

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Locking, unlocking, setting and waiting allocate nothing, on the fast
// paths and on the paths that spin or sleep in the kernel. AllocsPerRun
// counts the whole process's allocations, so the helper goroutines that
// make the waits block are allocation-free too.

type allocPrims struct {
	mu  Mutex
	rw  RWMutex
	ae  AutoEvent
	me  ManualEvent
	bae BusyAutoEvent
	bme BusyManualEvent
}

func newAllocPrims(t *testing.T) *allocPrims {
	seg, err := Create(testName(t), 4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	p, err := View[allocPrims](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func assertNoAllocs(t *testing.T, name string, f func()) {
	t.Helper()
	if n := testing.AllocsPerRun(100, f); n != 0 {
		t.Errorf("%s: %v allocations per run, want 0", name, n)
	}
}

func TestNoAllocsFastPaths(t *testing.T) {
	p := newAllocPrims(t)
	bg := context.Background()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	const long = time.Minute
	cases := []struct {
		name string
		f    func()
	}{
		{"Mutex.Lock+Unlock", func() { p.mu.Lock(); p.mu.Unlock() }},
		{"Mutex.TryLock+Unlock", func() { p.mu.TryLock(); p.mu.Unlock() }},
		{"Mutex.LockTimeout", func() { p.mu.LockTimeout(long); p.mu.Unlock() }},
		{"Mutex.LockContext", func() { p.mu.LockContext(ctx); p.mu.Unlock() }},
		{"RWMutex.RLock+RUnlock", func() { p.rw.RLock(); p.rw.RUnlock() }},
		{"RWMutex.RLock nested", func() { p.rw.RLock(); p.rw.RLock(); p.rw.RUnlock(); p.rw.RUnlock() }},
		{"RWMutex.TryRLock", func() { p.rw.TryRLock(); p.rw.RUnlock() }},
		{"RWMutex.RLockTimeout", func() { p.rw.RLockTimeout(long); p.rw.RUnlock() }},
		{"RWMutex.RLockContext", func() { p.rw.RLockContext(ctx); p.rw.RUnlock() }},
		{"RWMutex.Lock+Unlock", func() { p.rw.Lock(); p.rw.Unlock() }},
		{"RWMutex.TryLock", func() { p.rw.TryLock(); p.rw.Unlock() }},
		{"RWMutex.LockTimeout", func() { p.rw.LockTimeout(long); p.rw.Unlock() }},
		{"RWMutex.LockContext", func() { p.rw.LockContext(ctx); p.rw.Unlock() }},
		{"AutoEvent.Set+Wait", func() { p.ae.Set(); p.ae.Wait() }},
		{"AutoEvent.Set+WaitTimeout", func() { p.ae.Set(); p.ae.WaitTimeout(long) }},
		{"AutoEvent.Set+WaitContext", func() { p.ae.Set(); p.ae.WaitContext(ctx) }},
		{"AutoEvent.Set+Reset", func() { p.ae.Set(); p.ae.Reset() }},
		{"ManualEvent.Set+Wait+Reset", func() { p.me.Set(); p.me.Wait(); p.me.Reset() }},
		{"ManualEvent.WaitTimeout", func() { p.me.Set(); p.me.WaitTimeout(long); p.me.Reset() }},
		{"ManualEvent.WaitContext", func() { p.me.Set(); p.me.WaitContext(ctx); p.me.Reset() }},
		{"BusyAutoEvent.Set+Wait", func() { p.bae.Set(); p.bae.Wait() }},
		{"BusyAutoEvent.WaitTimeout", func() { p.bae.Set(); p.bae.WaitTimeout(long) }},
		{"BusyAutoEvent.WaitContext", func() { p.bae.Set(); p.bae.WaitContext(ctx) }},
		{"BusyManualEvent.Set+Wait+Reset", func() { p.bme.Set(); p.bme.Wait(); p.bme.Reset() }},
	}
	for _, c := range cases {
		assertNoAllocs(t, c.name, c.f)
	}
}

// allocHelper is the shared part of TestNoAllocsBlocking's segment: the
// requests the test makes of its helper process.
type allocHelper struct {
	allocPrims
	busy    uint32 // 1: set bae after a pause; 2: set bme after a pause
	hold    uint32 // 1: lock mu and keep it until a waiter marked it; 2: the same with rw and a reader; 3: read-lock rw until a writer waits
	holding uint32 // mu is held for the test
	quit    uint32
}

func init() {
	registerChild("alloc-helper", func(args []string) error {
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		h, err := View[allocHelper](seg.Bytes())
		if err != nil {
			return err
		}
		deadline := time.Now().Add(time.Minute)
		for i := 0; atomic.LoadUint32(&h.quit) == 0; i++ {
			if atomic.LoadUint32(&h.ae.state) >= evWaiter {
				h.ae.Set()
			}
			if atomic.LoadUint32(&h.me.waiters) != 0 && !h.me.IsSet() {
				h.me.Set()
			}
			if b := atomic.LoadUint32(&h.busy); b != 0 {
				// Long enough for the waiter to be past spinning.
				for t := time.Now(); time.Since(t) < 100*time.Microsecond; {
				}
				atomic.StoreUint32(&h.busy, 0)
				if b == 1 {
					h.bae.Set()
				} else {
					h.bme.Set()
				}
			}
			switch atomic.LoadUint32(&h.hold) {
			case 1:
				h.mu.Lock()
				atomic.StoreUint32(&h.holding, 1)
				for atomic.LoadUint64(&h.mu.state)&mWaiters == 0 && atomic.LoadUint32(&h.quit) == 0 {
				}
				atomic.StoreUint32(&h.holding, 0)
				atomic.StoreUint32(&h.hold, 0)
				h.mu.Unlock()
			case 2:
				h.rw.Lock()
				atomic.StoreUint32(&h.holding, 1)
				for atomic.LoadUint64(&h.rw.w.state)&mReaders == 0 && atomic.LoadUint32(&h.quit) == 0 {
				}
				atomic.StoreUint32(&h.holding, 0)
				atomic.StoreUint32(&h.hold, 0)
				h.rw.Unlock()
			case 3:
				h.rw.RLock()
				atomic.StoreUint32(&h.holding, 1)
				for atomic.LoadUint64(&h.rw.w.state)&mOwnerMask == 0 && atomic.LoadUint32(&h.quit) == 0 {
				}
				// Long enough for the writer to be past spinning.
				for t := time.Now(); time.Since(t) < 100*time.Microsecond; {
				}
				atomic.StoreUint32(&h.holding, 0)
				atomic.StoreUint32(&h.hold, 0)
				h.rw.RUnlock()
			}
			if i%4096 == 0 && time.Now().After(deadline) {
				return errors.New("the test did not finish within a minute")
			}
		}
		return nil
	})
}

// TestNoAllocsBlocking makes every wait block: a helper process sets the
// event (or unlocks the mutex) once the waiter has registered (for busy
// events: after a pause long enough for the waiter to be past spinning).
// The helper is another process because AllocsPerRun runs with GOMAXPROCS
// 1, and a goroutine asleep in the kernel keeps the only P. Each case runs
// with spinning off (straight to the kernel) and with the default spin.
func TestNoAllocsBlocking(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	h, err := View[allocHelper](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, "alloc-helper", name)
	defer func() {
		atomic.StoreUint32(&h.quit, 1)
		c.wait(10 * time.Second)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bg := context.Background()
	const long = time.Minute
	type waitCase struct {
		name string
		wait func()
	}
	eventCases := func(e Event) []waitCase {
		return []waitCase{
			{"Wait", func() { e.Wait() }},
			{"WaitTimeout", func() { e.WaitTimeout(long) }},
			{"WaitContext(Background)", func() { e.WaitContext(bg) }},
			{"WaitContext(cancellable)", func() { e.WaitContext(ctx) }},
		}
	}
	for _, spin := range []int{0, -1} {
		old := SetSpin(spin)
		setting := map[int]string{0: ", spin off", -1: ", default spin"}[spin]
		for _, c := range eventCases(&h.ae) {
			assertNoAllocs(t, "AutoEvent."+c.name+" blocking"+setting, c.wait)
		}
		for _, c := range eventCases(&h.me) {
			assertNoAllocs(t, "ManualEvent."+c.name+" blocking"+setting, func() {
				c.wait()
				h.me.Reset()
			})
		}
		for _, c := range eventCases(&h.bae) {
			assertNoAllocs(t, "BusyAutoEvent."+c.name+" blocking"+setting, func() {
				atomic.StoreUint32(&h.busy, 1)
				c.wait()
			})
		}
		for _, c := range eventCases(&h.bme) {
			assertNoAllocs(t, "BusyManualEvent."+c.name+" blocking"+setting, func() {
				atomic.StoreUint32(&h.busy, 2)
				c.wait()
				h.bme.Reset()
			})
		}
		for _, c := range []waitCase{
			{"Lock", func() { h.mu.Lock() }},
			{"LockTimeout", func() { h.mu.LockTimeout(long) }},
			{"LockContext(Background)", func() { h.mu.LockContext(bg) }},
			{"LockContext(cancellable)", func() { h.mu.LockContext(ctx) }},
		} {
			assertNoAllocs(t, "Mutex."+c.name+" blocking"+setting, func() {
				atomic.StoreUint32(&h.hold, 1)
				for atomic.LoadUint32(&h.holding) == 0 {
				}
				c.wait()
				h.mu.Unlock()
			})
		}
		for _, c := range []struct {
			waitCase
			hold   uint32
			unlock func()
		}{
			{waitCase{"RLock", func() { h.rw.RLock() }}, 2, h.rw.RUnlock},
			{waitCase{"RLockTimeout", func() { h.rw.RLockTimeout(long) }}, 2, h.rw.RUnlock},
			{waitCase{"RLockContext(cancellable)", func() { h.rw.RLockContext(ctx) }}, 2, h.rw.RUnlock},
			{waitCase{"Lock", func() { h.rw.Lock() }}, 3, h.rw.Unlock},
			{waitCase{"LockTimeout", func() { h.rw.LockTimeout(long) }}, 3, h.rw.Unlock},
			{waitCase{"LockContext(cancellable)", func() { h.rw.LockContext(ctx) }}, 3, h.rw.Unlock},
		} {
			assertNoAllocs(t, "RWMutex."+c.name+" blocking"+setting, func() {
				atomic.StoreUint32(&h.hold, c.hold)
				for atomic.LoadUint32(&h.holding) == 0 {
				}
				c.wait()
				c.unlock()
				for atomic.LoadUint32(&h.hold) != 0 {
				}
			})
		}
		SetSpin(old)
	}
}
