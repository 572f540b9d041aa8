package shm

import (
	"context"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/proc"
)

// RWMutex is a reader/writer lock that works between processes: any number
// of readers, in any processes, or one writer. Place it in shared memory at
// an 8-byte-aligned offset, like Mutex. The zero value is unlocked; an
// RWMutex must not be copied after first use. It is 280 bytes.
//
// A writer that is waiting keeps new readers out, so a steady stream of
// readers cannot starve it. A read lock belongs to the process that took it
// and must be released by that process.
//
// If a writer dies holding the lock, the next writer (or a waiting reader)
// takes it over, as with Mutex, and reports ErrOwnerDead; the mark stays
// until MarkConsistent. If a reader dies holding read locks, its share is
// released by the next writer that waits for it; readers never modify the
// data, so this is not reported as an error.
//
// # Protocol
//
// Shared words:
//
//	w      a Mutex that serialises writers; the writer holds it throughout
//	gate   bit 0: a writer holds or is acquiring the lock (set only while
//	       holding w); bit 1: readers may be asleep on gate
//	drain  a counter readers bump when they leave while a writer waits;
//	       the writer sleeps on it
//	anon   read locks held by processes that found no free slot (not tracked
//	       for owner death; only with more than 32 reading processes at once)
//	slots  32 reader slots, each: bits 0..7 how many read locks one process
//	       holds there, bits 8..31 its PID, bits 32..55 its start tag,
//	       bits 56..63 its PID-namespace tag (see Mutex);
//	       0 when free. A process uses the slot at PID mod 32 and, if that is
//	       another process's, the next free one.
//
// Reader: add one to its slot (a CAS, a full barrier), then load gate. If the
// writer bit is clear, the read lock is held; otherwise take the share back
// and sleep on gate until the bit clears. Writer: lock w, set the writer
// bit (an atomic OR, a full barrier), then wait until every slot's count and
// anon are zero, sleeping on drain. Because both sides write their own word
// and then read the other's, with sequentially consistent atomics, either
// the reader sees the writer bit or the writer sees the reader's count (the
// store-load pattern of Dekker's algorithm): a reader and a writer never
// both proceed. A reader leaving (RUnlock, or backing out) that sees the
// writer bit bumps drain and wakes the writer, which loaded drain before it
// scanned the slots, so it never sleeps through the last reader leaving.
// Unlock clears gate (waking readers if bit 1 was set) before unlocking w.
//
// Owner death: writers recover w as Mutex does. A reader that slept a whole
// slice on an unchanged gate checks w: if it is unlocked, or its owner is
// dead, the reader takes w itself (reporting ErrOwnerDead for a dead owner),
// clears gate and unlocks w. A writer that slept a whole slice on an
// unchanged drain checks the owners of the busy slots and clears the slots
// of dead processes with a CAS on the exact value it examined.
type RWMutex struct {
	w     Mutex
	gate  uint32
	drain uint32
	anon  uint32
	_     uint32
	slots [rwSlots]uint64
}

const (
	rwSlots = 32

	gWriter  = 1 << 0
	gReaders = 1 << 1

	rCountMask = 1<<8 - 1
	rIDMask    = ^uint64(rCountMask)
	rPIDBits   = 24
)

// readerID is this process's slot identity, 0 if its PID does not fit (then
// it always uses anon).
var readerID, readerHome = func() (uint64, int) {
	id := proc.Self()
	if id.PID >= 1<<rPIDBits {
		return 0, 0
	}
	return uint64(id.Word())<<32 | uint64(id.PID)<<8, int(id.PID % rwSlots)
}()

// readerOne is this process's slot value when it holds one read lock there,
// 0 if it has no slot identity.
var readerOne = func() uint64 {
	if readerID == 0 {
		return 0
	}
	return readerID | 1
}()

// slotOwner returns the process that holds the slot value v.
func slotOwner(v uint64) proc.ID {
	return proc.FromWord(uint32(v>>8)&(1<<rPIDBits-1), uint32(v>>32))
}

// slotAlive reports whether the process holding slot value v may be alive.
func slotAlive(v uint64) bool { return proc.Alive(slotOwner(v)) }

// RLock locks rw for reading, waiting as long as it takes.
func (rw *RWMutex) RLock() {
	// The common case, small enough to be inlined: this process's home slot
	// is free and no writer is about.
	p := &rw.slots[uint(readerHome)%rwSlots]
	took := readerOne != 0 && atomic.CompareAndSwapUint64(p, 0, readerOne)
	if took && atomic.LoadUint32(&rw.gate)&gWriter == 0 {
		return
	}
	rw.rlockMiss(p, took)
}

