package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Round 6: a hostile peer writes garbage into a log's words (tail, intent,
// head, last, writer, wake, reader slots, record headers and sequence
// numbers). Every call must return, within its bound, without a panic and
// without handing out bytes outside the ring.

// b6Aligned returns n zero bytes starting at a 64-byte boundary.
func b6Aligned(n int) []byte {
	b := make([]byte, n+64)
	off := (64 - int(uintptr(unsafe.Pointer(&b[0]))%64)) % 64
	return b[off : off+n : off+n]
}

// b6Bounded runs f, failing the test if it panics or takes longer than d.
func b6Bounded(t *testing.T, what string, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("PANIC: %v", r)
			}
		}()
		done <- f()
	}()
	select {
	case err := <-done:
		if err != nil && len(err.Error()) > 6 && err.Error()[:6] == "PANIC:" {
			t.Fatalf("%s: %v", what, err)
		}
		return err
	case <-time.After(d):
		t.Fatalf("%s: still running after %v", what, d)
		return nil
	}
}

func b6InRing(l *Log, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(&l.ring[0]))
	p := uintptr(unsafe.Pointer(&b[0]))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(l.ring))
}

func TestBreak6LogDamage(t *testing.T) {
	iters := 300
	if os.Getenv("SHM_TORTURE") != "" {
		iters = 20000
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 6))
	const capacity, readers = 512, 4
	for it := 0; it < iters; it++ {
		mem := b6Aligned(LogSize(capacity, readers))
		l, err := FormatLog(mem, capacity, 0, readers)
		if err != nil {
			t.Fatal(err)
		}
		w, err := l.Writer()
		if err != nil {
			t.Fatal(err)
		}
		var rs []*LogReader
		for i := 0; i < 3; i++ {
			r, _ := l.Reader(LogStart(rnd.IntN(3)))
			rs = append(rs, r)
		}
		for i, n := 0, rnd.IntN(40); i < n; i++ {
			b := make([]byte, rnd.IntN(l.MaxMessage()+1))
			if rnd.IntN(5) == 0 {
				if _, err := w.Claim(len(b)); err == nil {
					if rnd.IntN(2) == 0 {
						w.Commit()
					} else {
						w.Abort()
					}
				}
				continue
			}
			w.Append(b)
		}
		if rnd.IntN(3) == 0 {
			w.Claim(rnd.IntN(l.MaxMessage() + 1)) // left open: a record in progress
		}
		// The damage: one to three words.
		words := []int{lOffTail, lOffIntent, lOffHead, lOffLast, lOffWriter, lOffWake, lOffSlots + 8, lOffSlots + 16}
		for k := 1 + rnd.IntN(3); k > 0; k-- {
			var off int
			if rnd.IntN(2) == 0 {
				off = words[rnd.IntN(len(words))]
			} else {
				off = lOffSlots + readers*lSlotSize + rnd.IntN(capacity/8)*8
			}
			p := (*uint64)(unsafe.Pointer(&mem[off]))
			old := atomic.LoadUint64(p)
			var v uint64
			switch rnd.IntN(7) {
			case 0:
				v = rnd.Uint64()
			case 1:
				v = old + uint64(16*(rnd.IntN(20)-10))
			case 2:
				v = old + capacity*uint64(1+rnd.IntN(3))
			case 3:
				v = ^uint64(0) - uint64(rnd.IntN(64))
			case 4:
				v = 0
			case 5:
				v = old ^ 1<<rnd.IntN(64)
			case 6:
				v = recHeader(uint64(rnd.IntN(200)), uint64(rnd.IntN(7)), 0)
			}
			atomic.StoreUint64(p, v)
		}
		what := fmt.Sprintf("iteration %d", it)
		l2, err := AttachLog(mem)
		if err != nil {
			continue
		}
		buf := make([]byte, l.MaxMessage())
		exercise := func(r *LogReader) error {
			for i := 0; i < 60; i++ {
				var err error
				switch i % 5 {
				case 0:
					var m LogMessage
					m, err = r.TryReceive()
					if err == nil {
						if !b6InRing(l2, m.Bytes()) || len(m.Bytes()) > l2.MaxMessage() {
							return fmt.Errorf("PANIC: a message outside the ring or too long: %d bytes", len(m.Bytes()))
						}
						r.Check(m)
					}
				case 1:
					var n int
					n, err = r.TryCopy(buf)
					if err == nil && n > len(buf) {
						return fmt.Errorf("PANIC: copied %d into %d", n, len(buf))
					}
				case 2:
					d := time.Duration(rnd.IntN(3)) * 50 * time.Microsecond
					t0 := time.Now()
					_, err = r.ReceiveTimeout(d)
					if el := time.Since(t0); el > d+2*time.Second {
						return fmt.Errorf("PANIC: ReceiveTimeout(%v) took %v", d, el)
					}
				case 3:
					_, err = r.CopyTimeout(buf, 1)
				case 4:
					_, err = l2.Stats()
				}
				if err != nil && !errors.Is(err, ErrLost) && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
					return fmt.Errorf("PANIC: unexpected error %v", err)
				}
			}
			return nil
		}
		for _, r := range rs {
			r.l = l2
			b6Bounded(t, what+": old reader", 5*time.Second, func() error { return exercise(r) })
		}
		for _, from := range []LogStart{LogOldest, LogNewest, LogNext} {
			b6Bounded(t, what+": new reader", 5*time.Second, func() error {
				r, err := l2.Reader(from)
				if err != nil {
					return nil
				}
				defer r.Close()
				return exercise(r)
			})
		}
		// A successor writer: either it refuses (ErrCorrupt, ErrInUse) or
		// it appends.
		b6Bounded(t, what+": successor", 5*time.Second, func() error {
			atomic.StoreUint64(l.writer, 0)
			w2, err := l2.Writer()
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInUse) {
					return fmt.Errorf("PANIC: successor: %v", err)
				}
				return nil
			}
			defer w2.Close()
			for i := 0; i < 20; i++ {
				if err := w2.Append(make([]byte, rnd.IntN(l2.MaxMessage()+1))); err != nil {
					return fmt.Errorf("PANIC: successor's append: %v", err)
				}
			}
			r, err := l2.Reader(LogOldest)
			if err != nil {
				return nil
			}
			defer r.Close()
			return exercise(r)
		})
	}
}
