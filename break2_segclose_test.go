package shm

import (
	"errors"
	"testing"
	"unsafe"
)

// TestBreak2SegmentCloseUnderManaged: Managed.Segment hands out the
// *Segment (documented for its name, size and owner settings), whose Close
// unmaps the memory behind the Managed's back: the Managed is not told, its
// calls still register and go ahead. Memory mapped next (another segment of
// the same size, here) lands at the same address, and a Managed call then
// works on that other segment's bytes: Lock writes this process's token
// into it and reports success. Managed.Close's care (no call touches memory
// mapped anew) is bypassed by one call on the object it returns.
func TestBreak2SegmentCloseUnderManaged(t *testing.T) {
	c := Config{Name: testName(t), Size: 64}
	c.AddLock(LockMutex, 0, 64)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := uintptr(unsafe.Pointer(&m.seg.data[0]))
	size := len(m.seg.data)
	m.Segment().Close()

	other, err := Create(testName(t), size)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if uintptr(unsafe.Pointer(&other.Bytes()[0])) != base {
		t.Skip("the new segment was not mapped at the same address")
	}
	g, err := m.Lock(0)
	if err == nil {
		defer g.Unlock()
		var set []int
		for i, b := range other.Bytes() {
			if b != 0 {
				set = append(set, i)
			}
		}
		t.Fatalf("Lock on a Managed whose Segment was closed succeeded, writing into another segment mapped at the same address (bytes %v changed)", set)
	}
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Lock after Segment().Close(): %v, want ErrClosed", err)
	}
}
