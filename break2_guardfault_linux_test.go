//go:build linux

package shm

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"unsafe"
)

// TestBreak2GuardUnlockNestedFault: Guard.Unlock runs the unlock under
// guarded (catchFault), and documents that it does nothing when the lock's
// memory is gone. But RUnlock's slow path (runlockMiss) has its own guard,
// panicOnFault, which turns the fault into a panic with an ErrCorrupt
// error; the outer catchFault only converts panics that carry a fault
// address and re-panics anything else: the process crashes. Here the read
// share is not in the home slot (another process holds that one: common
// with 256 slots and a handful of readers) and lies on a page that a peer
// cut off with ftruncate; the home slot's page is still there, so RUnlock's
// fast path does not fault and the fault happens in runlockSlow. (Mutex's
// unlockSlow and the RWMutex write Unlock have the same nesting; their
// window is narrower, between the fast path's CAS and the slow path's load
// of the same word.)
func TestBreak2GuardUnlockNestedFault(t *testing.T) {
	// Place the RWMutex (after k mutexes) so that this process's home slot
	// is on page 0 and the last slots on page 1.
	k := -1
	var l layout
	for try := 0; try < 200 && k < 0; try++ {
		specs := make([]LockSpec, try+1)
		for j := range specs {
			specs[j] = LockSpec{Kind: LockMutex, Offset: j, Len: 1}
		}
		specs[try].Kind = LockRW
		l, _ = plan(uint64(len(specs)), specs, nil, nil, nil, nil)
		slots := int(l.locks[try].prim) + int(unsafe.Offsetof(RWMutex{}.slots))
		home := slots + 8*int(readerHome)
		if home+8 <= 4096 && slots+8*255 >= 4096 {
			k = try
		}
	}
	if k < 0 {
		t.Skipf("no layout puts home slot %d on page 0 and a later one on page 1", readerHome)
	}
	c := Config{Name: testName(t), Size: k + 1}
	for j := 0; j < k; j++ {
		c.AddLock(LockMutex, j, 1)
	}
	c.AddLock(LockRW, k, 1)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rw, err := m.RWMutex(k)
	if err != nil {
		t.Fatal(err)
	}
	// Another process's read locks in the home slot and the rest of page 0.
	other := uint64(readerID ^ 1<<40)
	last := -1
	for i := int(readerHome); uintptr(unsafe.Pointer(&rw.slots[i]))+8 <= uintptr(unsafe.Pointer(&m.seg.Bytes()[4096])); i++ {
		atomic.StoreUint64(&rw.slots[i], other|1)
		last = i
	}
	g, err := m.RLock(k)
	if err != nil {
		t.Fatal(err)
	}
	mine := -1
	for i := range rw.slots {
		if atomic.LoadUint64(&rw.slots[i]) == readerOne {
			mine = i
		}
	}
	if mine != last+1 {
		t.Fatalf("read share in slot %d, want %d (first slot on page 1)", mine, last+1)
	}
	// A peer shrinks the file to one page.
	if err := os.Truncate(Dir+"/"+c.Name, 4096); err != nil {
		t.Fatal(err)
	}
	// Other calls report ErrCorrupt.
	if _, err := m.RLockTimeout(k, 0); !errors.Is(err, ErrCorrupt) {
		t.Logf("RLockTimeout after the shrink: %v (want ErrCorrupt)", err)
	}
	var panicked any
	func() {
		defer func() { panicked = recover() }()
		g.Unlock()
	}()
	if panicked != nil {
		t.Fatalf("Guard.Unlock panicked (uncaught, this crashes a program) instead of doing nothing: %v", fmt.Sprint(panicked))
	}
}
