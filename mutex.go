package shm

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/owner"
)

// Mutex is a mutual exclusion lock that works between processes: place it
// in shared memory (inside a Segment, at an 8-byte-aligned offset, or as a
// field of a struct that lives there) and every process that maps the memory
// can use it. The zero value is an unlocked mutex; a Mutex must not be
// copied after first use.
//
// A Mutex belongs to the process that locked it, not to a goroutine: as with
// sync.Mutex, another goroutine of the same process may unlock it. Another
// process cannot: its Unlock of a mutex it does not hold does nothing.
//
// If the owning process dies while it holds the lock, a process that waits
// for it takes it over within about 20 ms of waiting (however short each of
// its calls' timeouts, and whatever else wakes it): LockContext and
// LockTimeout return ErrOwnerDead with the lock held, and the mutex stays
// marked (see OwnerDied) until the new owner repairs the data it guards and
// calls MarkConsistent, so that a later locker learns of it even if the
// repairer dies too. Lock, which returns no error, takes the lock over the
// same way. Whether the owner is alive is decided by the kernel where it can
// be (see the README, "Owner death"): for that, every process that locks
// the mutex must have the segment that holds it open through this package.
// On Linux, a process that closes the last Segment it mapped the mutex
// through gives up the lock it held there (it is judged by its open
// descriptors of the segment's file); elsewhere it keeps it until it ends.
//
// The uncontended Lock and Unlock are one atomic compare-and-swap each and
// never enter the kernel.
//
// A Mutex needs write access to its memory: in a segment opened with
// ReadOnly, locking it faults (the managed API refuses instead).
//
// # Protocol
//
// The state is one 64-bit word:
//
//	bits  0..23  owner token bits 0..23 (internal/owner: its PID and two
//	             bits of its instance), 0 when unlocked
//	bits 24..28  0
//	bit   29     readers: readers of an RWMutex may be asleep on the word
//	             (never set in a plain Mutex)
//	bit   30     waiters: a process may be asleep on the word (futex)
//	bit   31     inconsistent: an owner died holding the lock
//	bits 32..63  owner token bits 24..55
//
// A token's low 24 bits are never 0, so the low 32 bits, on which waiters
// sleep, change whenever the lock is released. The rules:
//
//   - Lock: CAS from unlocked (owner 0) to (self | inconsistent bit kept).
//     A locker that has slept sets the waiters bit in the value it installs,
//     since others may still be asleep.
//   - Before sleeping a waiter sets the waiters bit with a CAS on the value
//     it saw, then sleeps only while the low word still equals that value;
//     an unlock changes the owner field, so the sleep cannot miss it.
//   - Lock and TryLock keep the readers bit of the word they take (readers
//     of an RWMutex may still sleep on it, see below).
//   - Unlock: only by the owner. CAS from (self) to 0 when no flag is set;
//     otherwise clear everything but inconsistent and, if the readers bit
//     was set, wake every sleeper, else if the waiters bit was, wake one.
//     Every sleeper is therefore either woken or sees a changed word.
//     Where the kernel wakes selectively (futex.Selective: Linux), readers
//     of an RWMutex sleep with readerBits, and an Unlock that finds both
//     bits set keeps the readers bit and wakes one sleeper that is not a
//     reader (wakeWriters), waking every sleeper only if there was none:
//     the writer it wakes takes the lock next, so readers woken with it
//     would only run to find it held again, and on a machine with more
//     runnable processes than CPUs they took the CPUs the writer waited
//     for (64 readers and 2 writers on 2 CPUs: a writer's wait fell from
//     15-60 to 8-13 ms at the median, and from 320-400 to 210-280 ms at
//     p99). The readers sleep on until a writer's Unlock finds no other
//     writer asleep, or their own slices end (see RWMutex).
//   - Give-up: a waiter that slept and leaves without the lock (deadline,
//     cancellation) may have been the one sleeper an Unlock woke. So it
//     wakes another if the lock is free, or sets the waiters bit if it is
//     held (the holder's Unlock then wakes someone): a wake-up is never
//     lost with the waiter that received it.
//   - Owner death: a waiter asks owner.Alive about the owner once the same
//     owner has been in its way for livenessSlice of its waiting time
//     (counted across wake-ups), again every livenessSlice, and once more
//     when its wait ends unsuccessfully. If the owner is dead, the waiter
//     CASes the exact word it examined to (self | waiters | inconsistent |
//     readers kept): of several waiters that noticed, one wins; a word that
//     changed in the meantime makes the CAS fail and the waiter starts
//     over. A token's verdict "dead" is final (no process takes a token
//     over), so the examined word cannot have come back to life.
//
// Invariants: the owner field is nonzero exactly while the lock is held; the
// inconsistent bit is only set by a takeover and only cleared by
// MarkConsistent; a sleeper is only ever asleep on a word with the waiters
// (or readers) bit set; only the owner's process clears the owner field,
// except a takeover from a process the kernel said is gone.
type Mutex struct {
	state uint64
}

