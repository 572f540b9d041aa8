package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
)

// Regression tests of the reliability issue: waits that outlive their
// deadline, wake-ups lost with a waiter that gives up, dead-owner recovery
// postponed by other waiters, and a manual event whose Set is lost to a
// quick Reset.

// TestTinyTimeoutsReturn: no timed wait sleeps past its deadline by more
// than a scheduling delay, for timeouts from 1 ns up, whatever it waits for
// (a lock held by a live process that never lets go, an event nobody sets).
// A deadline that passed between the waiter's last check and its sleep once
// turned into "no limit".
func TestTinyTimeoutsReturn(t *testing.T) {
	_, _, a := newArea(t)
	_, _, b := newArea(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rw.RLock() // a writer waits for it
	defer a.rw.RUnlock()
	b.rw.Lock() // a reader waits for it
	defer b.rw.Unlock()

	ctxOf := func(d time.Duration, f func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return f(ctx)
	}
	cases := []struct {
		name string
		wait func(d time.Duration) error
	}{
		{"Mutex.LockTimeout", a.mu.LockTimeout},
		{"Mutex.LockContext", func(d time.Duration) error { return ctxOf(d, a.mu.LockContext) }},
		{"RWMutex.LockTimeout", a.rw.LockTimeout},
		{"RWMutex.RLockTimeout", b.rw.RLockTimeout},
		{"RWMutex.RLockContext", func(d time.Duration) error { return ctxOf(d, b.rw.RLockContext) }},
		{"AutoEvent.WaitTimeout", a.auto.WaitTimeout},
		{"ManualEvent.WaitTimeout", a.manual.WaitTimeout},
		{"ManualEvent.WaitContext", func(d time.Duration) error { return ctxOf(d, a.manual.WaitContext) }},
		{"BusyAutoEvent.WaitTimeout", a.bauto.WaitTimeout},
	}
	const slack = 250 * time.Millisecond // a scheduling delay, generously
	for _, spin := range []int{0, -1} {
		old := SetSpin(spin)
		for _, c := range cases {
			name := fmt.Sprintf("%s/spin=%d", c.name, spin)
			done := make(chan error, 1)
			go func() {
				worst := time.Duration(0)
				for i := 0; i < 1500; i++ {
					// Mostly timeouts about as long as the way from the call to
					// the first sleep, where the deadline passing mattered.
					d := time.Duration(1 + rand.N(4000))
					if i%8 == 0 {
						d = time.Duration(1) << rand.N(20)
					}
					start := time.Now()
					err := c.wait(d)
					el := time.Since(start)
					if err == nil || errors.Is(err, ErrOwnerDead) {
						done <- fmt.Errorf("call %d with timeout %v succeeded on something nobody releases: %v", i, d, err)
						return
					}
					if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
						done <- fmt.Errorf("call %d: %v", i, err)
						return
					}
					if over := el - d; over > worst {
						worst = over
					}
				}
				if worst > slack {
					done <- fmt.Errorf("a call returned %v after its deadline", worst)
					return
				}
				done <- nil
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: a call with a timeout of at most 0.5 ms did not return in 30 s", name)
			}
		}
		SetSpin(old)
	}
}

