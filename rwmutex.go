package shm

import (
	"context"
	"math/bits"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/owner"
)

// RWMutex is a reader/writer lock that works between processes: any number
// of readers, in any processes, or one writer. Place it in shared memory at
// an 8-byte-aligned offset, like Mutex. The zero value is unlocked; an
// RWMutex must not be copied after first use. It is 2112 bytes.
//
// A writer that is waiting keeps new readers out, so a steady stream of
// readers cannot starve it. A read lock belongs to the process that took it
// and must be released by that process: RUnlock in a process that holds no
// read lock on rw does nothing (it never releases another process's read
// lock). Up to 256 processes can hold read locks at once; a reader in a
// 257th process waits (with its timeout or context) until one of them
// releases all of its read locks.
//
// If a writer dies holding the lock, the next writer (or a waiting reader)
// takes it over, as with Mutex, and reports ErrOwnerDead; the mark stays
// until MarkConsistent. If a reader dies holding read locks, its share is
// released by a writer that waits for it; readers never modify the data,
// so this is not reported as an error. Every read lock is tracked by
// process, so a dead reader never blocks writers for longer than a
// liveness check (about 20 ms).
//
// RWMutex needs write access to its memory, for readers too: in a segment
// opened with ReadOnly, locking it faults (the managed API refuses instead).
//
// # Protocol
//
// Shared words:
//
//	w      the writer word, a Mutex: a writer holds it throughout, and a
//	       reader may not enter while anyone holds it. Its readers bit
//	       (29) says readers may be asleep on it.
//	drain  a counter readers bump when they leave while w is held; the
//	       writer waiting for readers sleeps on it
//	inuse  256 bits, one per slot: the slot may hold read locks. Readers
//	       set their slot's bit; only a writer, holding w, clears the bit
//	       of a slot it finds free.
//	slots  256 reader slots, each: bits 0..7 how many read locks one
//	       process holds there, bits 8..63 its owner token (internal/owner);
//	       0 when free. A process uses the slot at its home index (from its
//	       token) and, if that is another process's, the next free one, or
//	       several when it holds more than 255 read locks.
//
// Reader: add one to its slot (a CAS, a full barrier), make sure the slot's
// inuse bit is set, then load w. If w has no owner, the read lock is held;
// otherwise take the share back and sleep on w until it is released.
// Writer: lock w, then load inuse and every slot whose bit is set, until
// every slot is free, sleeping on drain. Both sides write their own word and
// then read the other's, with sequentially consistent atomics: either the
// reader sees the writer in w, or the writer sees the reader's inuse bit and
// then its count (the store-load pattern of Dekker's algorithm). A bit
// cleared by a writer between a reader's count and its check of the bit is
// no hole: the writer loaded that slot as free before clearing, so it owned
// w before the reader's CAS, and the reader's load of w sees it. A reader
// leaving (RUnlock, or backing out) that sees w held bumps drain and wakes
// the writer, which loaded drain before it looked at the slots, so it never
// sleeps through the last reader leaving. Releasing w wakes every sleeper
// on it when its readers bit is set.
//
// Owner death: writers recover w as Mutex does. A reader that waited for
// the same writer for a liveness slice asks whether it is alive; if it is
// dead, the reader takes w itself (reporting ErrOwnerDead), and releases it
// at once. A writer that waited for readers for a liveness slice checks the
// owners of the busy slots and clears the slots of dead processes with a
// CAS on the exact value it examined (a dead token never comes back).
type RWMutex struct {
	w     Mutex
	drain uint32
	_     uint32
	inuse [rwSlots / 64]uint64
	_     [2]uint64 // the slots start on a cache line of their own
	slots [rwSlots]uint64
}

const (
	rwSlots    = 256
	rCountMask = 1<<8 - 1
)

