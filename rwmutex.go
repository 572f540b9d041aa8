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
// readers cannot starve it; and a reader that has waited a few
// milliseconds gets a turn (writers hold back for at most 5 ms), so
// writers that take the lock one after the other cannot starve readers.
// As with sync.RWMutex, this prohibits recursive
// read locking: a goroutine that holds a read lock and calls RLock again
// waits behind a writer that waits for it (use the Timeout and Context
// forms if that can happen). A read lock belongs to the process that took it
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
//	idle   256 bits, one per slot: set, the slot is marked free and
//	       writers skip it. The zero value (all clear) has writers look at
//	       every slot.
//	slots  256 reader slots, each: bits 0..7 how many read locks one
//	       process holds there, bits 8..63 its owner token (internal/owner);
//	       0 when free, and mark (token 1, count 0, never a real token's)
//	       when free and skipped by writers. A process uses the slot at its
//	       home index (from its token) and, if that is another process's,
//	       the next free one, or several when it holds more than 255 read
//	       locks.
//
// Invariant: a slot that is 0 or holds read locks has its idle bit clear.
// A writer that finds a slot 0 marks it: it CASes the slot from 0 to mark,
// sets the idle bit, then looks at the slot again and clears the bit if a
// reader claimed the slot meanwhile. A reader claims a 0 slot (the fast
// path: its bit is clear, and stays clear while the slot is not 0, since a
// writer sets it only after marking) or a marked one (then it clears the
// bit itself, after its CAS).
//
// Reader: add one to its slot (a CAS, a full barrier), then load w. If w
// has no owner, the read lock is held; otherwise take the share back and
// sleep on w until it is released. Writer: lock w, then load the idle bits
// and every slot whose bit is clear, until every slot is free, sleeping on
// drain. Both sides write their own word and then read the other's, with
// sequentially consistent atomics: either the reader sees the writer in w,
// or the writer sees the reader's count, through its clear idle bit (clear
// before the reader's load of w, by the invariant, and not set again while
// the slot holds the read lock): the store-load pattern of Dekker's
// algorithm. A bit a writer set on a slot that a reader claimed at the same
// time is cleared again by that writer's second look, while it still holds
// w, or by the reader itself, before its load of w: a reader can be inside
// with its bit set only while a writer holds w, and it backs out. (An index
// of busy slots that readers set and writers clear once let a writer in
// beside a reader: a writer loaded the reader's slot as free, the reader
// counted itself and found its bit set, the writer cleared the bit and
// left, and only then did the reader load w; the next writer skipped its
// slot.) A reader leaving (RUnlock, or backing out) that sees w held bumps
// drain and wakes the writer, which loaded drain before it looked at the
// slots, so it never sleeps through the last reader leaving. Releasing w
// wakes every sleeper on it when its readers bit is set, except that where
// the kernel can tell them apart it wakes only a writer when one sleeps
// too (see "Unlock" at Mutex): readers sleep with readerBits, at most
// readerPatience, then turnLength/2, at a time (or a liveness slice), and
// a writer that lets w go for a readers' turn wakes them all.
//
// Readers' turn: a writer that unlocks and locks again at once, or writers
// that take w one after the other, could keep a reader out for ever (it
// adds its count and loads w only to find w held again: on a slow
// scheduler, such as Wine's, for seconds). A reader that has waited for
// readerPatience stores turn, a time turnLength ahead (wall clock, Unix
// ns, every process reads the same), each time it wakes and finds w held,
// and it wakes every turnLength/2 while w stays held: a turn asked only
// when the reader woke ran out while the writer that had just taken w held
// it longer than turnLength, and the writer after that saw none (readers
// waited 200-300 ms for writers holding 15 ms each back to back).
// A writer that gets w while the turn lasts lets w go (waking the readers)
// and waits for the turn to end before it tries again; TryLock fails. The
// reader that gets in ends the turn (a CAS of the value it stored), and so
// does one that gives up. A turn that has passed, or that lies more than
// two turn lengths ahead (a damaged word, a clock set back), is over. So a
// writer waits for a starving reader at most turnLength at a time, and a
// reader dead in its turn delays writers by at most that, once.
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
	idle  [rwSlots / 64]uint64
	turn  int64  // readers' turn: until when (Unix ns) writers let readers in; 0 none
	_     uint64 // the slots start on a cache line of their own
	slots [rwSlots]uint64
}