// TestGiveUpPassesWakeOn: Unlock wakes one sleeper; if that sleeper's
// deadline has passed by the time it runs, it leaves, and must pass the
// wake-up on, or the next sleeper stays asleep on a free lock. The unlock is
// timed to land just before the first waiter's deadline, where that
// happens; the second waiter must get the lock at once every time.
func TestGiveUpPassesWakeOn(t *testing.T) {
	if testing.Short() {
		t.Skip("timing trials")
	}
	_, seg, a := newArea(t)
	// The probe's words, in the same segment (past the area), so that
	// they are woken as the lock's word is (on Windows, shared words go
	// through the package's own wake-up of other processes).
	pw1 := (*uint32)(unsafe.Pointer(&seg.Bytes()[3072]))
	pw2 := (*uint32)(unsafe.Pointer(&seg.Bytes()[3136]))
	kinds := []struct {
		name          string
		lock          func()
		unlock        func()
		lockTimeout   func(time.Duration) error
		unlockWaiters func()
	}{
		{"Mutex", a.mu.Lock, a.mu.Unlock, a.mu.LockTimeout, a.mu.Unlock},
		{"RWMutex", a.rw.Lock, a.rw.Unlock, a.rw.LockTimeout, a.rw.Unlock},
	}
	old := SetSpin(0) // straight to sleep: the case that matters
	defer SetSpin(old)
	for _, k := range kinds {
		const trials = 60
		const d1 = 10 * time.Millisecond
		var slow []time.Duration
		probeSlow := 0 // trials where the same two wake-ups without the lock took as long
		for i := 0; i < trials; i++ {
			if wakeProbe(pw1, pw2, d1) > 5*time.Millisecond {
				probeSlow++
			}
			k.lock()
			start := time.Now()
			w1 := make(chan struct{})
			go func() {
				defer close(w1)
				if k.lockTimeout(d1) == nil {
					k.unlockWaiters()
				}
			}()
			time.Sleep(2 * time.Millisecond) // the first waiter sleeps first
			var got atomic.Int64
			w2 := make(chan error, 1)
			go func() {
				err := k.lockTimeout(5 * time.Second)
				got.Store(time.Now().UnixNano())
				if err == nil {
					k.unlockWaiters()
				}
				w2 <- err
			}()
			// Unlock at the first waiter's deadline, give or take.
			time.Sleep(time.Until(start.Add(d1 - 150*time.Microsecond + time.Duration(rand.N(200))*time.Microsecond)))
			u := time.Now()
			k.unlock()
			if err := <-w2; err != nil {
				t.Fatalf("%s: second waiter: %v", k.name, err)
			}
			<-w1
			if lat := time.Duration(got.Load() - u.UnixNano()); lat > 5*time.Millisecond {
				slow = append(slow, lat)
			}
		}
		// One slow trial may be the machine; a lost wake-up costs up to a
		// liveness slice, in a good share of the trials. Where the same
		// chain of two wake-ups without the lock (wakeProbe) is itself late
		// now and then (under Wine the lock was late in 8-16 of 60 trials,
		// the lock code of the day before alike), twice as many slow trials
		// as it had are allowed on top.
		if allowed := 1 + 2*probeSlow; len(slow) > allowed {
			t.Errorf("%s: in %d of %d trials the second waiter got the free lock late (the same two wake-ups without the lock were late in %d; %d allowed): %v", k.name, len(slow), trials, probeSlow, allowed, slow)
		} else if probeSlow > 0 {
			t.Logf("%s: %d of %d trials late, the two wake-ups without the lock late in %d", k.name, len(slow), trials, probeSlow)
		}
	}
}

// wakeProbe is TestGiveUpPassesWakeOn's measure of the machine, the same
// chain of two wake-ups without the lock: a goroutine sleeps in the kernel
// with a deadline of d1 (as the first waiter), another sleeps with none (as
// the second); the first is woken about at its deadline and then wakes the
// second, on two words of a segment. It returns the time from the first
// wake-up to the second goroutine's return.
func wakeProbe(w1, w2 *uint32, d1 time.Duration) time.Duration {
	atomic.StoreUint32(w1, 0)
	atomic.StoreUint32(w2, 0)
	var back atomic.Int64
	done := make(chan struct{})
	start := time.Now()
	go func() {
		futex.Wait(w1, 0, d1)
		atomic.StoreUint32(w2, 1)
		futex.Wake(w2, 1)
	}()
	go func() {
		for atomic.LoadUint32(w2) == 0 {
			futex.Wait(w2, 0, time.Second)
		}
		back.Store(time.Now().UnixNano())
		close(done)
	}()
	time.Sleep(time.Until(start.Add(d1 - 150*time.Microsecond + time.Duration(rand.N(200))*time.Microsecond)))
	u := time.Now()
	atomic.StoreUint32(w1, 1)
	futex.Wake(w1, 1)
	<-done
	return time.Duration(back.Load() - u.UnixNano())
}

// TestAutoEventGiveUpKeepsSet: the one wake-up a Set of an auto event makes
// is not lost when the waiter it reaches has given up: that waiter takes the
// event on its way out (and returns nil), or the next waiter gets it.
func TestAutoEventGiveUpKeepsSet(t *testing.T) {
	_, _, a := newArea(t)
	old := SetSpin(0)
	defer SetSpin(old)
	const d1 = 10 * time.Millisecond
	for i := 0; i < 40; i++ {
		start := time.Now()
		w1 := make(chan error, 1)
		go func() { w1 <- a.auto.WaitTimeout(d1) }()
		time.Sleep(2 * time.Millisecond)
		w2 := make(chan error, 1)
		go func() { w2 <- a.auto.WaitTimeout(5 * time.Second) }()
		time.Sleep(time.Until(start.Add(d1 - 150*time.Microsecond + time.Duration(rand.N(200))*time.Microsecond)))
		a.auto.Set()
		err1 := <-w1
		if err1 != nil {
			// The first waiter left without the event: the second has it.
			select {
			case err := <-w2:
				if err != nil {
					t.Fatalf("trial %d: second waiter: %v", i, err)
				}
			case <-time.After(time.Second):
				t.Fatalf("trial %d: the first waiter gave up (%v) and the Set reached nobody", i, err1)
			}
			continue
		}
		// The first waiter took it; the second still waits for its own Set.
		if a.auto.IsSet() {
			t.Fatalf("trial %d: the event was taken and is still set", i)
		}
		a.auto.Set()
		if err := <-w2; err != nil {
			t.Fatalf("trial %d: second waiter after a second Set: %v", i, err)
		}
	}
}

