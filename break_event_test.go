package shm

import (
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	// args: name, timeout: wait once for the area's auto event; count
	// ourselves registered first and released after.
	registerChild("brk-auto-wait", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		d, _ := time.ParseDuration(args[1])
		atomic.AddInt32(&a.ready, 1)
		if err := a.auto.WaitTimeout(d); err != nil {
			return err
		}
		atomic.AddInt32(&a.woken, 1)
		return nil
	})
}

// autoSleepers returns how many waiters the auto event has registered.
func autoSleepers(a *area) uint32 { return atomic.LoadUint32(&a.auto.state) / evWaiter }

// TestBreakAutoEventWokenWaiterDies: Set wakes one sleeper. If that sleeper
// is killed after the wake-up and before it clears the set bit, the event
// stays set and every other waiter stays asleep: a later Set finds the bit
// set and wakes nobody. The protocol comment says a dead waiter "only costs
// a needless wake system call".
func TestBreakAutoEventWokenWaiterDies(t *testing.T) {
	old := SetSpin(0)
	defer SetSpin(old)
	const trials = 10
	for trial := 0; trial < trials; trial++ {
		name, _, a := newArea(t)
		w1 := startChild(t, "brk-auto-wait", name, "60s")
		waitCount(t, &a.ready, 1, 20*time.Second)
		for autoSleepers(a) < 1 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // w1 is asleep, first in line
		w2 := startChild(t, "brk-auto-wait", name, "60s")
		waitCount(t, &a.ready, 2, 20*time.Second)
		for autoSleepers(a) < 2 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		a.auto.Set()
		w1.kill() // woken, and killed before it took the event
		// w2 must get the event within a scheduling delay: either w1 took it
		// (and a second Set is owed to w2) or it is still set.
		deadline := time.Now().Add(time.Second)
		for atomic.LoadInt32(&a.woken) == 0 && a.auto.IsSet() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if a.auto.IsSet() && atomic.LoadInt32(&a.woken) == 0 {
			// And another Set does not help: the bit is already set.
			a.auto.Set()
			time.Sleep(200 * time.Millisecond)
			if atomic.LoadInt32(&a.woken) == 0 {
				t.Fatalf("trial %d: the waiter woken by Set was killed before taking the event; the event stays set, "+
					"the live waiter sleeps on (1.2 s so far, its Wait has no bound), and a second Set wakes nobody", trial)
			}
		}
		w2.kill()
	}
}
