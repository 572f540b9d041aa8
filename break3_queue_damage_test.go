package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// Nothing read from shared memory is trusted: damaged positions, headers,
// commit words and slot words give ErrCorrupt (or are skipped as a dead
// claim would be), never a panic, never a slice outside the ring, never a
// call that outlives its timeout.

// b3Damage names the words a peer may damage and the values it writes.
type b3Damage struct {
	q *Queue
	r *rand.Rand
}

func (d b3Damage) value(near uint64) uint64 {
	capacity := uint64(len(d.q.ring))
	switch d.r.IntN(12) {
	case 0:
		return 0
	case 1:
		return ^uint64(0) - uint64(d.r.IntN(64))
	case 2:
		return near + uint64(d.r.IntN(4))*capacity + uint64(d.r.IntN(16))*16
	case 3:
		return near - uint64(d.r.IntN(4))*capacity - uint64(d.r.IntN(16))*16
	case 4:
		return commitWord(near + uint64(d.r.IntN(32))*16)
	case 5:
		return recHeader(uint64(d.r.IntN(int(capacity)*2)), uint64(d.r.IntN(6)), d.r.IntN(1<<16))
	case 6:
		return recHeader(uint64(d.r.IntN(d.q.max+1)), recCommitted, d.r.IntN(d.q.nsl))
	case 7:
		return recHeader(uint64(d.r.IntN(int(capacity))), recPadding, 0)
	case 8:
		return uint64(owner.Self())
	case 9:
		return 1<<63 + uint64(d.r.IntN(1<<20))
	case 10:
		return near
	}
	return d.r.Uint64()
}

// damage overwrites one word of the queue.
func (d b3Damage) damage() string {
	q := d.q
	head, tail := atomic.LoadUint64(q.head), atomic.LoadUint64(q.tail)
	near := head
	if tail >= head && tail-head <= uint64(len(q.ring)) {
		near += uint64(d.r.IntN(int(tail-head+1))) &^ 15
	}
	switch d.r.IntN(8) {
	case 0:
		v := d.value(tail)
		atomic.StoreUint64(q.tail, v)
		return fmt.Sprintf("tail %d -> %d", tail, v)
	case 1:
		v := d.value(head)
		atomic.StoreUint64(q.head, v)
		return fmt.Sprintf("head %d -> %d", head, v)
	case 2:
		v := d.value(0)
		atomic.StoreUint64(q.consumer, v)
		return fmt.Sprintf("consumer -> %#x", v)
	case 3:
		atomic.StoreUint32(q.cwake, uint32(d.r.Uint64()))
		atomic.StoreUint32(q.pwake, uint32(d.r.Uint64()))
		return "wake words"
	case 4, 5:
		i, w := d.r.IntN(q.nsl), d.r.IntN(3)
		v := d.value(near)
		if w == 0 && d.r.IntN(2) == 0 {
			v = d.r.Uint64() & owner.Mask // a token of nobody
		}
		atomic.StoreUint64(q.slotWord(i, w), v)
		return fmt.Sprintf("slot %d word %d -> %d", i, w, v)
	default:
		v := d.value(near)
		if d.r.IntN(2) == 0 {
			atomic.StoreUint64(q.hd(near), v)
			return fmt.Sprintf("hd at %d -> %#x", near, v)
		}
		atomic.StoreUint64(q.hc(near), v)
		return fmt.Sprintf("hc at %d -> %#x", near, v)
	}
}

func TestBreak3QueueDamageFuzz(t *testing.T) {
	iters := 300
	if long() {
		iters = 20000
	}
	const capacity, slots = 512, 4
	seg, err := Create(testName(t), QueueSize(capacity, slots))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	ringStart := uintptr(unsafe.Pointer(&seg.Bytes()[qOffSlots+slots*qSlotSize]))
	ringEnd := ringStart + capacity
	inRing := func(b []byte) bool {
		if len(b) == 0 {
			return true
		}
		p := uintptr(unsafe.Pointer(&b[0]))
		return p >= ringStart && p+uintptr(len(b)) <= ringEnd
	}
	buf := make([]byte, capacity)
	for it := 0; it < iters; it++ {
		r := rand.New(rand.NewPCG(uint64(it), 77))
		clear(seg.Bytes())
		q, err := FormatQueue(seg.Bytes(), capacity, 0, slots)
		if err != nil {
			t.Fatal(err)
		}
		c, err := q.Consumer()
		if err != nil {
			t.Fatal(err)
		}
		var log []string
		fail := func(format string, args ...any) {
			t.Fatalf("iteration %d (damage: %v): %s", it, log, fmt.Sprintf(format, args...))
		}
		// Some traffic: messages in, some out, a claim left open.
		var held []Message
		var open []Claim
		for i := 0; i < r.IntN(40); i++ {
			switch r.IntN(4) {
			case 0, 1:
				q.TrySend(buf[:r.IntN(q.MaxMessage()+1)])
			case 2:
				if m, err := c.TryReceive(); err == nil {
					held = append(held, m)
				}
			case 3:
				if len(held) > 0 {
					c.Release(held[len(held)-1])
					held = held[:0]
				}
			}
		}
		if r.IntN(2) == 0 {
			if cl, err := q.TryClaim(r.IntN(q.MaxMessage() + 1)); err == nil {
				open = append(open, cl)
			}
		}
		d := b3Damage{q, r}
		for k := 1 + r.IntN(3); k > 0; k-- {
			log = append(log, d.damage())
		}
		// Calls on the damaged queue.
		for i := 0; i < 12; i++ {
			start := time.Now()
			var limit time.Duration = 500 * time.Millisecond
			var err error
			switch op := r.IntN(9); op {
			case 0:
				var m Message
				if m, err = c.TryReceive(); err == nil {
					if !inRing(m.Bytes()) || len(m.Bytes()) > q.MaxMessage() {
						fail("TryReceive: a message outside the ring")
					}
					held = append(held, m)
				}
			case 1:
				var m Message
				if m, err = c.ReceiveTimeout(2 * time.Millisecond); err == nil {
					if !inRing(m.Bytes()) || len(m.Bytes()) > q.MaxMessage() {
						fail("ReceiveTimeout: a message outside the ring")
					}
					held = append(held, m)
				}
			case 2:
				var n int
				n, err = c.TryCopy(buf)
				if n > len(buf) {
					fail("TryCopy: %d bytes", n)
				}
			case 3:
				err = q.TrySend(buf[:r.IntN(q.MaxMessage()+1)])
			case 4:
				err = q.SendTimeout(buf[:r.IntN(q.MaxMessage()+1)], 2*time.Millisecond)
			case 5:
				var cl Claim
				if cl, err = q.ClaimTimeout(r.IntN(q.MaxMessage()+1), 2*time.Millisecond); err == nil {
					if !inRing(cl.Bytes()) {
						fail("Claim: space outside the ring")
					}
					err = cl.Commit()
				}
			case 6:
				if len(held) > 0 {
					err = c.Release(held[r.IntN(len(held))])
					held = held[:0]
				}
			case 7:
				_, err = q.Stats()
			case 8:
				if len(open) > 0 {
					err = open[0].Commit()
					open = open[:0]
				}
			}
			if el := time.Since(start); el > limit {
				fail("a call took %v (err %v)", el, err)
			}
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrFull) &&
				!errors.Is(err, ErrTimeout) && !errors.Is(err, ErrRange) && !errors.Is(err, ErrTooLarge) {
				fail("unexpected error %v", err)
			}
		}
		c.Close()
		q.Close()
	}
}