// relArea is the shared layout of the recovery tests.
type relArea struct {
	mu     Mutex
	_      [56]byte
	rw     RWMutex
	ready  int32
	stop   int32
	tookAt int64 // wall-clock ns of the first takeover
}

// tookOver records a takeover at the current time if it is the first.
func (r *relArea) tookOver() { atomic.CompareAndSwapInt64(&r.tookAt, 0, wallNow()) }

func openRel(name string) (*Segment, *relArea, error) {
	seg, err := Open(name)
	if err != nil {
		return nil, nil, err
	}
	r, err := View[relArea](seg.Bytes())
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, r, nil
}

func init() {
	// args: name, what (mutex|write|read): take the lock, say so, and wait
	// to be killed.
	registerChild("rel-hold", func(args []string) error {
		seg, r, err := openRel(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		switch args[1] {
		case "mutex":
			r.mu.Lock()
		case "write":
			r.rw.Lock()
		case "read":
			r.rw.RLock()
		}
		atomic.AddInt32(&r.ready, 1)
		time.Sleep(time.Hour)
		return nil
	})
	// args: name, what: wait for the lock again and again, each time with
	// a context cancelled after 10 ms (mutex) or a 5 ms timeout (read),
	// until told to stop. A waiter that takes a dead holder's lock over
	// records it.
	registerChild("rel-churn", func(args []string) error {
		seg, r, err := openRel(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		atomic.AddInt32(&r.ready, 1)
		for atomic.LoadInt32(&r.stop) == 0 {
			var err error
			switch args[1] {
			case "mutex":
				ctx, cancel := context.WithCancel(context.Background())
				tm := time.AfterFunc(10*time.Millisecond, cancel)
				err = r.mu.LockContext(ctx)
				tm.Stop()
				cancel()
				if err == nil || errors.Is(err, ErrOwnerDead) {
					if err != nil {
						r.tookOver()
					}
					r.mu.Unlock()
				}
			case "read":
				err = r.rw.RLockTimeout(5 * time.Millisecond)
				if err == nil || errors.Is(err, ErrOwnerDead) {
					if err != nil {
						r.tookOver()
					}
					r.rw.RUnlock()
				}
			}
		}
		return nil
	})
}

// TestDeadHolderRecoveredWhateverOthersDo: a dead holder's lock is taken
// over within 100 ms of the death by some waiter that keeps trying, however
// short each call's timeout and whatever wakes the waiters meanwhile
// (others' cancelled contexts, readers backing off).
func TestDeadHolderRecoveredWhateverOthersDo(t *testing.T) {
	type scenario struct {
		name   string
		hold   string              // what the dying holder holds
		churn  []string            // other processes waiting meanwhile
		taker  func(*relArea) bool // one call; true when it got the lock
		single bool                // the taker makes one long call
	}
	ok := func(err error) bool { return err == nil || errors.Is(err, ErrOwnerDead) }
	scenarios := []scenario{
		{"mutex/loop of LockTimeout(10ms)", "mutex", nil, func(r *relArea) bool {
			err := r.mu.LockTimeout(10 * time.Millisecond)
			if ok(err) {
				if err != nil {
					r.tookOver()
				}
				r.mu.Unlock()
			}
			return ok(err)
		}, false},
		{"mutex/LockTimeout(3s) beside contexts cancelled every 10ms", "mutex", []string{"mutex"}, func(r *relArea) bool {
			err := r.mu.LockTimeout(3 * time.Second)
			if ok(err) {
				if err != nil {
					r.tookOver()
				}
				r.mu.Unlock()
			}
			return ok(err)
		}, true},
		{"rw write/LockTimeout(3s) beside readers retrying RLockTimeout(5ms)", "write", []string{"read", "read"}, func(r *relArea) bool {
			err := r.rw.LockTimeout(3 * time.Second)
			if ok(err) {
				if err != nil {
					r.tookOver()
				}
				r.rw.Unlock()
			}
			return ok(err)
		}, true},
		{"rw write/loop of RLockTimeout(5ms)", "write", nil, func(r *relArea) bool {
			err := r.rw.RLockTimeout(5 * time.Millisecond)
			if ok(err) {
				if err != nil {
					r.tookOver()
				}
				r.rw.RUnlock()
			}
			return ok(err)
		}, false},
		{"rw read/LockTimeout(3s) beside readers retrying RLockTimeout(5ms)", "read", []string{"read", "read"}, func(r *relArea) bool {
			err := r.rw.LockTimeout(3 * time.Second)
			if ok(err) {
				r.tookOver()
				r.rw.Unlock()
			}
			return ok(err)
		}, true},
		{"rw read/loop of LockTimeout(10ms)", "read", nil, func(r *relArea) bool {
			err := r.rw.LockTimeout(10 * time.Millisecond)
			if ok(err) {
				r.tookOver() // a dead reader's share is released silently
				r.rw.Unlock()
			}
			return ok(err)
		}, false},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			name := testName(t)
			seg, err := Create(name, 8192)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			r, err := View[relArea](seg.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			holder := startChild(t, "rel-hold", name, sc.hold)
			waitCount(t, &r.ready, 1, 20*time.Second)
			var churn []*child
			for _, what := range sc.churn {
				churn = append(churn, startChild(t, "rel-churn", name, what))
			}
			waitCount(t, &r.ready, int32(1+len(sc.churn)), 20*time.Second)
			defer func() {
				atomic.StoreInt32(&r.stop, 1)
				for _, c := range churn {
					c.wait(10 * time.Second)
				}
			}()
			done := make(chan bool, 1)
			go func() {
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					if sc.taker(r) {
						done <- true
						return
					}
				}
				done <- false
			}()
			time.Sleep(100 * time.Millisecond) // everyone is waiting
			killed := wallNow()
			holder.kill()
			if !<-done {
				t.Fatal("no waiter took the dead holder's lock within 5 s")
			}
			took := atomic.LoadInt64(&r.tookAt)
			if lat := time.Duration(took - killed); lat > 100*time.Millisecond {
				t.Errorf("the lock was taken over %v after the holder was killed, want at most 100 ms", lat)
			} else {
				t.Logf("taken over %v after the kill", lat)
			}
		})
	}
}

