//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestBreakRWInuseBitClearedUnderReader: a writer clears the inuse bit of a
// slot it loaded as free; a reader that counted itself in that slot just
// after the writer's load, and checked the bit just before the clear, then
// loads w only after that writer has unlocked: it finds w free and reads,
// its slot's bit clear. The next writer skips the slot and gets in beside
// it. The protocol comment says the reader's load of w "sees" the writer,
// but the writer may be gone by then.
//
// The writer is the library's own Lock, stopped (userfaultfd) between its
// load of the slot and its clear of the bit. The reader follows the
// protocol step by step (it is RLock's fast path: CAS the home slot, load
// the inuse word, load w), with a pause between its load of the inuse word
// and its load of w, as a preemption there would make.
func TestBreakRWInuseBitClearedUnderReader(t *testing.T) {
	defer needProcs()()
	const page = 4096
	name := testName(t)
	seg1, err := Create(name, 3*page)
	if err != nil {
		t.Fatal(err)
	}
	defer seg1.Close()
	seg2, err := Open(name) // the reader's mapping, never paused
	if err != nil {
		t.Fatal(err)
	}
	defer seg2.Close()
	// Place the lock so that this process's home slot starts page 2 while
	// w and the inuse words are on page 1: the writer's load of the slot
	// and its clear of the bit then touch different pages.
	off := 2*page - int(unsafe.Offsetof(RWMutex{}.slots)) - 8*int(readerHome)
	rw1, err := View[RWMutex](seg1.Bytes()[off:]) // the writer's
	if err != nil {
		t.Fatal(err)
	}
	rw2, err := View[RWMutex](seg2.Bytes()[off:]) // the reader's and the second writer's
	if err != nil {
		t.Fatal(err)
	}
	base1 := uintptr(unsafe.Pointer(&seg1.Bytes()[0]))
	page1, page2 := base1+page, base1+2*page
	if a := uintptr(unsafe.Pointer(&rw1.slots[readerHome])); a != page2 {
		t.Fatalf("layout: home slot at %#x, want %#x", a, page2)
	}
	if a := uintptr(unsafe.Pointer(&rw1.inuse[readerHome/64])); a&^(page-1) != page1 {
		t.Fatalf("layout: inuse word not on page 1")
	}

	// A reader came and went: its slot is free, its inuse bit still set
	// (only writers clear bits).
	rw2.RLock()
	rw2.RUnlock()
	if atomic.LoadUint64(rw2.homeBits())&readerBit == 0 || atomic.LoadUint64(rw2.home()) != 0 {
		t.Fatal("setup: want a free home slot with its inuse bit set")
	}

	p, err := newPauser(page1, 2*page)
	if err != nil {
		t.Skipf("userfaultfd in minor-fault mode unavailable: %v", err)
	}
	defer p.close()
	if err := p.zap(page1, 2*page); err != nil {
		t.Fatal(err)
	}

	// Writer 1: the library's Lock on the paused mapping.
	w1locked := make(chan struct{})
	w1unlock := make(chan struct{})
	w1done := make(chan struct{})
	go func() {
		defer close(w1done)
		rw1.Lock()
		close(w1locked)
		<-w1unlock
		rw1.Unlock()
	}()

	// Let writer 1 run until it has loaded the home slot (page 2), then
	// stop it at its next touch of page 1: its clear of the bit.
	paused := uintptr(0)
	sawSlot := false
	timeout := time.After(10 * time.Second)
	for paused == 0 {
		select {
		case pg, ok := <-p.faults:
			if !ok {
				t.Fatal("userfaultfd closed")
			}
			switch {
			case pg == page2 && !sawSlot:
				sawSlot = true
				p.zap(page1, page) // the next touch of page 1 faults
				p.resume(page2)
			case pg == page1 && sawSlot:
				paused = pg // writer 1 stopped between its load of the slot and the clear
			default:
				p.resume(pg)
			}
		case <-w1locked:
			t.Fatal("writer 1 got the lock without touching the slot page after its load of it")
		case <-timeout:
			t.Fatal("writer 1 never reached the slot")
		}
	}
	// Let any other fault of page 1 through from now on.
	go func() {
		for pg := range p.faults {
			p.resume(pg)
		}
	}()

	// The reader, RLock's fast path, through the other mapping: count
	// itself in its home slot, load the inuse word (the bit is still set,
	// so it does not set it)...
	if !atomic.CompareAndSwapUint64(rw2.home(), 0, readerOne) {
		t.Fatal("reader: home slot not free")
	}
	if atomic.LoadUint64(rw2.homeBits())&readerBit == 0 {
		t.Fatal("reader: inuse bit already clear (the writer was not stopped in time)")
	}
	// ... and is preempted here. Writer 1 clears the bit, finds no reader,
	// and is in; it finishes and unlocks.
	p.resume(paused)
	select {
	case <-w1locked:
	case <-time.After(10 * time.Second):
		t.Fatal("writer 1 did not get the lock once resumed")
	}
	close(w1unlock)
	<-w1done
	// The reader resumes: w is free, so by the protocol it holds a read lock.
	if atomic.LoadUint64(&rw2.w.state)&mHeld != 0 {
		t.Fatal("reader: w still held after writer 1 unlocked")
	}
	t.Logf("reader holds a read lock: slot %#x, inuse bit %v", atomic.LoadUint64(rw2.home()),
		atomic.LoadUint64(rw2.homeBits())&readerBit != 0)

	// Writer 2 must wait for that reader.
	err = rw2.LockTimeout(200 * time.Millisecond)
	if err == nil || errors.Is(err, ErrOwnerDead) {
		rw2.Unlock()
		rw2.RUnlock()
		t.Fatalf("writer 2 got the write lock (%v) while a reader holds a read lock: the inuse bit of its slot was cleared under it", err)
	}
	rw2.RUnlock()
}

