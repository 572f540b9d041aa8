//go:build linux && (amd64 || arm64)

package shm

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// Layout of the leak trials: flags on page 0; w and the idle words at the
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
	if uintptr(leakRWOff)+unsafe.Offsetof(RWMutex{}.idle)+32 > 2*leakPage || uintptr(leakRWOff)+unsafe.Offsetof(RWMutex{}.slots) < 2*leakPage {
		panic("leak layout")
	}
	// args: name: RLock the lock at leakRWOff, stopping (userfaultfd) at
	// the first touch of page 1 after the home slot (marked free by a
	// writer) was claimed, before its idle bit is cleared, and wait there
	// to be killed.
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
		page2 := page1 + leakPage
		p, err := newPauser(page1, 2*leakPage)
		if err != nil {
			atomic.StoreInt32(&f.paused, -1)
			return err
		}
		if err := p.zap(page1, 2*leakPage); err != nil {
			return err
		}
		look, err := Open(args[0]) // to read the slots without faulting
		if err != nil {
			return err
		}
		defer look.Close()
		seen, _ := View[RWMutex](look.Bytes()[leakRWOff:])
		claimed := func() bool {
			for i := range seen.slots {
				if atomic.LoadUint64(&seen.slots[i])&rCountMask != 0 {
					return true
				}
			}
			return false
		}
		go func() {
			// Step from page to page: each fault re-arms the other page, so
			// every move between them faults. Stop for good at the first
			// touch of page 1 (the claim's clearing of the idle bit) after
			// a slot was claimed.
			for pg := range p.faults {
				switch {
				case pg == page1 && claimed():
					atomic.StoreInt32(&f.paused, 1) // never resumed
					time.Sleep(30 * time.Second)    // the test kills us long before
					os.Exit(3)
				case pg == page1:
					p.zap(page2, leakPage)
				default:
					p.zap(page1, leakPage)
				}
				p.resume(pg)
			}
		}()
		rw.RLock()
		atomic.StoreInt32(&f.paused, 2) // not reached
		time.Sleep(time.Hour)
		return nil
	})
}

// TestBreakRWDeadReaderSlotNeverReclaimed: a reader process killed after it
// claimed a slot a writer had marked free and before it cleared the slot's
// idle bit leaves its slot taken by a dead process that writers skip. That
// is harmless to writers (the dead process reads nothing), but the slot
// must not be lost for good: each such death would cost one of the 256
// slots, and with all of them gone every reader would wait forever. A
// reader that finds every slot taken reclaims the dead ones, skipped or
// not.
func TestBreakRWDeadReaderSlotNeverReclaimed(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 3*leakPage)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	f, _ := View[leakFlags](seg.Bytes())
	rw, _ := View[RWMutex](seg.Bytes()[leakRWOff:])
	rw.Lock() // marks every free slot
	rw.Unlock()

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
		if v := atomic.LoadUint64(&rw.slots[i]); v&rCountMask != 0 {
			leaked = i
			if atomic.LoadUint64(&rw.idle[i/64])&(1<<(i%64)) == 0 {
				t.Fatalf("slot %d: idle bit clear; the reader stopped later than intended", i)
			}
			if owner.Alive(unsafe.Pointer(&rw.slots[i]), slotToken(v)) {
				t.Fatalf("slot %d: its process is still alive after the kill", i)
			}
		}
	}
	if leaked < 0 {
		t.Fatal("the reader stopped before claiming a slot")
	}
	// Writers skip the dead reader's slot: they get in at once.
	for i := 0; i < 3; i++ {
		if err := rw.LockTimeout(time.Second); err != nil {
			t.Fatal(err)
		}
		rw.Unlock()
		rw.RLock()
		rw.RUnlock()
	}
	// Every other slot in the same state (a token nobody holds, count 1,
	// skipped): a reader finds every slot taken, reclaims the dead ones,
	// and gets in.
	dead := atomic.LoadUint64(&rw.slots[leaked])
	for i := range rw.slots {
		if i != leaked {
			atomic.StoreUint64(&rw.slots[i], (uint64(slotToken(dead))^uint64(i)<<30)<<8|1)
			atomic.OrUint64(&rw.idle[i/64], 1<<(i%64))
		}
	}
	err = rw.RLockTimeout(300 * time.Millisecond)
	if err != nil {
		t.Fatalf("dead readers' slots (%#x, skipped by writers) are never reclaimed: with every slot in that state no process can read (RLockTimeout: %v)", dead, err)
	}
	rw.RUnlock()
}