func init() {
	// args: name, which (manual|busymanual): wait for the event once, say
	// so before and after.
	registerChild("wait-manual", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		var ev Event = &a.manual
		if args[1] == "busymanual" {
			ev = &a.bmanual
		}
		atomic.AddInt32(&a.ready, 1)
		if err := ev.WaitTimeout(20 * time.Second); err != nil {
			return err
		}
		atomic.AddInt32(&a.woken, 1)
		return nil
	})
}

// TestManualSetThenResetReleasesAll: a Set releases every process that was
// waiting when it happened, even if a Reset follows at once.
func TestManualSetThenResetReleasesAll(t *testing.T) {
	for _, which := range []string{"manual", "busymanual"} {
		t.Run(which, func(t *testing.T) {
			for trial := 0; trial < 3; trial++ {
				name, _, a := newArea(t)
				var ev Event = &a.manual
				if which == "busymanual" {
					ev = &a.bmanual
				}
				const n = 6
				var cs []*child
				for i := 0; i < n; i++ {
					cs = append(cs, startChild(t, "wait-manual", name, which))
				}
				waitCount(t, &a.ready, n, 20*time.Second)
				time.Sleep(200 * time.Millisecond) // all asleep (or polling)
				ev.Set()
				ev.Reset()
				for _, c := range cs {
					if err := c.waitErr(5 * time.Second); err != nil {
						t.Fatalf("trial %d: after Set and an immediate Reset, a waiter was not released: %v\n%s", trial, err, c.output())
					}
				}
				if got := atomic.LoadInt32(&a.woken); got != n {
					t.Fatalf("trial %d: %d of %d waiters released", trial, got, n)
				}
			}
		})
	}
}

// TestMutexOwnerIsSystemPID: Owner reports the holder's process ID as the
// system numbers it (on Windows it once reported PID/4).
func TestMutexOwnerIsSystemPID(t *testing.T) {
	_, _, a := newArea(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	if got := a.mu.Owner(); got != os.Getpid() {
		t.Fatalf("Owner() = %d, want %d", got, os.Getpid())
	}
}
