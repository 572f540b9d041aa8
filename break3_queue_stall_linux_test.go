//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// A producer stopped between the store of its candidate claim in its slot
// and its CAS of tail (userfaultfd, as in break_uffd_linux_test.go): the
// tail word and the slots are on two pages of the producer's mapping, and
// the producer is stepped from fault to fault until it touches the tail
// page with its candidate stored and tail still where it loaded it. Another
// producer then claims that very space; the stopped one is let go (its CAS
// fails) or killed there.
//
// The queue is laid out in a raw segment of 3 pages at offset st3Off, so
// that tail (st3Off+64) is on page 0 and the slots (st3Off+384) start on
// page 1. The first bytes of page 0 are flags between the test and its
// children.

const (
	st3Off  = 4096 - 384
	st3Size = 3 * 4096

	st3FlagPaused  = 0  // the stalled producer stopped at its CAS
	st3FlagCmd     = 4  // 1: let the stalled producer go on
	st3FlagResult  = 8  // the stalled claim's result: 1 claimed, 2 ErrFull, 3 another error
	st3FlagHeld    = 12 // the holding producer claimed
	st3FlagNoUFFD  = 16 // userfaultfd is not available
	st3FlagHoldPos = 24 // where the holding producer's claim is (uint64)
)

func st3Flag(b []byte, off int) *int32 { return (*int32)(unsafe.Pointer(&b[off])) }