// rlockMiss is RLock when its common case did not apply: took tells whether
// it counted a read lock in the home slot p (and then met a writer).
func (rw *RWMutex) rlockMiss(p *uint64, took bool) {
	if took {
		rw.giveBack(p)
	} else if rw.rlockNested(p) {
		return
	}
	rw.rlockSlow(noDeadline())
}

// TryRLock locks rw for reading if no writer holds or waits for it, and
// reports whether it did.
func (rw *RWMutex) TryRLock() bool {
	if rw.rlockFast() {
		return true
	}
	p := rw.take()
	if atomic.LoadUint32(&rw.gate)&gWriter == 0 {
		return true
	}
	rw.giveBack(p)
	return false
}

// RLockTimeout locks rw for reading, waiting at most d. It returns
// ErrTimeout when d passed, and ErrOwnerDead (with the read lock held) when
// it had to recover the lock from a writer that died.
func (rw *RWMutex) RLockTimeout(d time.Duration) error {
	if rw.rlockFast() {
		return nil
	}
	return rw.rlockSlow(timeoutDeadline(d))
}

// RLockContext locks rw for reading, waiting until ctx is done. It returns
// ctx.Err() when ctx ended first, and ErrOwnerDead (with the read lock held)
// when it had to recover the lock from a writer that died.
func (rw *RWMutex) RLockContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rw.rlockFast() {
		return nil
	}
	return rw.rlockSlow(ctxDeadline(ctx))
}

// rlockFast takes a read lock through this process's home slot when no
// writer is about. The common case (the slot free, no writer) is small
// enough to be inlined into RLock.
func (rw *RWMutex) rlockFast() bool {
	p := &rw.slots[uint(readerHome)%rwSlots]
	if readerOne == 0 || !atomic.CompareAndSwapUint64(p, 0, readerOne) {
		return rw.rlockNested(p)
	}
	if atomic.LoadUint32(&rw.gate)&gWriter == 0 {
		return true
	}
	rw.giveBack(p)
	return false
}

// rlockNested is rlockFast when the home slot is not free: it counts one
// more read lock there if the slot is this process's.
func (rw *RWMutex) rlockNested(p *uint64) bool {
	old := atomic.LoadUint64(p)
	if readerID == 0 || old&rIDMask != readerID || old&rCountMask >= rCountMask ||
		!atomic.CompareAndSwapUint64(p, old, old+1) {
		return false
	}
	if atomic.LoadUint32(&rw.gate)&gWriter == 0 {
		return true
	}
	rw.giveBack(p)
	return false
}

// take adds a read share: in this process's slot, else in a free slot, else
// in anon. It returns the word it counted in.
func (rw *RWMutex) take() *uint64 {
	if readerID != 0 {
		for k := 0; k < rwSlots; k++ {
			p := &rw.slots[(readerHome+k)%rwSlots]
			for {
				old := atomic.LoadUint64(p)
				var nw uint64
				switch {
				case old == 0:
					nw = readerID | 1
				case old&rIDMask == readerID && old&rCountMask < rCountMask:
					nw = old + 1
				}
				if nw == 0 {
					break
				}
				if atomic.CompareAndSwapUint64(p, old, nw) {
					return p
				}
			}
		}
	}
	atomic.AddUint32(&rw.anon, 1)
	return nil
}

// giveBack removes a read share taken by take (p == nil: from anon) and wakes
// a writer that waits for readers to leave.
func (rw *RWMutex) giveBack(p *uint64) {
	if p == nil {
		for {
			old := atomic.LoadUint32(&rw.anon)
			if old == 0 || atomic.CompareAndSwapUint32(&rw.anon, old, old-1) {
				break
			}
		}
	} else {
		for {
			old := atomic.LoadUint64(p)
			if old&rIDMask != readerID || old&rCountMask == 0 {
				break // cleared by a writer that thought us dead: nothing to give back
			}
			nw := old - 1
			if nw&rCountMask == 0 {
				nw = 0
			}
			if atomic.CompareAndSwapUint64(p, old, nw) {
				break
			}
		}
	}
	if atomic.LoadUint32(&rw.gate)&gWriter != 0 {
		atomic.AddUint32(&rw.drain, 1)
		futex.Wake(&rw.drain, 1)
	}
}