// TestBreak3QueueUnalignedPositions: positions are multiples of 16 (record
// headers are), and hd/hc index the ring with pos&mask only. A damaged
// position that is not (tail, head, or the end of a claim in a slot)
// makes hd(pos) reach past the ring and hc(pos) index beyond it:
//   - a producer whose tail is 506 in a 512-byte ring writes its padding
//     header over the 2 bytes after the queue's block (another primitive of
//     the segment, or user data), then panics with an index out of range in
//     hc: not a memory fault, so catchFault re-panics and the process dies;
//   - a consumer attached at a head of 506 panics the same way in written;
//   - a consumer that skips a dead claim to the end a slot says (start +
//     total, here 506) panics there;
//   - Stats walks from head and panics too.
func TestBreak3QueueUnalignedPositions(t *testing.T) {
	const capacity, slots = 512, 2
	size := QueueSize(capacity, slots)
	setup := func(t *testing.T) (*Queue, []byte) {
		seg, err := Create(testName(t), size+64)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { seg.Close() })
		canary := seg.Bytes()[size:]
		for i := range canary {
			canary[i] = 0xaa
		}
		q, err := FormatQueue(seg.Bytes()[:size], capacity, 0, slots)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q, canary
	}
	call := func(t *testing.T, what string, f func() error) {
		t.Helper()
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("PANIC: %v", r)
				}
			}()
			err = f()
		}()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", what, err)
		}
	}
	intact := func(t *testing.T, canary []byte) {
		t.Helper()
		for i, b := range canary {
			if b != 0xaa {
				t.Errorf("byte %d after the queue's block was overwritten: %#x", i, b)
			}
		}
	}
	t.Run("tail", func(t *testing.T) {
		q, canary := setup(t)
		atomic.StoreUint64(q.head, 506)
		atomic.StoreUint64(q.tail, 506)
		call(t, "TrySend with tail 506", func() error { return q.TrySend([]byte("x")) })
		intact(t, canary)
	})
	t.Run("head", func(t *testing.T) {
		q, canary := setup(t)
		atomic.StoreUint64(q.head, 506)
		atomic.StoreUint64(q.tail, 522)
		call(t, "Consumer+TryReceive with head 506", func() error {
			c, err := q.Consumer()
			if err != nil {
				return err
			}
			_, err = c.TryReceive()
			return err
		})
		call(t, "Stats with head 506", func() error {
			st, err := q.Stats()
			if err == nil {
				err = fmt.Errorf("%w: (Stats may also just say what it sees: %+v)", ErrCorrupt, st)
			}
			return err
		})
		intact(t, canary)
	})
	t.Run("slot", func(t *testing.T) {
		q, canary := setup(t)
		// A claim [0, 512) in progress by a process that is gone, its
		// slot saying it ends at 506.
		atomic.StoreUint64(q.tail, 512)
		atomic.StoreUint64(q.slotWord(0, 0), 0x5a5a5a5a5a5a&owner.Mask)
		atomic.StoreUint64(q.slotWord(0, 1), 0)
		atomic.StoreUint64(q.slotWord(0, 2), 506)
		c, err := q.Consumer()
		if err != nil {
			t.Fatal(err)
		}
		var err2 error
		func() {
			defer func() {
				if r := recover(); r != nil {
					err2 = fmt.Errorf("PANIC: %v", r)
				}
			}()
			_, err2 = c.ReceiveTimeout(200 * time.Millisecond)
		}()
		if err2 != nil && !errors.Is(err2, ErrTimeout) && !errors.Is(err2, ErrCorrupt) {
			t.Errorf("ReceiveTimeout over a dead claim whose slot ends at 506: %v", err2)
		}
		intact(t, canary)
	})
}