// st3Wait waits for the flag at off to be nonzero and returns it.
func st3Wait(t *testing.T, b []byte, off int, d time.Duration, what string) int32 {
	t.Helper()
	for end := time.Now().Add(d); ; {
		if v := atomic.LoadInt32(st3Flag(b, off)); v != 0 {
			return v
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func newStallQueue(t *testing.T, producers int) (string, []byte, *Queue) {
	t.Helper()
	name := testName(t)
	seg, err := Create(name, st3Size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	q, err := FormatQueue(seg.Bytes()[st3Off:], 256, 0, producers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return name, seg.Bytes(), q
}

// startStalled starts a producer process that stops in a TryClaim of n
// bytes just before its CAS of tail; it skips the test without
// userfaultfd.
func startStalled(t *testing.T, name string, b []byte, n int) *child {
	t.Helper()
	c := startChild(t, "brk3-q-stall", name, strconv.Itoa(st3Off), strconv.Itoa(n))
	for end := time.Now().Add(20 * time.Second); ; {
		if atomic.LoadInt32(st3Flag(b, st3FlagNoUFFD)) != 0 {
			c.wait(10 * time.Second)
			t.Skipf("userfaultfd in minor-fault mode unavailable: %s", c.output())
		}
		if atomic.LoadInt32(st3Flag(b, st3FlagPaused)) != 0 {
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("stalled producer exited: %v\n%s", c.err, c.output())
		default:
		}
		if time.Now().After(end) {
			c.kill()
			t.Fatalf("the producer did not stop at its CAS: %s", c.output())
		}
		time.Sleep(time.Millisecond)
	}
}

// startHolder starts a producer process that claims n bytes and holds the
// claim (half filled) until it is killed.
func startHolder(t *testing.T, name string, b []byte, n int) *child {
	t.Helper()
	c := startChild(t, "brk3-q-hold", name, strconv.Itoa(st3Off), strconv.Itoa(n))
	st3Wait(t, b, st3FlagHeld, 20*time.Second, "holding producer's claim")
	return c
}

func init() {
	// args: name, queue offset, n: TryClaim n bytes, stopped (userfaultfd)
	// just before the CAS of tail; let go when the test says so, then
	// report the claim's result and stay alive until killed.
	registerChild("brk3-q-stall", func(args []string) error {
		name, off, n := args[0], atoi(args[1]), atoi(args[2])
		defer needProcs()()
		seg1, err := Open(name) // the stalled producer's mapping
		if err != nil {
			return err
		}
		seg2, err := Open(name) // to look and talk, never stopped
		if err != nil {
			return err
		}
		flags := seg2.Bytes()
		q1, err := AttachQueue(seg1.Bytes()[off:])
		if err != nil {
			return err
		}
		q2, err := AttachQueue(seg2.Bytes()[off:])
		if err != nil {
			return err
		}
		base := uintptr(unsafe.Pointer(&seg1.Bytes()[0]))
		tailPage := uintptr(unsafe.Pointer(q1.tail)) &^ 4095
		slotPage := uintptr(unsafe.Pointer(q1.slotWord(0, 0))) &^ 4095
		if tailPage != base || slotPage != base+4096 {
			return fmt.Errorf("layout: tail page %#x, slot page %#x, base %#x", tailPage, slotPage, base)
		}
		p, err := newPauser(base, 2*4096)
		if err != nil {
			fmt.Println(err)
			atomic.StoreInt32(st3Flag(flags, st3FlagNoUFFD), 1)
			return nil
		}
		if err := p.zap(base, 2*4096); err != nil {
			return err
		}
		res := make(chan error, 1)
		go func() {
			c, err := q1.TryClaim(n)
			if err == nil {
				err = c.Commit()
			}
			res <- err
		}()
		self := uint64(owner.Self())
		atCAS := func() bool {
			for i := 0; i < q2.nsl; i++ {
				if atomic.LoadUint64(q2.slotWord(i, 0)) == self && atomic.LoadUint64(q2.slotWord(i, 2)) != 0 &&
					atomic.LoadUint64(q2.slotWord(i, 1)) == atomic.LoadUint64(q2.tail) {
					return true
				}
			}
			return false
		}
		timeout := time.After(10 * time.Second)
		var paused uintptr
		for paused == 0 {
			select {
			case pg := <-p.faults:
				if pg == tailPage && atCAS() {
					paused = pg
					break
				}
				other := tailPage
				if pg == tailPage {
					other = slotPage
				}
				p.zap(other, 4096)
				p.resume(pg)
			case err := <-res:
				return fmt.Errorf("the claim returned before its CAS: %v", err)
			case <-timeout:
				return fmt.Errorf("the claim never reached its CAS")
			}
		}
		atomic.StoreInt32(st3Flag(flags, st3FlagPaused), 1)
		for atomic.LoadInt32(st3Flag(flags, st3FlagCmd)) == 0 {
			time.Sleep(time.Millisecond)
		}
		go func() {
			for pg := range p.faults {
				p.resume(pg)
			}
		}()
		p.resume(paused)
		err = <-res
		code := int32(3)
		switch {
		case err == nil:
			code = 1
		case errors.Is(err, ErrFull):
			code = 2
		}
		fmt.Println("claim:", err)
		atomic.StoreInt32(st3Flag(flags, st3FlagResult), code)
		select {}
	})
	// args: name, queue offset, n: claim n bytes, fill half of them, and
	// hold the claim until killed.
	registerChild("brk3-q-hold", func(args []string) error {
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		q, err := AttachQueue(seg.Bytes()[atoi(args[1]):])
		if err != nil {
			return err
		}
		c, err := q.TryClaim(atoi(args[2]))
		if err != nil {
			return err
		}
		b := c.Bytes()
		for i := range b[:len(b)/2] {
			b[i] = 0xee
		}
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&seg.Bytes()[st3FlagHoldPos])), c.pos)
		atomic.StoreInt32(st3Flag(seg.Bytes(), st3FlagHeld), 1)
		select {}
	})
}

// TestBreak3QueueLiveStaleCandidateBlocksDeadClaim: producers B (alive)
// and A both load tail = 128 with room for one more 128-byte record; B
// stores its candidate (128, 128) in its slot, A wins the CAS, B's CAS
// fails, B finds the queue full and gives up (ErrFull; a blocking Claim
// would wait for room instead). B's slot still holds its candidate: the
// claim loop never takes it back. A is killed in the middle of its claim.
// The consumer, at 128, finds the unwritten record covered by A's slot
// (dead) and by B's (alive): gap() waits for any live producer whose slot
// covers the position, so it waits for B, which has no claim there, for
// ever. The dead producer's record is never skipped, the queue stays full,
// and B's next claim, which would overwrite the candidate, waits for room:
// nothing moves again.
func TestBreak3QueueLiveStaleCandidateBlocksDeadClaim(t *testing.T) {
	name, b, q := newStallQueue(t, 8)
	if err := q.Send(make([]byte, q.MaxMessage())); err != nil { // [0, 128)
		t.Fatal(err)
	}
	stall := startStalled(t, name, b, q.MaxMessage()) // candidate (128, 128)
	hold := startHolder(t, name, b, q.MaxMessage())   // claims [128, 256)
	atomic.StoreInt32(st3Flag(b, st3FlagCmd), 1)
	if r := st3Wait(t, b, st3FlagResult, 10*time.Second, "stalled claim"); r != 2 {
		t.Fatalf("the stalled claim: result %d, want 2 (ErrFull)", r)
	}
	hold.kill()
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Receive()
	if err != nil {
		t.Fatal(err)
	}
	c.Release(m)
	start := time.Now()
	for {
		st, _ := q.Stats()
		if st.Head == st.Tail {
			t.Logf("the dead claim skipped after %v (skipped %d)", time.Since(start), st.Skipped)
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("the dead producer's claim still blocks the queue after %v (the live producer's slot holds its failed candidate):\n%s", time.Since(start), q.debugState())
		}
		c.ReceiveTimeout(10 * time.Millisecond)
	}
	if err := q.SendTimeout([]byte("after"), time.Second); err != nil {
		t.Fatal(err)
	}
	if m, err := c.ReceiveTimeout(time.Second); err != nil || string(m.Bytes()) != "after" {
		t.Fatalf("receive after the skip: %q, %v", m.Bytes(), err)
	}
	stall.kill()
}

// TestBreak3QueueDeadStaleCandidateSkipsMessage: producer B is killed
// between storing its candidate (0, 128) and its CAS; producer A claimed
// [0, 32) in the meantime and is killed holding it; producer C (alive)
// commits a message at [32, 128). The consumer finds only dead slots over
// position 0 and skips to the end of "the" dead claim: the first slot
// whose end is tail, a written record or another claim's start. B's slot
// comes first and its end, 128, is tail: the consumer jumps over C's
// committed message, which is lost (and the skip is counted as one dead
// claim).
func TestBreak3QueueDeadStaleCandidateSkipsMessage(t *testing.T) {
	name, b, q := newStallQueue(t, 8)
	stall := startStalled(t, name, b, q.MaxMessage()) // slot 0: candidate (0, 128)
	hold := startHolder(t, name, b, 16)               // slot 1: claims [0, 32)
	msg := make([]byte, 80)                           // [32, 128)
	copy(msg, "a committed message")
	if err := q.Send(msg); err != nil {
		t.Fatal(err)
	}
	stall.kill()
	hold.kill()
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.ReceiveTimeout(2 * time.Second)
	st, _ := q.Stats()
	if err != nil {
		t.Fatalf("the live producer's committed message was not delivered: %v (stats %+v)", err, st)
	}
	if string(m.Bytes()[:19]) != "a committed message" {
		t.Fatalf("received %q", m.Bytes())
	}
}

// TestBreak3QueueDeadCandidateHoldsOnlySlot: a queue with one producer
// slot (QueueSpec.Producers: 1); its producer is killed between storing its
// candidate (0, 32) in the slot and its CAS of tail, so nothing was claimed.
// getSlot takes a dead process's slot only when the claim in it ends at or
// before head ("its last claim was consumed"): the candidate ends at 32,
// head is 0 and stays 0 (nothing is in the queue, and nothing can be put
// in without a slot). Every producer waits for a slot for ever.
func TestBreak3QueueDeadCandidateHoldsOnlySlot(t *testing.T) {
	name, b, q := newStallQueue(t, 1)
	stall := startStalled(t, name, b, 16)
	stall.kill()
	start := time.Now()
	if err := q.SendTimeout([]byte("hello"), 2*time.Second); err != nil {
		t.Fatalf("send after the only producer died before its CAS: %v after %v\n%s", err, time.Since(start), q.debugState())
	}
	t.Logf("sent after %v", time.Since(start))
}

var _ = os.Getpid