const (
	rwSlots    = 256
	rCountMask = 1<<8 - 1
	rMark      = 1 << 8 // a free slot that writers skip (see the protocol)
)

var (
	// readerID is this process's slot identity; readerOne its slot value
	// when it holds one read lock there.
	readerID  = uint64(owner.Self()) << 8
	readerOne = readerID | 1
	// readerHome is the slot this process tries first; homeOff its offset
	// in an RWMutex.
	homeOff    = unsafe.Offsetof(RWMutex{}.slots) + 8*uintptr(readerHome)
	readerHome = func() uint {
		t := uint64(owner.Self())
		t ^= t >> 29
		t *= 0xbf58476d1ce4e5b9
		t ^= t >> 32
		return uint(t % rwSlots)
	}()
)

// readerPatience is how long a reader waits before it asks for a turn;
// turnLength how long a turn lasts at most.
const (
	readerPatience = 2 * time.Millisecond
	turnLength     = 5 * time.Millisecond
)

// turnActive reports whether the readers' turn lasts, ending a turn that
// is over.
func (rw *RWMutex) turnActive() bool {
	u := atomic.LoadInt64(&rw.turn)
	if u == 0 {
		return false
	}
	if left := u - time.Now().UnixNano(); left > 0 && left <= int64(2*turnLength) {
		return true
	}
	atomic.CompareAndSwapInt64(&rw.turn, u, 0)
	return false
}

// askTurn starts (or prolongs) a readers' turn and returns the value it
// stored.
func (rw *RWMutex) askTurn() int64 {
	v := time.Now().Add(turnLength).UnixNano()
	atomic.StoreInt64(&rw.turn, v)
	return v
}

// endTurn ends the turn a reader asked for (mine, 0 if none) unless
// another reader asked since.
func (rw *RWMutex) endTurn(mine int64) {
	if mine != 0 {
		atomic.CompareAndSwapInt64(&rw.turn, mine, 0)
	}
}

// slotToken returns the owner token in slot value v.
func slotToken(v uint64) owner.Token { return owner.Token(v >> 8) }

// RLock locks rw for reading, waiting as long as it takes.
func (rw *RWMutex) RLock() {
	// The common case, a CAS and a load: this process's home
	// slot is free (so writers look at it) and no writer is about.
	took := atomic.CompareAndSwapUint64(rw.home(), 0, readerOne)
	if took && atomic.LoadUint64(&rw.w.state)&mHeld == 0 {
		return
	}
	rw.rlockMiss(took)
}

// home returns this process's home slot.
func (rw *RWMutex) home() *uint64 { return (*uint64)(unsafe.Add(unsafe.Pointer(rw), homeOff)) }

// rlockMiss is RLock when its common case did not apply: took tells
// whether a share was counted in the home slot (and met a writer).
func (rw *RWMutex) rlockMiss(took bool) {
	defer panicOnFault(debug.SetPanicOnFault(true))
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
	return rw.tryReadGuarded()
}

// tryReadGuarded is tryRead off the fast path (the home slot taken), which
// looks at other slots: guarded, as the slow paths are.
func (rw *RWMutex) tryReadGuarded() (ok bool) {
	defer panicOnFault(debug.SetPanicOnFault(true))
	ok, _ = rw.tryRead()
	return ok
}

// TryRLock locks rw for reading if no writer holds or waits for it, and
// reports whether it did.
func (rw *RWMutex) TryRLock() bool { return rw.tryRLock() }

// RLockTimeout locks rw for reading, waiting at most d. It returns
// ErrTimeout when d passed, and ErrOwnerDead (with the read lock held) when
// it had to recover the lock from a writer that died.
func (rw *RWMutex) RLockTimeout(d time.Duration) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if rw.tryRLock() {
		return nil
	}
	return rw.rlockSlow(timeoutDeadline(d))
}

