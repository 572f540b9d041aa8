//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestBreakRWInuseBitClearedUnderReader: a writer marks a free slot (CAS
// from 0 to mark) and, before it sets the slot's idle bit, a reader claims
// the marked slot and counts itself in it. The writer must notice (its
// second look at the slot) and wait for the reader, and a later writer must
// see the reader too. (Under the protocol of an index of busy slots that
// readers set and writers cleared, a writer that had loaded a slot as free
// cleared the bit of a reader that had counted itself just after, and the
// next writer skipped the reader's slot and got in beside it.)
//
// The writer is the library's own Lock, stopped (userfaultfd) between its
// mark of the slot (page 2) and its setting of the bit (page 1). The reader
// follows the protocol step by step: claim the marked slot, clear its bit,
// load w.
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
	// w and the idle words are on page 1.
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
	if a := uintptr(unsafe.Pointer(&rw1.idle[readerHome/64])); a&^(page-1) != page1 {
		t.Fatalf("layout: idle word not on page 1")
	}
	bit := uint64(1) << (readerHome % 64)
	idle := &rw2.idle[readerHome/64]

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

	// Let writer 1 run until it has touched the home slot (page 2), then
	// stop it at its next touch of page 1: its setting of the bit.
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
				paused = pg
			default:
				p.resume(pg)
			}
		case <-w1locked:
			t.Fatal("writer 1 got the lock without touching page 1 after the slot")
		case <-timeout:
			t.Fatal("writer 1 never reached the slot")
		}
	}
	go func() {
		for pg := range p.faults {
			p.resume(pg)
		}
	}()
	if v := atomic.LoadUint64(rw2.home()); v != rMark || atomic.LoadUint64(idle)&bit != 0 {
		t.Fatalf("writer 1 stopped in an unexpected place: slot %#x, idle bit %v", v, atomic.LoadUint64(idle)&bit != 0)
	}
	// The reader claims the marked slot and clears its bit...
	if !atomic.CompareAndSwapUint64(rw2.home(), rMark, readerOne) {
		t.Fatal("reader: could not claim the marked slot")
	}
	atomic.AndUint64(idle, ^bit)
	// ... and is preempted before its load of w. Writer 1 sets the bit,
	// looks at the slot again, and must wait for the reader.
	p.resume(paused)
	select {
	case <-w1locked:
		t.Fatal("writer 1 got the lock while a reader had counted itself in the slot it marked")
	case <-time.After(100 * time.Millisecond):
	}
	if atomic.LoadUint64(idle)&bit != 0 {
		t.Fatal("the slot a reader holds is marked idle after the writer's second look")
	}
	// The reader loads w: held, so it backs out, as RLock does.
	if atomic.LoadUint64(&rw2.w.state)&mHeld == 0 {
		t.Fatal("reader: w free while writer 1 waits")
	}
	rw2.giveBack(int(readerHome))
	select {
	case <-w1locked:
	case <-time.After(10 * time.Second):
		t.Fatal("writer 1 did not get the lock once the reader backed out")
	}
	close(w1unlock)
	<-w1done
	// The reader tries again and reads; a second writer must wait.
	rw2.RLock()
	err = rw2.LockTimeout(200 * time.Millisecond)
	if err == nil || errors.Is(err, ErrOwnerDead) {
		rw2.Unlock()
		rw2.RUnlock()
		t.Fatalf("writer 2 got the write lock (%v) while a reader holds a read lock", err)
	}
	rw2.RUnlock()
}

// TestBreakRWInuseBitClearedUnderRealReader is the same race seen from the
// other side: the reader is the library's RLock, stopped (userfaultfd)
// between its count in its slot and its load of w; the writer follows the
// protocol step by step (what Lock and readers do: lock w, load the slot,
// find it free, try to mark it, unlock). RLock then returns, and a writer's
// Lock must wait for it.
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
	// w at the end of page 0; drain, the idle words and the slots on page 1.
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
	if uintptr(unsafe.Pointer(&rw2.w.state))&^(page-1) != base2 || uintptr(unsafe.Pointer(&rw2.idle[0]))&^(page-1) != base2+page {
		t.Fatal("layout: want w on page 0, the idle words on page 1")
	}
	rw1.RLock() // leaves the home slot free (0)
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
	// The reader: RLock counts itself in its slot and stops at its load of
	// w.
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
	if atomic.LoadUint64(rw1.home()) != readerOne {
		t.Fatalf("reader stopped in an unexpected place: slot %#x", atomic.LoadUint64(rw1.home()))
	}
	// Writer 1 marks the slot it loaded as free, as readers does: the CAS
	// from 0 fails, so it leaves the slot (and its bit) alone, finds no
	// other reader, does its work and unlocks.
	if atomic.CompareAndSwapUint64(rw1.home(), 0, rMark) {
		t.Fatal("marked a slot a reader holds")
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
		t.Fatalf("a writer got the write lock (%v) while RLock's read lock is held: slot %#x", err, atomic.LoadUint64(rw1.home()))
	}
}