var (
	// readerID is this process's slot identity; readerOne its slot value
	// when it holds one read lock there.
	readerID  = uint64(owner.Self()) << 8
	readerOne = readerID | 1
	// readerHome is the slot this process tries first; homeOff and
	// homeBitsOff are the offsets in an RWMutex of that slot and of the
	// inuse word with its bit, readerBit.
	homeOff     = unsafe.Offsetof(RWMutex{}.slots) + 8*uintptr(readerHome)
	homeBitsOff = unsafe.Offsetof(RWMutex{}.inuse) + 8*uintptr(readerHome/64)
	readerBit   = uint64(1) << (readerHome % 64)
	readerHome  = func() uint {
		t := uint64(owner.Self())
		t ^= t >> 29
		t *= 0xbf58476d1ce4e5b9
		t ^= t >> 32
		return uint(t % rwSlots)
	}()
)

// slotToken returns the owner token in slot value v.
func slotToken(v uint64) owner.Token { return owner.Token(v >> 8) }

// RLock locks rw for reading, waiting as long as it takes.
func (rw *RWMutex) RLock() {
	// The common case, small enough to be inlined: this process's home
	// slot is free, its inuse bit set, and no writer is about.
	took := atomic.CompareAndSwapUint64(rw.home(), 0, readerOne)
	if took && atomic.LoadUint64(rw.homeBits())&readerBit != 0 && atomic.LoadUint64(&rw.w.state)&mHeld == 0 {
		return
	}
	rw.rlockMiss(took)
}

// home returns this process's home slot.
func (rw *RWMutex) home() *uint64 { return (*uint64)(unsafe.Add(unsafe.Pointer(rw), homeOff)) }

// homeBits returns the inuse word that holds the home slot's bit.
func (rw *RWMutex) homeBits() *uint64 { return (*uint64)(unsafe.Add(unsafe.Pointer(rw), homeBitsOff)) }

// rlockMiss is RLock when its common case did not apply: took tells
// whether a share was counted in the home slot (whose bit was clear, or
// which met a writer).
func (rw *RWMutex) rlockMiss(took bool) {
	var ok bool
	if took {
		ok = rw.admit(int(readerHome))
	} else {
		ok, _ = rw.tryRead()
	}
	if !ok {
		if err := rw.rlockSlow(noDeadline()); err != nil && err != ErrOwnerDead {
			panic(err) // only a memory fault: see "Memory faults"
		}
	}
}

// tryRLock takes a read lock if no writer holds or waits for rw.
func (rw *RWMutex) tryRLock() bool {
	if atomic.CompareAndSwapUint64(rw.home(), 0, readerOne) {
		return rw.admit(int(readerHome))
	}
	ok, _ := rw.tryRead()
	return ok
}

// TryRLock locks rw for reading if no writer holds or waits for it, and
// reports whether it did.
func (rw *RWMutex) TryRLock() bool { return rw.tryRLock() }