// RLockContext locks rw for reading, waiting until ctx is done. It returns
// ctx.Err() when ctx ended first, and ErrOwnerDead (with the read lock held)
// when it had to recover the lock from a writer that died.
func (rw *RWMutex) RLockContext(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
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

// admit completes a read lock counted in slot i (whose idle bit is clear):
// it keeps the share if no writer holds w, and gives it back if one does.
func (rw *RWMutex) admit(i int) bool {
	if atomic.LoadUint64(&rw.w.state)&mHeld == 0 {
		return true
	}
	rw.giveBack(i)
	return false
}

// take counts one read share for this process in a slot: its own (with
// room), else a free one, probing from its home, and makes sure the slot's
// idle bit is clear. It returns the slot, or -1 if every slot is another
// process's.
func (rw *RWMutex) take() int {
	for k := uint(0); k < rwSlots; k++ {
		i := (readerHome + k) % rwSlots
		p := &rw.slots[i]
		for {
			old := atomic.LoadUint64(p)
			var nw uint64
			switch {
			case old == 0 || old == rMark:
				nw = readerOne
			case old&^rCountMask == readerID && old&rCountMask < rCountMask:
				nw = old + 1
			}
			if nw == 0 {
				break
			}
			if atomic.CompareAndSwapUint64(p, old, nw) {
				// Make sure writers look at the slot, before our load of w:
				// we may have claimed it marked, or joined a goroutine of
				// ours that did and has not cleared the bit yet.
				if w, bit := &rw.idle[i/64], uint64(1)<<(i%64); atomic.LoadUint64(w)&bit != 0 {
					atomic.AndUint64(w, ^bit)
				}
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
// It wakes every sleeper on drain: readers waiting for a free slot (with
// more than 256 reading processes) sleep there too, and must not take the
// writer's wake-up.
func (rw *RWMutex) wakeWriter() {
	atomic.AddUint32(&rw.drain, 1)
	futex.Wake(&rw.drain, futex.All)
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
	var since time.Time // of the first sleep
	var mine int64      // the turn this reader asked for
	defer func() { rw.endTurn(mine) }()
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
			if dl.spinDone(spins) {
				spins = 0
			}
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
			rw.repairMarks()
			rw.w.Unlock()
			result = ErrOwnerDead
			continue
		}
		if w == nil {
			w = dl.watch(word)
		}
		// See "Readers' turn": once patient, ask for the turn, and keep it
		// asked (wake before it ends) for as long as w stays held, so that
		// it still lasts when the writer in the way lets w go, however long
		// that writer holds it.
		slice := ow.left(now)
		if !slept {
			since = now
			slice = min(slice, readerPatience)
		} else if now.Sub(since) >= readerPatience {
			mine = rw.askTurn()
			slice = min(slice, turnLength/2)
		} else {
			slice = min(slice, readerPatience-now.Sub(since))
		}
		err := dl.sleepBits(word, uint32(st), slice, readerBits)
		slept = true
		if err != nil {
			// Judge the writer once more before leaving, so that readers
			// that keep retrying with short timeouts still recover the lock
			// of a writer that died.
			if st := atomic.LoadUint64(&rw.w.state); st&mHeld != 0 && rw.w.takeOver(st) {
				rw.repairMarks()
				rw.w.Unlock()
				if ok, _ := rw.tryRead(); ok {
					return ErrOwnerDead
				}
			}
			return err
		}
	}
}

// reclaimDead releases the read shares of every process found dead. It
// looks at every slot, marked ones included: a reader killed between its
// claim of a marked slot and its clearing of the bit left a share writers
// skip (harmless, it reads nothing) that only this frees.
func (rw *RWMutex) reclaimDead() {
	for i := range rw.slots {
		p := &rw.slots[i]
		if v := atomic.LoadUint64(p); v&rCountMask != 0 && !owner.Alive(unsafe.Pointer(p), slotToken(v)) {
			rw.freeSlot(i, v)
		}
	}
}

// freeSlot frees slot i, which held v (read locks of a process that will
// take no more of them: dead, or giving them up), and reports whether it
// did. The slot is freed as what its bit says it is: marked (bit set; a
// reader killed between its claim of a marked slot and its clearing of the
// bit) or 0 (bit clear), never 0 with the bit set, which a reader could
// take unseen. Nobody else changes the bit of a slot that holds read locks.
func (rw *RWMutex) freeSlot(i int, v uint64) bool {
	nw := uint64(0)
	if atomic.LoadUint64(&rw.idle[i/64])&(1<<(i%64)) != 0 {
		nw = rMark
	}
	return atomic.CompareAndSwapUint64(&rw.slots[i], v, nw)
}

// repairMarks is called by a process that took w over from a dead writer:
// that writer may have died between setting a slot's idle bit and looking
// at the slot again, leaving a bit set on a slot a reader claimed. Every
// set bit of a slot that is not marked is cleared.
func (rw *RWMutex) repairMarks() {
	for k := range rw.idle {
		b := atomic.LoadUint64(&rw.idle[k])
		for b != 0 {
			j := bits.TrailingZeros64(b)
			b &^= 1 << j
			if atomic.LoadUint64(&rw.slots[k*64+j]) != rMark {
				atomic.AndUint64(&rw.idle[k], ^(uint64(1) << j))
			}
		}
	}
}

// RUnlock releases one read lock taken by this process. Releasing a read
// lock this process does not hold does nothing.
func (rw *RWMutex) RUnlock() {
	// The common case, a CAS and a load: this process's only read
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
// It fails during a readers' turn (see the protocol).
func (rw *RWMutex) TryLock() bool {
	defer panicOnFault(debug.SetPanicOnFault(true))
	if atomic.LoadInt64(&rw.turn) != 0 && rw.turnActive() {
		return false
	}
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
	// Guarded throughout (see "Memory faults"): even the common case, w
	// free and no reader, reads the slot table (the slots not marked free).
	defer catchFault(&err, debug.SetPanicOnFault(true))
	held := atomic.CompareAndSwapUint64(&rw.w.state, 0, selfWord)
	if held && atomic.LoadInt64(&rw.turn) == 0 && rw.readers() < 0 {
		return nil
	}
	return rw.lockWait(dl, held)
}

// lockWait is lockSlow when it must wait: for w unless held, then for the
// readers to leave.
func (rw *RWMutex) lockWait(dl deadline, held bool) error {
	var result error
	for {
		if !held {
			err := rw.w.lockSlow(dl, futex.All)
			if err != nil && err != ErrOwnerDead {
				return err
			}
			// Reported once the lock is ours, as this locking of w found
			// it: after a turn, the mark an earlier locking found may have
			// been cleared by a writer that got w meanwhile (ErrOwnerDead
			// for data already repaired), or set by a takeover meanwhile.
			result = err
			if err == ErrOwnerDead {
				rw.repairMarks()
			}
		}
		if !rw.turnActive() {
			break
		}
		// Readers' turn: let them in (waking them: an Unlock that finds a
		// writer asleep leaves the readers asleep), wait for it to end,
		// try again.
		rw.w.Unlock()
		futex.Wake(lowHalf(&rw.w.state), futex.All)
		held = false
		if err := rw.waitTurn(dl); err != nil {
			return err
		}
	}
	if rw.readers() < 0 {
		return result
	}
	return rw.drainReaders(dl, result)
}

// waitTurn waits, holding nothing, until the readers' turn is over.
func (rw *RWMutex) waitTurn(dl deadline) error {
	for rw.turnActive() {
		if err := dl.expired(); err != nil {
			return err
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
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
			if dl.spinDone(spins) {
				spins = 0
			}
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
// are none. It marks the free slots it passes; only a writer holding w
// calls it.
func (rw *RWMutex) readers() int {
	for k := range rw.idle {
		b := ^atomic.LoadUint64(&rw.idle[k])
		for b != 0 {
			j := bits.TrailingZeros64(b)
			b &^= 1 << j
			s := &rw.slots[k*64+j]
			v := atomic.LoadUint64(s)
			if v&rCountMask != 0 {
				return k*64 + j
			}
			if v != 0 || !atomic.CompareAndSwapUint64(s, 0, rMark) {
				continue // a reader's claim of a marked slot in progress, or a claim just now
			}
			p, bit := &rw.idle[k], uint64(1)<<j
			atomic.OrUint64(p, bit)
			if v := atomic.LoadUint64(s); v != rMark {
				// A reader claimed the slot between our CAS and our bit:
				// clear the bit again (the reader, if it backed out, left 0).
				atomic.AndUint64(p, ^bit)
				if v&rCountMask != 0 {
					return k*64 + j
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