func (rw *RWMutex) rlockSlow(dl deadline) error {
	var w *watcher // armed before the first sleep
	defer func() { w.stop() }()
	var result error
	spins := spinBudget(unsafe.Pointer(&rw.gate))
	spinning := spins > 0 // until the spin ends
	var seen uint32
	seenValid := false
	for {
		g := atomic.LoadUint32(&rw.gate)
		if g&gWriter == 0 {
			p := rw.take()
			if atomic.LoadUint32(&rw.gate)&gWriter == 0 {
				if spinning {
					spinWon(unsafe.Pointer(&rw.gate))
				}
				return result
			}
			rw.giveBack(p)
			continue
		}
		if spins > 0 {
			spins--
			spinPause()
			continue
		}
		if spinning {
			spinLost(unsafe.Pointer(&rw.gate), true)
			spinning = false
		}
		if g&gReaders == 0 {
			if !atomic.CompareAndSwapUint32(&rw.gate, g, g|gReaders) {
				continue
			}
			g |= gReaders
		}
		if seenValid && g == seen {
			if err := rw.recoverGate(); err != nil {
				result = err
			}
		}
		if w == nil {
			w = dl.watch(&rw.gate)
		}
		before := time.Now()
		if err := dl.sleep(&rw.gate, g, livenessSlice); err != nil {
			return err
		}
		seen, seenValid = g, time.Since(before) >= livenessSlice
	}
}

// recoverGate is called by a reader that found the writer bit set for a
// whole slice. If no live process holds w, the reader takes w, clears the
// gate and releases w, and returns ErrOwnerDead if w's owner had died.
func (rw *RWMutex) recoverGate() error {
	old := atomic.LoadUint64(&rw.w.state)
	var err error
	switch {
	case old&mOwnerMask == 0:
		if !rw.w.TryLock() {
			return nil
		}
	case !proc.Alive(ownerOf(old)):
		if !atomic.CompareAndSwapUint64(&rw.w.state, old, selfWord|mWaiters|mInconsistent) {
			return nil
		}
		err = ErrOwnerDead
	default:
		return nil
	}
	rw.openGate()
	rw.w.Unlock()
	return err
}

// openGate clears the gate and wakes the readers asleep on it.
func (rw *RWMutex) openGate() {
	if atomic.SwapUint32(&rw.gate, 0)&gReaders != 0 {
		futex.Wake(&rw.gate, futex.All)
	}
}

// RUnlock releases one read lock taken by this process. Releasing a read
// lock this process does not hold does nothing.
func (rw *RWMutex) RUnlock() {
	// The common case, small enough to be inlined: this process's only read
	// lock, in its home slot, and no writer waiting.
	p := &rw.slots[uint(readerHome)%rwSlots]
	took := readerOne != 0 && atomic.CompareAndSwapUint64(p, readerOne, 0)
	if took && atomic.LoadUint32(&rw.gate)&gWriter == 0 {
		return
	}
	rw.runlockMiss(p, took)
}

// runlockMiss is RUnlock when its common case did not apply: took tells
// whether it released the read lock (and then saw a writer waiting).
func (rw *RWMutex) runlockMiss(p *uint64, took bool) {
	if took {
		rw.wakeWriter()
		return
	}
	rw.runlockNested(p)
}

// runlockNested is RUnlock when the home slot does not hold exactly one
// read lock of this process.
func (rw *RWMutex) runlockNested(p *uint64) {
	old := atomic.LoadUint64(p)
	if readerID != 0 && old&rIDMask == readerID && old&rCountMask > 0 {
		nw := old - 1
		if nw&rCountMask == 0 {
			nw = 0
		}
		if atomic.CompareAndSwapUint64(p, old, nw) {
			rw.leaving()
			return
		}
	}
	rw.runlockSlow()
}

// leaving tells a waiting writer, if any, that a reader left.
func (rw *RWMutex) leaving() {
	if atomic.LoadUint32(&rw.gate)&gWriter != 0 {
		rw.wakeWriter()
	}
}

// wakeWriter tells the writer waiting for readers to leave that one did.
func (rw *RWMutex) wakeWriter() {
	atomic.AddUint32(&rw.drain, 1)
	futex.Wake(&rw.drain, 1)
}

