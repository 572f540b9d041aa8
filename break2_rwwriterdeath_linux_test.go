//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Control words of the writer-death trial, on page 0 of its segment (the
// RWMutex's w and idle words are on page 1, the parent's home slot starts
// page 2).
type wdFlags struct {
	state int32 // child: 1 stopped at its setting of the bit, 2 stopped at its second look, -1 no userfaultfd
	goOn  int32 // parent: 1 let the writer set the bit
}

// wdOff places the RWMutex so that slot home starts page 2.
func wdOff(home int) int { return 2*4096 - int(unsafe.Offsetof(RWMutex{}.slots)) - 8*home }

func init() {
	// args: name, home: Lock the RWMutex at wdOff(home), stopping
	// (userfaultfd) at the writer's setting of slot home's idle bit after
	// marking it, then, once told, at its second look at the slot; wait
	// there to be killed.
	registerChild("brk2-wdeath", func(args []string) error {
		needProcs()
		home := atoi(args[1])
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		b := seg.Bytes()
		f, _ := View[wdFlags](b)
		look, err := Open(args[0]) // to read the words without faulting
		if err != nil {
			return err
		}
		defer look.Close()
		seen, _ := View[RWMutex](look.Bytes()[wdOff(home):])
		rw, _ := View[RWMutex](b[wdOff(home):])
		page1 := uintptr(unsafe.Pointer(&b[4096]))
		page2 := page1 + 4096
		p, err := newPauser(page1, 2*4096)
		if err != nil {
			atomic.StoreInt32(&f.state, -1)
			return err
		}
		if err := p.zap(page1, 2*4096); err != nil {
			return err
		}
		bit := uint64(1) << (home % 64)
		idle := &seen.idle[home/64]
		done := make(chan struct{})
		go func() {
			rw.Lock()
			close(done)
		}()
		step := func(stop func(pg uintptr) bool) error {
			timeout := time.After(10 * time.Second)
			for {
				select {
				case pg := <-p.faults:
					if stop(pg) {
						return nil
					}
					other := page1
					if pg == page1 {
						other = page2
					}
					p.zap(other, 4096)
					p.resume(pg)
				case <-done:
					return errors.New("Lock returned before the stop")
				case <-timeout:
					return fmt.Errorf("no stop: slot %#x idle %#x", atomic.LoadUint64(&seen.slots[home]), atomic.LoadUint64(idle))
				}
			}
		}
		// The Or of the bit: page 1, after the slot was marked.
		if err := step(func(pg uintptr) bool {
			return pg == page1 && atomic.LoadUint64(&seen.slots[home]) == rMark && atomic.LoadUint64(idle)&bit == 0
		}); err != nil {
			return err
		}
		atomic.StoreInt32(&f.state, 1)
		for atomic.LoadInt32(&f.goOn) == 0 {
			time.Sleep(time.Millisecond)
		}
		// The second look: page 2, after the bit was set.
		if err := step(func(pg uintptr) bool {
			return pg == page2 && atomic.LoadUint64(idle)&bit != 0
		}); err != nil {
			return err
		}
		atomic.StoreInt32(&f.state, 2)
		time.Sleep(time.Minute) // to be killed
		return nil
	})
}

// TestBreak2RWWriterDiesBetweenBitAndSecondLook: a writer marks a free
// slot (CAS 0 -> mark); before it sets the slot's idle bit, a reader claims
// the marked slot, clears the bit (still clear), loads w (held) and backs
// out, leaving the slot 0. The writer sets the bit on that free slot and
// dies before its second look at the slot, which would have cleared the bit
// again. Nobody ever clears it then: the slot is free with its idle bit set,
// against the invariant. The next reader whose home it is counts itself
// there (fast path, or take() from 0: neither touches the bit), and every
// writer from then on skips the slot and gets in beside it.
func TestBreak2RWWriterDiesBetweenBitAndSecondLook(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 3*4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	off := wdOff(int(readerHome))
	f, _ := View[wdFlags](seg.Bytes())
	rw, _ := View[RWMutex](seg.Bytes()[off:])
	if uintptr(unsafe.Pointer(rw.home())) != uintptr(unsafe.Pointer(&seg.Bytes()[2*4096])) {
		t.Fatal("layout")
	}
	bit := uint64(1) << (readerHome % 64)
	idle := &rw.idle[readerHome/64]
	// Every slot marked (a write lock), then the home slot freed by a read
	// lock of ours: the writer's scan finds only that slot to mark.
	rw.Lock()
	rw.Unlock()
	rw.RLock()
	rw.RUnlock()
	if v := atomic.LoadUint64(rw.home()); v != 0 || atomic.LoadUint64(idle)&bit != 0 {
		t.Fatalf("home slot %#x bit %v", v, atomic.LoadUint64(idle)&bit != 0)
	}

	c := startChild(t, "brk2-wdeath", name, strconv.Itoa(int(readerHome)))
	waitState := func(want int32) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := atomic.LoadInt32(&f.state)
			if s == want {
				return
			}
			if s < 0 {
				c.wait(10 * time.Second)
				t.Skip("userfaultfd in minor-fault mode unavailable")
			}
			select {
			case <-c.done:
				t.Fatalf("writer child exited: %v\n%s", c.err, c.output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("writer never reached state %d (slot %#x idle %#x)", want, atomic.LoadUint64(rw.home()), atomic.LoadUint64(idle))
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitState(1)
	// The reader: RLock claims the marked slot, finds w held and backs out.
	if rw.TryRLock() {
		t.Fatal("TryRLock succeeded while a writer holds w")
	}
	if v := atomic.LoadUint64(rw.home()); v != 0 || atomic.LoadUint64(idle)&bit != 0 {
		t.Fatalf("after the reader backed out: slot %#x bit %v", v, atomic.LoadUint64(idle)&bit != 0)
	}
	atomic.StoreInt32(&f.goOn, 1)
	waitState(2)
	c.kill()
	t.Logf("writer killed: slot %#x, idle bit set %v, w %#x", atomic.LoadUint64(rw.home()), atomic.LoadUint64(idle)&bit != 0, atomic.LoadUint64(&rw.w.state))

	// A reader comes (recovering w from the dead writer) and reads.
	if err := rw.RLockTimeout(5 * time.Second); err != nil && !errors.Is(err, ErrOwnerDead) {
		t.Fatal(err)
	}
	defer rw.RUnlock()
	v, set := atomic.LoadUint64(rw.home()), atomic.LoadUint64(idle)&bit != 0
	got, out := tryWriteFromChild(t, name, off, "lock", 300*time.Millisecond)
	if got {
		t.Fatalf("a writer got the write lock (%s) while a reader holds a read lock: its slot %#x was left free with its idle bit set (%v) by a writer killed between setting the bit and its second look", out, v, set)
	}
	if set {
		t.Errorf("invariant broken: slot %#x holds a read lock with its idle bit set", v)
	}
}