const (
	mTokLow       = 1<<24 - 1
	mReaders      = 1 << 29
	mWaiters      = 1 << 30
	mInconsistent = 1 << 31
	mOwnerMask    = mTokLow | 0xffffffff<<32
	// mHeld tells a held lock: a token's low 24 bits are never 0, so
	// these are nonzero exactly while someone holds the lock.
	mHeld = mTokLow
)

// The futex bits of the sleepers on a lock word (futex.WaitBits): readers
// of an RWMutex sleep with readerBits, so that an Unlock can wake a writer
// (wakeWriters: every sleeper of futex.Wait has every bit) and leave them
// asleep.
const (
	wakeWriters = 1
	readerBits  = 2
)

// wordOf places an owner token in a lock word's owner bits.
func wordOf(t owner.Token) uint64 { return uint64(t)&mTokLow | uint64(t)>>24<<32 }

// tokenOf returns the owner token in a lock word.
func tokenOf(w uint64) owner.Token { return owner.Token(w&mTokLow | w>>32<<24) }

// selfWord is this process's owner value.
var selfWord = wordOf(owner.Self())

// Lock locks m, waiting as long as it takes. If the previous owner died
// holding it, Lock takes it over; the data it guards may need repair (see
// OwnerDied).
func (m *Mutex) Lock() {
	if atomic.CompareAndSwapUint64(&m.state, 0, selfWord) {
		return
	}
	if err := m.lockSlow(noDeadline(), 1); err != nil && err != ErrOwnerDead {
		panic(err) // only a memory fault: see "Memory faults"
	}
}

// TryLock locks m if it is free and reports whether it did. It never waits
// and never checks whether a holder is alive.
func (m *Mutex) TryLock() bool {
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mHeld != 0 {
			return false
		}
		if atomic.CompareAndSwapUint64(&m.state, old, selfWord|old&(mInconsistent|mWaiters|mReaders)) {
			return true
		}
	}
}

// LockTimeout locks m, waiting at most d. It returns nil when it locked m,
// ErrOwnerDead when it locked m after its owner died (or while it is still
// marked inconsistent), and ErrTimeout when d passed without the lock.
func (m *Mutex) LockTimeout(d time.Duration) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if atomic.CompareAndSwapUint64(&m.state, 0, selfWord) {
		return nil
	}
	return m.lockSlow(timeoutDeadline(d), 1)
}

// LockContext locks m, waiting until ctx is done. It returns nil when it
// locked m, ErrOwnerDead when it locked m after its owner died (or while it
// is still marked inconsistent), and ctx.Err() when ctx ended first.
func (m *Mutex) LockContext(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if atomic.CompareAndSwapUint64(&m.state, 0, selfWord) {
		return nil
	}
	return m.lockSlow(ctxDeadline(ctx), 1)
}

// lockSlow waits for m. handOn is how many sleepers a waiter that gives up
// wakes when it finds m free (1 for a Mutex; every one for the writer word
// of an RWMutex, where readers sleep too).
func (m *Mutex) lockSlow(dl deadline, handOn int) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	word := lowHalf(&m.state)
	var w *watcher // armed before the first sleep
	defer func() { w.stop() }()

	var waiters uint64 // mWaiters once we have slept
	var ow ownerWatch
	spins := spinBudget(unsafe.Pointer(word)) // in spin-wait hints
	spinning := spins > 0                     // until the spin ends
	polls, pause := 0, uint32(1)
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mHeld == 0 {
			if atomic.CompareAndSwapUint64(&m.state, old, selfWord|waiters|old&(mInconsistent|mReaders)) {
				if spinning {
					spinWon(unsafe.Pointer(word))
				}
				if old&mInconsistent != 0 {
					return ErrOwnerDead
				}
				return nil
			}
			continue
		}
		if spins > 0 {
			// Back off: the pause between two polls doubles every
			// backoffStep polls, up to maxBackoff hints. A lock released
			// within a few hundred nanoseconds (a hand-off) is seen at
			// once; a waiter of a lock taken again and again polls it
			// rarely, so that it neither slows every acquisition of the
			// holder (a poll takes the line from its cache) nor steals the
			// lock at each release and bounces it between processes.
			polls++
			if dl.spinDone(polls) {
				spins = 0
			}
			spins -= int(pause)
			spinPauses(pause)
			if polls%backoffStep == 0 && pause < maxBackoff {
				pause *= 2
			}
			continue
		}
		if waiters == 0 {
			spinLost(unsafe.Pointer(word), spinning)
			spinning = false
		}
		if old&mWaiters == 0 {
			if !atomic.CompareAndSwapUint64(&m.state, old, old|mWaiters) {
				continue
			}
			old |= mWaiters
		}
		now := time.Now()
		if ow.due(old&mOwnerMask, now) && m.takeOver(old) {
			return ErrOwnerDead
		}
		waiters = mWaiters
		if w == nil {
			w = dl.watch(word)
		}
		if err := dl.sleep(word, uint32(old), ow.left(now)); err != nil {
			// Judge the holder once more before leaving, so that a caller
			// that keeps retrying with short timeouts still gets a dead
			// holder's lock, then pass on a wake-up we may have taken.
			if old := atomic.LoadUint64(&m.state); old&mHeld != 0 && m.takeOver(old) {
				return ErrOwnerDead
			}
			m.handOn(handOn)
			return err
		}
	}
}

