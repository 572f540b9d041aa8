//go:build linux && (amd64 || arm64)

package shm

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestBreak2RWSameProcessClaimInvisible: goroutine 1 of a process claims a
// marked slot (CAS mark -> its token|1) and is preempted before it clears
// the slot's idle bit. Goroutine 2 of the same process RLocks: take() finds
// the process's own slot with room and counts itself there (token|2),
// without clearing the bit (only a claim of a marked slot does), loads w:
// free, and is inside with the slot's idle bit set. A writer in another
// process then skips the slot (its bit is set) and gets the write lock
// beside goroutine 2's read lock. No process dies: one preemption between
// two adjacent instructions of RLock is enough (a writer marks every free
// slot it passes, so every slot is marked after any write lock).
//
// Goroutine 1 is stopped by userfaultfd at its clearing of the bit (the idle
// words on page 1, the home slot on page 2 of its mapping).
func TestBreak2RWSameProcessClaimInvisible(t *testing.T) {
	defer needProcs()()
	const page = 4096
	name := testName(t)
	seg1, err := Create(name, 3*page)
	if err != nil {
		t.Fatal(err)
	}
	defer seg1.Close()
	seg2, err := Open(name) // goroutine 2's mapping, never paused
	if err != nil {
		t.Fatal(err)
	}
	defer seg2.Close()
	off := 2*page - int(unsafe.Offsetof(RWMutex{}.slots)) - 8*int(readerHome)
	rw1, err := View[RWMutex](seg1.Bytes()[off:])
	if err != nil {
		t.Fatal(err)
	}
	rw2, err := View[RWMutex](seg2.Bytes()[off:])
	if err != nil {
		t.Fatal(err)
	}
	base1 := uintptr(unsafe.Pointer(&seg1.Bytes()[0]))
	page1, page2 := base1+page, base1+2*page
	if a := uintptr(unsafe.Pointer(&rw1.slots[readerHome])); a != page2 {
		t.Fatalf("layout: home slot at %#x, want %#x", a, page2)
	}
	if a := uintptr(unsafe.Pointer(&rw1.idle[readerHome/64])); a&^(page-1) != page1 {
		t.Fatal("layout: idle word not on page 1")
	}
	bit := uint64(1) << (readerHome % 64)
	idle := &rw2.idle[readerHome/64]

	// Any write lock marks every free slot: the home slot is now marked.
	rw2.Lock()
	rw2.Unlock()
	if v := atomic.LoadUint64(rw2.home()); v != rMark || atomic.LoadUint64(idle)&bit == 0 {
		t.Fatalf("after a write lock: home slot %#x, bit %v; want marked", v, atomic.LoadUint64(idle)&bit != 0)
	}

	p, err := newPauser(page1, 2*page)
	if err != nil {
		t.Skipf("userfaultfd in minor-fault mode unavailable: %v", err)
	}
	defer p.close()
	if err := p.zap(page1, 2*page); err != nil {
		t.Fatal(err)
	}
	g1done := make(chan struct{})
	go func() {
		defer close(g1done)
		rw1.RLock()
	}()
	// Step goroutine 1 from fault to fault (each time dropping the other
	// page, so that its next touch of it faults again) until it touches
	// page 1 after its claim of the slot: the clearing of the bit.
	paused := stepUntil(t, p, g1done, page1, page2, func(pg uintptr) bool {
		return pg == page1 && atomic.LoadUint64(rw2.home()) == readerOne
	})
	resumeAll := func() {
		go func() {
			for pg := range p.faults {
				p.resume(pg)
			}
		}()
		p.resume(paused)
	}
	if v := atomic.LoadUint64(rw2.home()); v != readerOne || atomic.LoadUint64(idle)&bit == 0 {
		resumeAll()
		t.Fatalf("goroutine 1 stopped in an unexpected place: slot %#x, bit %v", v, atomic.LoadUint64(idle)&bit != 0)
	}

	// Goroutine 2 of the same process: RLock returns.
	g2 := make(chan struct{})
	go func() {
		rw2.RLock()
		close(g2)
	}()
	select {
	case <-g2:
	case <-time.After(5 * time.Second):
		resumeAll()
		t.Fatal("goroutine 2's RLock did not return")
	}
	v, set := atomic.LoadUint64(rw2.home()), atomic.LoadUint64(idle)&bit != 0
	t.Logf("goroutine 2 holds a read lock: slot %#x, idle bit set %v", v, set)

	// A writer in another process.
	got, out := tryWriteFromChild(t, name, off, "lock", 300*time.Millisecond)
	resumeAll()
	<-g1done
	rw2.RUnlock()
	rw2.RUnlock()
	if got {
		t.Fatalf("a writer in another process got the write lock (%s) while goroutine 2 held a read lock (slot %#x, idle bit set %v)", out, v, set)
	}
}
