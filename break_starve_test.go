package shm

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	// args: name: four goroutines keep overlapping read locks (each held
	// for about a millisecond) until told to stop.
	registerChild("brk-readers", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		atomic.AddInt32(&a.ready, 1)
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for atomic.LoadInt32(&a.woken) == 0 {
					a.rw.RLock()
					time.Sleep(time.Millisecond)
					a.rw.RUnlock()
				}
			}()
		}
		wg.Wait()
		return nil
	})
}

// TestBreakRWWriterNotStarved: with readers in several processes keeping
// the lock read-held at every moment, a writer still gets in, quickly: a
// waiting writer keeps new readers out.
func TestBreakRWWriterNotStarved(t *testing.T) {
	name, _, a := newArea(t)
	var cs []*child
	for i := 0; i < 3; i++ {
		cs = append(cs, startChild(t, "brk-readers", name))
	}
	waitCount(t, &a.ready, 3, 20*time.Second)
	time.Sleep(50 * time.Millisecond)
	var worst time.Duration
	for i := 0; i < 30; i++ {
		start := time.Now()
		if err := a.rw.LockTimeout(2 * time.Second); err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
		a.rw.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	atomic.StoreInt32(&a.woken, 1)
	for _, c := range cs {
		c.wait(10 * time.Second)
	}
	t.Logf("longest write-lock wait %v", worst)
	if worst > 100*time.Millisecond {
		t.Errorf("a writer waited %v for readers that each hold about 1 ms", worst)
	}
}

func init() {
	// args: name: take the area's auto event again and again with tiny
	// timeouts and cancelled contexts, counting each success in woken,
	// until told to stop (ready goes to -1000).
	registerChild("brk-auto-churn", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		atomic.AddInt32(&a.ready, 1)
		for i := 0; atomic.LoadInt32(&a.ready) > 0; i++ {
			d := time.Duration(1+i%7) * time.Duration(1+(i*7919)%50000) // 1ns .. 350µs
			var err error
			if i%5 == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), d)
				err = a.auto.WaitContext(ctx)
				cancel()
			} else {
				err = a.auto.WaitTimeout(d)
			}
			if err == nil {
				atomic.AddInt32(&a.woken, 1)
			}
		}
		return nil
	})
}

// TestBreakAutoEventExactCount: Sets spaced out (each after the previous
// was taken) against waiters in several processes that keep giving up
// after tiny timeouts: exactly one release per Set, none lost (the setter
// would wait forever), none doubled.
func TestBreakAutoEventExactCount(t *testing.T) {
	name, _, a := newArea(t)
	var cs []*child
	for i := 0; i < 3; i++ {
		cs = append(cs, startChild(t, "brk-auto-churn", name))
	}
	waitCount(t, &a.ready, 3, 20*time.Second)
	const sets = 3000
	for i := 0; i < sets; i++ {
		a.auto.Set()
		deadline := time.Now().Add(2 * time.Second)
		for a.auto.IsSet() {
			if time.Now().After(deadline) {
				t.Fatalf("Set %d not taken in 2 s by waiters that keep waiting", i)
			}
			spinPause()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for atomic.LoadInt32(&a.woken) < sets && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	atomic.StoreInt32(&a.ready, -1000)
	for _, c := range cs {
		c.wait(10 * time.Second)
	}
	if got := atomic.LoadInt32(&a.woken); got != sets {
		t.Fatalf("%d Sets, %d releases", sets, got)
	}
}