// RLockTimeout locks rw for reading, waiting at most d. It returns
// ErrTimeout when d passed, and ErrOwnerDead (with the read lock held) when
// it had to recover the lock from a writer that died.
func (rw *RWMutex) RLockTimeout(d time.Duration) error {
	if rw.tryRLock() {
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
	if rw.tryRLock() {
		return nil
	}
	return rw.rlockSlow(ctxDeadline(ctx))
}

// tryRead tries once to take a read lock, in any slot. full reports that it
// failed because every slot holds another process's read locks.
func (rw *RWMutex) tryRead() (ok, full bool) {
	i := rw.take()
	if i < 0 {
		return false, true
	}
	return rw.admit(i), false
}

// admit completes a read lock counted in slot i: it sets the slot's inuse
// bit, then keeps the share if no writer holds w, and gives it back if one
// does.
func (rw *RWMutex) admit(i int) bool {
	p, bit := &rw.inuse[i/64], uint64(1)<<(i%64)
	if atomic.LoadUint64(p)&bit == 0 {
		atomic.OrUint64(p, bit)
	}
	if atomic.LoadUint64(&rw.w.state)&mHeld == 0 {
		return true
	}
	rw.giveBack(i)
	return false
}

// take counts one read share for this process in a slot: its own (with
// room), else a free one, probing from its home. It returns the slot, or
// -1 if every slot is another process's.
func (rw *RWMutex) take() int {
	for k := uint(0); k < rwSlots; k++ {
		i := (readerHome + k) % rwSlots
		p := &rw.slots[i]
		for {
			old := atomic.LoadUint64(p)
			var nw uint64
			switch {
			case old == 0:
				nw = readerOne
			case old&^rCountMask == readerID && old&rCountMask < rCountMask:
				nw = old + 1
			}
			if nw == 0 {
				break
			}
			if atomic.CompareAndSwapUint64(p, old, nw) {
				return int(i)
			}
		}
	}
	return -1
}

// giveBack removes one of this process's read shares from slot i and tells
// a writer waiting for readers.
func (rw *RWMutex) giveBack(i int) {
	p := &rw.slots[i]
	for {
		old := atomic.LoadUint64(p)
		if old&^rCountMask != readerID || old&rCountMask == 0 {
			break // not ours (only a damaged word): nothing to give back
		}
		nw := old - 1
		if nw&rCountMask == 0 {
			nw = 0
		}
		if atomic.CompareAndSwapUint64(p, old, nw) {
			break
		}
	}
	if atomic.LoadUint64(&rw.w.state)&mHeld != 0 {
		rw.wakeWriter()
	}
}

// wakeWriter tells the writer waiting for readers to leave that one did.
func (rw *RWMutex) wakeWriter() {
	atomic.AddUint32(&rw.drain, 1)
	futex.Wake(&rw.drain, 1)
}

func (rw *RWMutex) rlockSlow(dl deadline) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	word := lowHalf(&rw.w.state)
	var w *watcher // armed before the first sleep
	defer func() { w.stop() }()
	var result error
	var ow, slotWatch ownerWatch
	spins := spinBudget(unsafe.Pointer(word))
	spinning := spins > 0 // until the spin ends
	slept := false
	for {
		st := atomic.LoadUint64(&rw.w.state)
		if st&mHeld == 0 {
			ok, full := rw.tryRead()
			if ok {
				if spinning {
					spinWon(unsafe.Pointer(word))
				}
				return result
			}
			if full {
				// Every slot is another process's: wait for one to be
				// released, or for its process to be found dead.
				now := time.Now()
				if slotWatch.due(^uint64(0), now) {
					rw.reclaimDead()
				}
				if err := dl.sleep(&rw.drain, atomic.LoadUint32(&rw.drain), time.Millisecond); err != nil {
					return err
				}
			}
			continue
		}
		if spins > 0 {
			spins--
			spinPause()
			continue
		}
		if !slept {
			spinLost(unsafe.Pointer(word), spinning)
			spinning = false
		}
		if st&mReaders == 0 {
			if !atomic.CompareAndSwapUint64(&rw.w.state, st, st|mReaders) {
				continue
			}
			st |= mReaders
		}
		now := time.Now()
		if ow.due(st&mOwnerMask, now) && rw.w.takeOver(st) {
			// We hold w for a writer that died: let the readers in.
			rw.w.Unlock()
			result = ErrOwnerDead
			continue
		}
		if w == nil {
			w = dl.watch(word)
		}
		err := dl.sleep(word, uint32(st), ow.left(now))
		slept = true
		if err != nil {
			// Judge the writer once more before leaving, so that readers
			// that keep retrying with short timeouts still recover the lock
			// of a writer that died.
			if st := atomic.LoadUint64(&rw.w.state); st&mHeld != 0 && rw.w.takeOver(st) {
				rw.w.Unlock()
				if ok, _ := rw.tryRead(); ok {
					return ErrOwnerDead
				}
			}
			return err
		}
	}
}

// reclaimDead releases the read shares of every process found dead.
func (rw *RWMutex) reclaimDead() {
	for k := range rw.inuse {
		b := atomic.LoadUint64(&rw.inuse[k])
		for b != 0 {
			j := bits.TrailingZeros64(b)
			b &^= 1 << j
			p := &rw.slots[k*64+j]
			if v := atomic.LoadUint64(p); v != 0 && !owner.Alive(unsafe.Pointer(p), slotToken(v)) {
				atomic.CompareAndSwapUint64(p, v, 0)
			}
		}
	}
}

