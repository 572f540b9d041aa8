package shm

import (
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	// args: name, timeout: try the write lock once; exit 0 if it timed
	// out, 1 if it got it (ready counts attempts).
	registerChild("brk-wtry", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		d, _ := time.ParseDuration(args[1])
		atomic.AddInt32(&a.ready, 1)
		err = a.rw.LockTimeout(d)
		if err == nil || errors.Is(err, ErrOwnerDead) {
			a.rw.Unlock()
			return errors.New("got the write lock")
		}
		if errors.Is(err, ErrTimeout) {
			return nil
		}
		return err
	})
}

// TestBreakRWNestedReadLocks: one process holds more than 255 read locks
// (several slots); a writer in another process must stay out until the
// last is released, and get in right after.
func TestBreakRWNestedReadLocks(t *testing.T) {
	name, _, a := newArea(t)
	const n = 1000
	for i := 0; i < n; i++ {
		if i%3 == 0 {
			if !a.rw.TryRLock() {
				t.Fatalf("TryRLock %d failed with no writer about", i)
			}
		} else {
			a.rw.RLock()
		}
	}
	busy := 0
	for i := range a.rw.slots {
		if a.rw.slots[i] != 0 {
			busy++
		}
	}
	if busy != (n+254)/255 {
		t.Errorf("%d read locks fill %d slots, want %d", n, busy, (n+254)/255)
	}
	try := func(what string, wantIn bool) {
		t.Helper()
		c := startChild(t, "brk-wtry", name, "150ms")
		err := c.waitErr(20 * time.Second)
		if wantIn && err == nil || !wantIn && err != nil {
			t.Fatalf("%s: writer in another process: %v\n%s", what, err, c.output())
		}
	}
	try("1000 read locks held", false)
	for i := 0; i < n-1; i++ {
		a.rw.RUnlock()
	}
	try("1 read lock held", false)
	a.rw.RUnlock()
	a.rw.RUnlock() // one too many: does nothing
	if err := a.rw.LockTimeout(time.Second); err != nil {
		t.Fatalf("no read lock held: Lock: %v", err)
	}
	a.rw.Unlock()
	_ = strconv.Itoa
}

// TestBreakLockStateReadersByProcess: LockState.Readers lists "processes
// holding read locks"; a process with more than 255 read locks holds
// several slots and must still be listed once.
func TestBreakLockStateReadersByProcess(t *testing.T) {
	m, err := Config{Name: testName(t), Size: 64, Locks: []LockSpec{{LockRW, 0, 64}}}.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rw, err := m.RWMutex(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		rw.RLock()
	}
	defer func() {
		for i := 0; i < 300; i++ {
			rw.RUnlock()
		}
	}()
	st, err := m.LockState(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Readers) != 1 {
		t.Errorf("one process holds 300 read locks; LockState lists %d readers: %+v", len(st.Readers), st.Readers)
	}
}
