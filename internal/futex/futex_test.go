//go:build unix

package futex

import (
	"sync/atomic"
	"testing"
	"time"
)

// The contract of Wait and Wake, checked on whatever Unix runs the tests
// (on macOS and FreeBSD these exercise the real system calls). The word
// lives in ordinary memory here: sharing between processes is tested with
// real segments in package shm.

func TestWaitValueMismatch(t *testing.T) {
	var w uint32 = 1
	start := time.Now()
	if err := Wait(&w, 2, time.Second); err != nil {
		t.Fatalf("Wait with a stale value = %v, want nil", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("Wait with a stale value slept %v", d)
	}
}

func TestWaitTimeout(t *testing.T) {
	var w uint32
	for _, d := range []time.Duration{0, time.Nanosecond, 20 * time.Millisecond} {
		start := time.Now()
		err := Wait(&w, 0, d)
		for err == nil && time.Since(start) < d { // spurious wake-ups are allowed
			err = Wait(&w, 0, d-time.Since(start))
		}
		if err != ErrTimeout {
			t.Fatalf("Wait(%v) = %v, want ErrTimeout", d, err)
		}
		if el := time.Since(start); el < d {
			t.Fatalf("Wait(%v) returned after %v", d, el)
		}
	}
}

func TestWakeOne(t *testing.T) {
	var w uint32
	done := make(chan error, 1)
	go func() {
		for atomic.LoadUint32(&w) == 0 {
			if err := Wait(&w, 0, Forever); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(20 * time.Millisecond) // let it sleep in the kernel
	atomic.StoreUint32(&w, 1)
	Wake(&w, 1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sleeper was not woken")
	}
}

func TestWakeAll(t *testing.T) {
	var w uint32
	const n = 4
	done := make(chan struct{}, n)
	for range n {
		go func() {
			for atomic.LoadUint32(&w) == 0 {
				Wait(&w, 0, Forever)
			}
			done <- struct{}{}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	atomic.StoreUint32(&w, 1)
	Wake(&w, All)
	for i := range n {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d sleepers woken", i, n)
		}
	}
}