const (
	backoffStep = 8  // polls of a lock waiter between two doublings of its pause
	maxBackoff  = 32 // the longest pause between two polls, in spin-wait hints
)

// takeOver takes m from the holder in old if the holder is gone, with a CAS
// on exactly old, and reports whether it did.
func (m *Mutex) takeOver(old uint64) bool {
	if owner.Alive(unsafe.Pointer(&m.state), tokenOf(old)) {
		return false
	}
	return atomic.CompareAndSwapUint64(&m.state, old, selfWord|mWaiters|mInconsistent|old&mReaders)
}

// handOn is called by a waiter that slept and leaves without the lock: an
// Unlock may have woken it, and only it, after clearing the waiters bit.
// If the lock is free it wakes n sleepers; if it is held it makes sure the
// holder's Unlock wakes one.
func (m *Mutex) handOn(n int) {
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mHeld == 0 {
			futex.Wake(lowHalf(&m.state), n)
			return
		}
		if old&mWaiters != 0 || atomic.CompareAndSwapUint64(&m.state, old, old|mWaiters) {
			return
		}
	}
}

// Unlock unlocks m. Unlocking a mutex this process does not hold (unlocked,
// or held by another process) does nothing: unlike sync.Mutex it does not
// crash the program, since the word is shared with other processes, and it
// never releases another process's lock.
func (m *Mutex) Unlock() {
	if atomic.CompareAndSwapUint64(&m.state, selfWord, 0) {
		return
	}
	m.unlockSlow()
}

func (m *Mutex) unlockSlow() {
	defer panicOnFault(debug.SetPanicOnFault(true))
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mOwnerMask != selfWord {
			return // not ours
		}
		// See "Unlock": with writers and readers of an RWMutex both
		// asleep, wake one writer and let the readers sleep on.
		nw := old & mInconsistent
		selective := futex.Selective && old&(mWaiters|mReaders) == mWaiters|mReaders
		if selective {
			nw |= mReaders
		}
		if atomic.CompareAndSwapUint64(&m.state, old, nw) {
			switch {
			case selective:
				if futex.WakeBits(lowHalf(&m.state), 1, wakeWriters) == 0 {
					// No writer asleep after all: wake the readers, and
					// take the bit back unless the word moved on, so
					// that later Unlocks need no system call.
					futex.Wake(lowHalf(&m.state), futex.All)
					atomic.CompareAndSwapUint64(&m.state, nw, nw&^mReaders)
				}
			case old&mReaders != 0:
				futex.Wake(lowHalf(&m.state), futex.All)
			case old&mWaiters != 0:
				futex.Wake(lowHalf(&m.state), 1)
			}
			return
		}
	}
}

// OwnerDied reports whether a process died holding m and no process has
// called MarkConsistent since.
func (m *Mutex) OwnerDied() bool {
	return atomic.LoadUint64(&m.state)&mInconsistent != 0
}

// MarkConsistent clears the mark that a previous owner died, once the data
// the lock guards has been repaired. Call it while holding m; it does
// nothing if this process does not hold m.
func (m *Mutex) MarkConsistent() {
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mInconsistent == 0 || old&mOwnerMask != selfWord ||
			atomic.CompareAndSwapUint64(&m.state, old, old&^mInconsistent) {
			return
		}
	}
}

// Owner returns the process ID of the holder, as the operating system
// numbers it (in the holder's PID namespace), or 0 if m is unlocked. It is
// a snapshot, for diagnostics.
func (m *Mutex) Owner() int {
	w := atomic.LoadUint64(&m.state)
	if w&mHeld == 0 {
		return 0
	}
	return tokenOf(w).PID()
}
