package shm

import (
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-shm/shm/internal/futex"
)

func init() {
	// args: name, kind (l: locker, p: peer setting the readers bit and
	// sleeping as a reader would), seed, slot
	registerChild("brk10-mbit", func(args []string) error {
		seg, a, err := openB10Area(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		m := &a.rw.w // used as a plain Mutex
		rng := rand.New(rand.NewPCG(uint64(atoi(args[2])), 3))
		slot := atoi(args[3])
		atomic.StoreInt32(&a.pid[slot], int32(os.Getpid()))
		atomic.AddInt32(&a.ready, 1)
		for atomic.LoadInt32(&a.stop) == 0 {
			if args[1] == "p" {
				// A peer (or damage) sets the readers bit, held or not, and
				// sometimes sleeps with the readers' futex bits.
				atomic.OrUint64(&m.state, mReaders)
				if v := atomic.LoadUint64(&m.state); v&mHeld != 0 && rng.IntN(2) == 0 {
					futex.WaitBits(lowHalf(&m.state), uint32(v), time.Duration(rng.Int64N(int64(3*time.Millisecond))), readerBits)
				} else {
					time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Microsecond))))
				}
				continue
			}
			start := time.Now()
			var err error
			if rng.IntN(2) == 0 {
				m.Lock()
				atomicMax(&a.worstL, int64(time.Since(start)))
			} else {
				err = m.LockTimeout(time.Duration(rng.Int64N(int64(2 * time.Millisecond))))
			}
			if err != nil {
				if err != ErrTimeout {
					a.fail("locker: %v", err)
				}
				continue
			}
			a.writeInside(slot, time.Duration(rng.Int64N(int64(300*time.Microsecond))))
			m.Unlock()
			time.Sleep(time.Duration(rng.Int64N(int64(200 * time.Microsecond))))
		}
		return nil
	})
}

// TestBreak10MutexReadersBitStuck: a plain Mutex whose readers bit a peer
// keeps setting (held or free), the peer sometimes asleep with the
// readers' futex bits; 3 locker processes (Lock, LockTimeout of 0-2 ms):
// never two inside, nobody hangs (a Lock waits at most a few liveness
// slices beyond the scheduling delay).
func TestBreak10MutexReadersBitStuck(t *testing.T) {
	name, a := newB10Area(t)
	seed := int(time.Now().UnixNano() & 0xffffff)
	var cs []*child
	for i := 0; i < 3; i++ {
		cs = append(cs, startChild(t, "brk10-mbit", name, "l", strconv.Itoa(seed+i), strconv.Itoa(i)))
	}
	cs = append(cs, startChild(t, "brk10-mbit", name, "p", strconv.Itoa(seed+9), "9"))
	waitCount(t, &a.ready, 4, 20*time.Second)
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) && atomic.LoadInt32(&a.bad) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	n0 := atomic.LoadInt64(&a.nW)
	time.Sleep(200 * time.Millisecond)
	n1 := atomic.LoadInt64(&a.nW)
	atomic.StoreInt32(&a.stop, 1)
	for _, c := range cs {
		c.wait(20 * time.Second)
	}
	t.Logf("%d locks (%d in the last 200 ms), worst Lock wait %v, word at the end %#x", a.nW, n1-n0, time.Duration(a.worstL), atomic.LoadUint64(&a.rw.w.state))
	if a.bad != 0 {
		t.Fatalf("%d violations, first: %s", a.bad, string(a.msg[:]))
	}
	if n1 == n0 {
		t.Errorf("no progress")
	}
	if w := time.Duration(a.worstL); w > 200*time.Millisecond {
		t.Errorf("a Lock waited %v", w)
	}
}