// TestBreakRWInuseBitClearedUnderRealReader is the same hole seen from the
// other side: the reader is the library's RLock, stopped (userfaultfd)
// between its load of the inuse word and its load of w; the writer follows
// the protocol step by step (what Lock and readers do: lock w, load the
// slot, find it free, clear its bit, unlock). RLock then returns with its
// share counted in a slot whose bit is clear, and a writer's Lock succeeds
// beside it.
func TestBreakRWInuseBitClearedUnderRealReader(t *testing.T) {
	defer needProcs()()
	const page = 4096
	name := testName(t)
	seg1, err := Create(name, 2*page)
	if err != nil {
		t.Fatal(err)
	}
	defer seg1.Close()
	seg2, err := Open(name) // the reader's mapping, paused on w's page
	if err != nil {
		t.Fatal(err)
	}
	defer seg2.Close()
	// w at the end of page 0; drain, the inuse words and the slots on page 1.
	off := page - 16
	rw1, err := View[RWMutex](seg1.Bytes()[off:]) // the writers'
	if err != nil {
		t.Fatal(err)
	}
	rw2, err := View[RWMutex](seg2.Bytes()[off:]) // the reader's
	if err != nil {
		t.Fatal(err)
	}
	base2 := uintptr(unsafe.Pointer(&seg2.Bytes()[0]))
	if uintptr(unsafe.Pointer(&rw2.w.state))&^(page-1) != base2 || uintptr(unsafe.Pointer(rw2.homeBits()))&^(page-1) != base2+page {
		t.Fatal("layout: want w on page 0, the inuse words on page 1")
	}
	rw1.RLock() // leaves the home slot free with its bit set
	rw1.RUnlock()

	p, err := newPauser(base2, page)
	if err != nil {
		t.Skipf("userfaultfd in minor-fault mode unavailable: %v", err)
	}
	defer p.close()

	// Writer 1 locks w and loads the reader's slot: free.
	rw1.w.Lock()
	if atomic.LoadUint64(rw1.home()) != 0 {
		t.Fatal("slot not free")
	}
	// The reader: RLock counts itself in its slot, sees the bit set, and
	// stops at its load of w.
	if err := p.zap(base2, page); err != nil {
		t.Fatal(err)
	}
	rdone := make(chan struct{})
	go func() {
		rw2.RLock()
		close(rdone)
	}()
	var pg uintptr
	select {
	case pg = <-p.faults:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader never touched w")
	}
	if atomic.LoadUint64(rw1.home()) != readerOne || atomic.LoadUint64(rw1.homeBits())&readerBit == 0 {
		t.Fatalf("reader stopped in an unexpected place: slot %#x", atomic.LoadUint64(rw1.home()))
	}
	// Writer 1 clears the bit of the slot it loaded as free (as readers
	// does), finds no other reader, does its work and unlocks.
	for {
		old := atomic.LoadUint64(rw1.homeBits())
		if atomic.CompareAndSwapUint64(rw1.homeBits(), old, old&^readerBit) {
			break
		}
	}
	rw1.w.Unlock()
	// The reader goes on: w is free, RLock returns.
	go func() {
		for pg := range p.faults {
			p.resume(pg)
		}
	}()
	p.resume(pg)
	select {
	case <-rdone:
	case <-time.After(10 * time.Second):
		t.Fatal("RLock did not return once resumed")
	}
	defer rw2.RUnlock()
	err = rw1.LockTimeout(200 * time.Millisecond)
	if err == nil || errors.Is(err, ErrOwnerDead) {
		rw1.Unlock()
		t.Fatalf("a writer got the write lock (%v) while RLock's read lock is held: slot %#x, inuse bit %v", err,
			atomic.LoadUint64(rw1.home()), atomic.LoadUint64(rw1.homeBits())&readerBit != 0)
	}
}
