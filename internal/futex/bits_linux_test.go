package futex

import (
	"sync/atomic"
	"testing"
	"time"
)

// WakeBits wakes a sleeper of Wait (every bit) and leaves one whose bits
// do not meet its own asleep, even one that fell asleep first.
func TestWakeBitsSelective(t *testing.T) {
	var w uint32
	type res struct {
		who string
		err error
	}
	woke := make(chan res, 2)
	sleep := func(who string, bits uint32) {
		for atomic.LoadUint32(&w) == 0 {
			var err error
			if bits == 0 {
				err = Wait(&w, 0, 5*time.Second)
			} else {
				err = WaitBits(&w, 0, 5*time.Second, bits)
			}
			if err != nil {
				woke <- res{who, err}
				return
			}
			if who == "reader" {
				break // woken (or spurious): report it
			}
		}
		woke <- res{who, nil}
	}
	go sleep("reader", 2)
	time.Sleep(20 * time.Millisecond) // the reader sleeps first
	go sleep("writer", 0)
	time.Sleep(20 * time.Millisecond)
	atomic.StoreUint32(&w, 1)
	if n := WakeBits(&w, 1, 1); n != 1 {
		t.Fatalf("WakeBits(1, bit 0) woke %d sleepers, want 1", n)
	}
	select {
	case r := <-woke:
		if r.who != "writer" || r.err != nil {
			t.Fatalf("woken: %s (%v), want the writer", r.who, r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("nobody woke")
	}
	select {
	case r := <-woke:
		t.Fatalf("%s woke too (%v)", r.who, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	if n := Wake(&w, All); n != 1 {
		t.Fatalf("Wake(All) woke %d, want the reader", n)
	}
	if r := <-woke; r.who != "reader" || r.err != nil {
		t.Fatalf("woken: %s (%v)", r.who, r.err)
	}
}

// A timed WaitBits ends with ErrTimeout after its timeout (the kernel
// takes a deadline there, which WaitBits computes).
func TestWaitBitsTimeout(t *testing.T) {
	var w uint32
	for _, d := range []time.Duration{0, time.Millisecond, 30 * time.Millisecond} {
		t0 := time.Now()
		err := WaitBits(&w, 0, d, 2)
		el := time.Since(t0)
		if err != ErrTimeout {
			t.Fatalf("WaitBits(%v) = %v, want ErrTimeout", d, err)
		}
		if el < d || el > d+time.Second {
			t.Fatalf("WaitBits(%v) returned after %v", d, el)
		}
	}
}
