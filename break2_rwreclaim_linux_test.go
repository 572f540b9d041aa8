//go:build linux && (amd64 || arm64)

package shm

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Control words of a filler child, at fillFlagsOff of its segment.
type fillFlags struct {
	filled   int32 // child: 1 holds its read locks
	release  int32 // parent: 1 release them
	released int32 // child: 1 released
}

const fillFlagsOff = 256

func init() {
	// args: name, off, n: take n read locks on the RWMutex at off, hold
	// them until told, release them, then stay until killed.
	registerChild("brk2-fill", func(args []string) error {
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		f, _ := View[fillFlags](seg.Bytes()[fillFlagsOff:])
		rw, _ := View[RWMutex](seg.Bytes()[atoi(args[1]):])
		n := atoi(args[2])
		for i := 0; i < n; i++ {
			rw.RLock()
		}
		atomic.StoreInt32(&f.filled, 1)
		for atomic.LoadInt32(&f.release) == 0 {
			time.Sleep(time.Millisecond)
		}
		for i := 0; i < n; i++ {
			rw.RUnlock()
		}
		atomic.StoreInt32(&f.released, 1)
		time.Sleep(time.Minute)
		return nil
	})
}

// TestBreak2RWReclaimDeadOrder: reclaimDead frees a dead reader's slot
// with a CAS to 0 and only then clears its idle bit. A slot whose dead
// reader had its bit set (it was killed between claiming a marked slot and
// clearing the bit: TestBreakRWDeadReaderSlotNeverReclaimed makes that
// state) is, in between, free with its bit set. reclaimDead also runs in a
// reader that found every slot taken, which holds nothing (w is free): if
// that reader is preempted between the two steps, another reader counts
// itself in the free slot (take() from 0 does not touch the bit) and reads,
// invisible to writers: the next writer skips the slot and gets in beside
// it. Here the other 255 slots are held by one live process (255 read
// locks each); the reclaiming reader is stopped by userfaultfd between its
// CAS (page 2) and its clearing of the bit (page 1).
func TestBreak2RWReclaimDeadOrder(t *testing.T) {
	defer needProcs()()
	name := testName(t)
	seg1, err := Create(name, 3*leakPage)
	if err != nil {
		t.Fatal(err)
	}
	defer seg1.Close()
	seg2, err := Open(name) // unpaused mapping
	if err != nil {
		t.Fatal(err)
	}
	defer seg2.Close()
	lf, _ := View[leakFlags](seg2.Bytes())
	ff, _ := View[fillFlags](seg2.Bytes()[fillFlagsOff:])
	rw1, _ := View[RWMutex](seg1.Bytes()[leakRWOff:]) // the paused reclaimer's
	rw2, _ := View[RWMutex](seg2.Bytes()[leakRWOff:])
	rw2.Lock() // marks every slot
	rw2.Unlock()

	// A reader killed between its claim of a marked slot and its clearing
	// of the bit.
	d := startChild(t, "brk-rlock-stop", name)
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadInt32(&lf.paused) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reader never stopped")
		}
		time.Sleep(time.Millisecond)
	}
	if atomic.LoadInt32(&lf.paused) < 0 {
		d.wait(10 * time.Second)
		t.Skip("userfaultfd in minor-fault mode unavailable")
	}
	d.kill()
	dead := -1
	for i := range rw2.slots {
		if atomic.LoadUint64(&rw2.slots[i])&rCountMask != 0 {
			dead = i
		}
	}
	if dead < 0 || atomic.LoadUint64(&rw2.idle[dead/64])&(1<<(dead%64)) == 0 {
		t.Fatalf("no dead slot with its bit set (slot %d)", dead)
	}
	dbit := uint64(1) << (dead % 64)
	didle := &rw2.idle[dead/64]

	// Every other slot taken by one live process.
	fill := startChild(t, "brk2-fill", name, strconv.Itoa(leakRWOff), strconv.Itoa(255*255))
	deadline = time.Now().Add(30 * time.Second)
	for atomic.LoadInt32(&ff.filled) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("filler never filled\n%s", fill.output())
		}
		time.Sleep(time.Millisecond)
	}
	for i := range rw2.slots {
		if v := atomic.LoadUint64(&rw2.slots[i]); v&rCountMask == 0 {
			t.Fatalf("slot %d free (%#x) after the fill", i, v)
		}
	}

	// The reclaimer: a reader that finds every slot taken.
	base1 := uintptr(unsafe.Pointer(&seg1.Bytes()[0]))
	page1, page2 := base1+leakPage, base1+2*leakPage
	p, err := newPauser(page1, 2*leakPage)
	if err != nil {
		t.Skipf("userfaultfd in minor-fault mode unavailable: %v", err)
	}
	defer p.close()
	p.zap(page1, 2*leakPage)
	r1done := make(chan error, 1)
	go func() { r1done <- rw1.RLockTimeout(20 * time.Second) }()
	r1stopped := make(chan struct{})
	go func() {
		defer close(r1stopped)
		stepUntilNoT(p, page1, page2, func(pg uintptr) bool {
			return pg == page1 && atomic.LoadUint64(&rw2.slots[dead]) == 0
		})
	}()
	select {
	case <-r1stopped:
	case err := <-r1done:
		// The reclaimer never left the slot free with its bit set (it got
		// in without that step): it holds a read lock now; a writer must
		// wait for it.
		p.close()
		if err != nil {
			t.Fatalf("the reclaiming reader: %v", err)
		}
		defer rw2.RUnlock()
		atomic.StoreInt32(&ff.release, 1)
		for atomic.LoadInt32(&ff.released) == 0 {
			time.Sleep(time.Millisecond)
		}
		if got, out := tryWriteFromChild(t, name, leakRWOff, "lock", 300*time.Millisecond); got {
			t.Fatalf("a writer got the write lock (%s) beside the reclaiming reader's read lock", out)
		}
		return
	case <-time.After(20 * time.Second):
		t.Fatal("the reclaiming reader never reclaimed")
	}
	var paused uintptr = page1
	resumeAll := func() {
		go func() {
			for pg := range p.faults {
				p.resume(pg)
			}
		}()
		p.resume(paused)
	}
	if atomic.LoadUint64(didle)&dbit == 0 {
		resumeAll()
		t.Fatal("stopped too late: the bit is clear")
	}
	// Another reader (here a goroutine of the same process, on the other
	// mapping) takes the freed slot and reads.
	if err := rw2.RLockTimeout(2 * time.Second); err != nil {
		resumeAll()
		t.Fatalf("second reader: %v", err)
	}
	v, set := atomic.LoadUint64(&rw2.slots[dead]), atomic.LoadUint64(didle)&dbit != 0
	// The filler leaves; a writer comes.
	atomic.StoreInt32(&ff.release, 1)
	for atomic.LoadInt32(&ff.released) == 0 {
		time.Sleep(time.Millisecond)
	}
	got, out := tryWriteFromChild(t, name, leakRWOff, "lock", 300*time.Millisecond)
	resumeAll()
	if err := <-r1done; err == nil {
		rw2.RUnlock()
	}
	rw2.RUnlock()
	if got {
		t.Fatalf("a writer got the write lock (%s) while a reader holds a read lock in slot %d (%#x, idle bit set %v), freed by a reclaiming reader stopped between its CAS and its clearing of the bit", out, dead, v, set)
	}
}

// stepUntilNoT is stepUntil without a test (for a goroutine): it returns
// when stop says so, or after 20 s.
func stepUntilNoT(p *pauser, a, b uintptr, stop func(pg uintptr) bool) bool {
	timeout := time.After(20 * time.Second)
	for {
		select {
		case pg, ok := <-p.faults:
			if !ok {
				return false
			}
			if stop(pg) {
				return true
			}
			other := a
			if pg == a {
				other = b
			}
			p.zap(other, 4096)
			p.resume(pg)
		case <-timeout:
			return false
		}
	}
}
