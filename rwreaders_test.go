package shm

import (
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Many reader processes on one RWMutex: every read share is tracked by
// process (no untracked counter), so a writer never gets in while any of
// them reads, a stray RUnlock in a process that reads nothing releases
// nobody's share, and a reader that dies never blocks writers.

func init() {
	// args: name, group: read-lock lock 0 of the managed segment, count
	// ourselves in the first word of its data, hold the lock until our
	// group's word (1 + group) is nonzero, release it and exit.
	registerChild("rw-many-reader", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		g, err := m.RLockTimeout(0, time.Minute)
		if err != nil {
			return err
		}
		d := m.Data()
		atomic.AddUint32(word32(d, 0), 1)
		release := word32(d, 4*(1+atoi(args[1])))
		for atomic.LoadUint32(release) == 0 {
			time.Sleep(time.Millisecond)
		}
		g.Unlock()
		return nil
	})
}

func word32(b []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

func TestRWMutexManyReaderProcesses(t *testing.T) {
	// Group 0 fills the 32 reader slots this lock once had; group 1 came
	// after and was not tracked. The long run goes past today's 256 slots:
	// group 1 waits until group 0 leaves.
	first, late := 32, 8
	if long() {
		first, late = 256, 44
	}
	name := testName(t)
	m, err := Config{Name: name, Size: 64, Locks: []LockSpec{{LockRW, 0, 64}}}.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := m.Data()
	ready := word32(d, 0)
	waitReady := func(n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for atomic.LoadUint32(ready) < uint32(n) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d readers got in", atomic.LoadUint32(ready), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var group [2][]*child
	for i := 0; i < first; i++ {
		group[0] = append(group[0], startChild(t, "rw-many-reader", name, "0"))
	}
	waitReady(first)
	for i := 0; i < late; i++ {
		group[1] = append(group[1], startChild(t, "rw-many-reader", name, "1"))
	}
	rw, err := m.RWMutex(0)
	if err != nil {
		t.Fatal(err)
	}
	holding := min(first+late, 256)
	check := func(when string) {
		t.Helper()
		if rw.TryLock() {
			rw.Unlock()
			t.Fatalf("%s: TryLock succeeded while processes hold read locks", when)
		}
		if g, ok := m.TryLock(0); ok {
			g.Unlock()
			t.Fatalf("%s: Managed.TryLock succeeded while processes hold read locks", when)
		}
		if err := rw.LockTimeout(30 * time.Millisecond); !errors.Is(err, ErrTimeout) {
			if err == nil {
				rw.Unlock()
			}
			t.Fatalf("%s: LockTimeout while processes hold read locks: %v", when, err)
		}
	}
	waitReady(holding)
	time.Sleep(50 * time.Millisecond) // a 257th reader, if any, is waiting
	if got := int(atomic.LoadUint32(ready)); got != holding {
		t.Fatalf("%d readers got in at once, want %d", got, holding)
	}
	check("all reading")
	st, err := m.LockState(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Readers) != holding {
		t.Errorf("LockState shows %d readers, want %d", len(st.Readers), holding)
	}
	for _, r := range st.Readers {
		if !r.Alive {
			t.Errorf("LockState shows a live reader as dead: %+v", r)
		}
	}
	// This process holds no read lock: its RUnlocks must release nothing.
	for i := 0; i < first+late; i++ {
		rw.RUnlock()
	}
	check("after stray RUnlocks")
	// The first group leaves; the late readers still read.
	atomic.StoreUint32(word32(d, 4), 1)
	for _, c := range group[0] {
		c.wait(time.Minute)
	}
	waitReady(first + late)
	check("only the late readers reading")
	// Kill half of the late readers and let the others go: the dead
	// readers' shares must not keep the writer out.
	for i, c := range group[1] {
		if i%2 == 0 {
			c.kill()
		}
	}
	atomic.StoreUint32(word32(d, 8), 1)
	start := time.Now()
	if err := rw.LockTimeout(5 * time.Second); err != nil {
		t.Fatalf("writer after half the late readers died and the others left: %v", err)
	}
	t.Logf("%d+%d readers: the writer got in %v after the last ones were killed or released", first, late, time.Since(start))
	rw.Unlock()
	for i, c := range group[1] {
		if !c.killed {
			if err := c.waitErr(time.Minute); err != nil {
				t.Errorf("late reader %s: %v\n%s", strconv.Itoa(i), err, c.output())
			}
		}
	}
}