// RUnlock releases one read lock taken by this process. Releasing a read
// lock this process does not hold does nothing.
func (rw *RWMutex) RUnlock() {
	// The common case, small enough to be inlined: this process's only read
	// lock, in its home slot, and no writer waiting.
	took := atomic.CompareAndSwapUint64(rw.home(), readerOne, 0)
	if took && atomic.LoadUint64(&rw.w.state)&mHeld == 0 {
		return
	}
	rw.runlockMiss(took)
}

// runlockMiss is RUnlock when its common case did not apply: took tells
// whether it released the share in the home slot (and then saw a writer,
// whom it must tell).
func (rw *RWMutex) runlockMiss(took bool) {
	defer panicOnFault(debug.SetPanicOnFault(true))
	if took {
		rw.wakeWriter()
		return
	}
	rw.runlockSlow()
}

func (rw *RWMutex) runlockSlow() {
	for k := uint(0); k < rwSlots; k++ {
		i := (readerHome + k) % rwSlots
		v := atomic.LoadUint64(&rw.slots[i])
		if v&^rCountMask == readerID && v&rCountMask != 0 {
			rw.giveBack(int(i))
			return
		}
	}
}

// Lock locks rw for writing, waiting as long as it takes. A dead writer's
// lock is taken over (see OwnerDied).
func (rw *RWMutex) Lock() {
	if err := rw.lockSlow(noDeadline()); err != nil && err != ErrOwnerDead {
		panic(err) // only a memory fault: see "Memory faults"
	}
}

// TryLock locks rw for writing if it is free, and reports whether it did.
func (rw *RWMutex) TryLock() bool {
	if !rw.w.TryLock() {
		return false
	}
	if rw.readers() < 0 {
		return true
	}
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

func (rw *RWMutex) lockSlow(dl deadline) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	var result error
	if !atomic.CompareAndSwapUint64(&rw.w.state, 0, selfWord) {
		result = rw.w.lockSlow(dl, futex.All)
		if result != nil && result != ErrOwnerDead {
			return result
		}
	}
	if rw.readers() < 0 {
		return result
	}
	return rw.drainReaders(dl, result)
}

// drainReaders waits, holding w, until no read lock is held.
func (rw *RWMutex) drainReaders(dl deadline, result error) error {
	var w *watcher // armed before the first sleep
	defer func() { w.stop() }()
	var ow ownerWatch
	spins := spinBudget(unsafe.Pointer(&rw.drain))
	spinning := spins > 0 // until the spin ends
	slept := false
	for {
		seq := atomic.LoadUint32(&rw.drain)
		i := rw.readers()
		if i < 0 {
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
		if !slept {
			spinLost(unsafe.Pointer(&rw.drain), spinning)
			spinning = false
		}
		now := time.Now()
		if ow.due(atomic.LoadUint64(&rw.slots[i]), now) {
			rw.reclaimDead()
			continue
		}
		if w == nil {
			w = dl.watch(&rw.drain)
		}
		err := dl.sleep(&rw.drain, seq, ow.left(now))
		slept = true
		if err != nil {
			rw.reclaimDead()
			if rw.readers() < 0 {
				return result
			}
			rw.w.Unlock()
			return err
		}
	}
}

// readers returns the index of a slot holding read locks, or -1 if there
// are none. It clears the inuse bits of the free slots it passes; only a
// writer holding w calls it.
func (rw *RWMutex) readers() int {
	for k := range rw.inuse {
		b := atomic.LoadUint64(&rw.inuse[k])
		for b != 0 {
			j := bits.TrailingZeros64(b)
			b &^= 1 << j
			if atomic.LoadUint64(&rw.slots[k*64+j]) != 0 {
				return k*64 + j
			}
			p, bit := &rw.inuse[k], uint64(1)<<j
			for {
				old := atomic.LoadUint64(p)
				if old&bit == 0 || atomic.CompareAndSwapUint64(p, old, old&^bit) {
					break
				}
			}
		}
	}
	return -1
}

// Unlock releases the write lock. Unlocking in a process that does not hold
// the write lock does nothing.
func (rw *RWMutex) Unlock() { rw.w.Unlock() }

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
