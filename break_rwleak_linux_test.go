//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// Layout of the leak trials: flags on page 0; w and the inuse words at the
// end of page 1; the slots on page 2.
const (
	leakPage  = 4096
	leakRWOff = 2*leakPage - int(unsafe.Offsetof(RWMutex{}.slots)) + 16
)

type leakFlags struct {
	paused int32
	ready  int32
}

func init() {
	if uintptr(leakRWOff)+unsafe.Offsetof(RWMutex{}.inuse)+32 > 2*leakPage || uintptr(leakRWOff)+unsafe.Offsetof(RWMutex{}.slots) < 2*leakPage {
		panic("leak layout")
	}
	// args: name: RLock the lock at leakRWOff, stopping (userfaultfd) at
	// the first touch of page 1 after the home slot was counted, and wait
	// there to be killed.
	registerChild("brk-rlock-stop", func(args []string) error {
		needProcs()
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		b := seg.Bytes()
		f, _ := View[leakFlags](b)
		rw, _ := View[RWMutex](b[leakRWOff:])
		page1 := uintptr(unsafe.Pointer(&b[leakPage]))
		p, err := newPauser(page1, leakPage)
		if err != nil {
			atomic.StoreInt32(&f.paused, -1)
			return err
		}
		if err := p.zap(page1, leakPage); err != nil {
			return err
		}
		go func() {
			<-p.faults // never resumed
			atomic.StoreInt32(&f.paused, 1)
			time.Sleep(30 * time.Second) // the test kills us long before
			os.Exit(3)
		}()
		rw.RLock()
		atomic.StoreInt32(&f.paused, 2) // not reached
		time.Sleep(time.Hour)
		return nil
	})
}

// TestBreakRWDeadReaderSlotNeverReclaimed: a reader process killed after it
// counted itself in a slot and before it set the slot's inuse bit (a
// fresh lock's bits are all clear; a writer clears the bits of free slots)
// leaves its slot taken by a dead process, with its bit clear. Dead readers
// are reclaimed only through the inuse bits (a waiting writer's, or a
// reader's that finds every slot taken), so that slot is never freed: each
// such death costs one of the 256 slots for good. Once they are all gone,
// every reader waits forever.
func TestBreakRWDeadReaderSlotNeverReclaimed(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 3*leakPage)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	f, _ := View[leakFlags](seg.Bytes())
	rw, _ := View[RWMutex](seg.Bytes()[leakRWOff:])

	c := startChild(t, "brk-rlock-stop", name)
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadInt32(&f.paused) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reader never stopped")
		}
		time.Sleep(time.Millisecond)
	}
	if atomic.LoadInt32(&f.paused) < 0 {
		c.wait(10 * time.Second)
		t.Skip("userfaultfd in minor-fault mode unavailable")
	}
	c.kill()
	leaked := -1
	for i := range rw.slots {
		if v := atomic.LoadUint64(&rw.slots[i]); v != 0 {
			leaked = i
			if atomic.LoadUint64(&rw.inuse[i/64])&(1<<(i%64)) != 0 {
				t.Fatalf("slot %d: bit set; the reader stopped later than intended", i)
			}
			if owner.Alive(unsafe.Pointer(&rw.slots[i]), slotToken(v)) {
				t.Fatalf("slot %d: its process is still alive after the kill", i)
			}
		}
	}
	if leaked < 0 {
		t.Fatal("the reader stopped before counting itself")
	}
	// Writers come and go; readers come and go: nobody frees the slot.
	for i := 0; i < 3; i++ {
		if err := rw.LockTimeout(time.Second); err != nil {
			t.Fatal(err)
		}
		rw.Unlock()
		rw.RLock()
		rw.RUnlock()
	}
	if err := rw.LockTimeout(time.Second); err != nil { // clears the bits of free slots
		t.Fatal(err)
	}
	rw.Unlock()
	if v := atomic.LoadUint64(&rw.slots[leaked]); v == 0 {
		t.Fatal("ok: the dead reader's slot was reclaimed")
	}

	// The end of the road, with the state each such death leaves copied to
	// every other slot (a token nobody holds, count 1, bit clear): a reader
	// finds every slot taken, reclaims the dead ones it can see (none), and
	// waits until its timeout although no process holds a read lock.
	dead := atomic.LoadUint64(&rw.slots[leaked])
	for i := range rw.slots {
		if i != leaked {
			atomic.StoreUint64(&rw.slots[i], (uint64(slotToken(dead))^uint64(i)<<30)<<8|1)
		}
	}
	err = rw.RLockTimeout(300 * time.Millisecond)
	if err == nil {
		rw.RUnlock()
	}
	if errors.Is(err, ErrTimeout) {
		t.Fatalf("dead reader's slot %d (%#x, inuse bit clear) is never reclaimed: with every slot in that state no process can read (RLockTimeout: %v)", leaked, dead, err)
	}
	t.Fatalf("slot %d leaked; RLockTimeout with every slot dead: %v", leaked, err)
}