func (rw *RWMutex) runlockSlow() {
	if readerID != 0 {
		for k := 0; k < rwSlots; k++ {
			p := &rw.slots[(readerHome+k)%rwSlots]
			old := atomic.LoadUint64(p)
			if old&rIDMask == readerID && old&rCountMask > 0 {
				rw.giveBack(p)
				return
			}
		}
	}
	rw.giveBack(nil)
}

// Lock locks rw for writing, waiting as long as it takes. A dead writer's
// lock is taken over (see OwnerDied).
func (rw *RWMutex) Lock() {
	rw.lockSlow(noDeadline())
}

// TryLock locks rw for writing if it is free, and reports whether it did.
func (rw *RWMutex) TryLock() bool {
	if !rw.w.TryLock() {
		return false
	}
	atomic.OrUint32(&rw.gate, gWriter)
	if rw.busySlot() < 0 {
		return true
	}
	rw.openGate()
	rw.w.Unlock()
	return false
}

// LockTimeout locks rw for writing, waiting at most d. It returns
// ErrTimeout when d passed, and ErrOwnerDead (with the lock held) when the
// previous writer died holding it.
func (rw *RWMutex) LockTimeout(d time.Duration) error {
	return rw.lockSlow(timeoutDeadline(d))
}

// LockContext locks rw for writing, waiting until ctx is done. It returns
// ctx.Err() when ctx ended first, and ErrOwnerDead (with the lock held) when
// the previous writer died holding it.
func (rw *RWMutex) LockContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return rw.lockSlow(ctxDeadline(ctx))
}

func (rw *RWMutex) lockSlow(dl deadline) error {
	var result error
	if !atomic.CompareAndSwapUint64(&rw.w.state, 0, selfWord) {
		result = rw.w.lockSlow(dl)
		if result != nil && result != ErrOwnerDead {
			return result
		}
	}
	atomic.OrUint32(&rw.gate, gWriter)
	if rw.busySlot() < -1 {
		return result
	}
	var w *watcher // armed before the first sleep
	defer func() { w.stop() }()
	spins := spinBudget(unsafe.Pointer(&rw.drain))
	spinning := spins > 0 // until the spin ends
	var seen uint64
	seenIdx := -2
	for {
		seq := atomic.LoadUint32(&rw.drain)
		i := rw.busySlot()
		if i < -1 {
			if spinning {
				spinWon(unsafe.Pointer(&rw.drain))
			}
			return result
		}
		if spins > 0 {
			spins--
			spinPause()
			continue
		}
		if spinning {
			spinLost(unsafe.Pointer(&rw.drain), true)
			spinning = false
		}
		if i >= 0 {
			v := atomic.LoadUint64(&rw.slots[i])
			if i == seenIdx && v == seen && !slotAlive(v) {
				atomic.CompareAndSwapUint64(&rw.slots[i], v, 0)
				continue
			}
			seen = v
		}
		if w == nil {
			w = dl.watch(&rw.drain)
		}
		before := time.Now()
		if err := dl.sleep(&rw.drain, seq, livenessSlice); err != nil {
			rw.openGate()
			rw.w.Unlock()
			return err
		}
		seenIdx = -2
		if time.Since(before) >= livenessSlice {
			seenIdx = i
		}
	}
}

// busySlot returns the index of a slot that holds read locks, -1 if only
// anon does, and -2 if there are no readers.
func (rw *RWMutex) busySlot() int {
	for i := range rw.slots {
		if atomic.LoadUint64(&rw.slots[i])&rCountMask != 0 {
			return i
		}
	}
	if atomic.LoadUint32(&rw.anon) != 0 {
		return -1
	}
	return -2
}

// Unlock releases the write lock.
func (rw *RWMutex) Unlock() {
	rw.openGate()
	rw.w.Unlock()
}

// OwnerDied reports whether a writer died holding rw and no process has
// called MarkConsistent since.
func (rw *RWMutex) OwnerDied() bool { return rw.w.OwnerDied() }

// MarkConsistent clears the mark that a writer died, once the data has been
// repaired. Call it while holding the write lock.
func (rw *RWMutex) MarkConsistent() { rw.w.MarkConsistent() }

// RLocker returns a sync.Locker whose Lock and Unlock call RLock and RUnlock.
func (rw *RWMutex) RLocker() interface {
	Lock()
	Unlock()
} {
	return (*rlocker)(rw)
}

type rlocker RWMutex

func (r *rlocker) Lock()   { (*RWMutex)(r).RLock() }
func (r *rlocker) Unlock() { (*RWMutex)(r).RUnlock() }
