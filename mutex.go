package shm

import (
	"context"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/proc"
)

// Mutex is a mutual exclusion lock that works between processes: place it
// in shared memory (inside a Segment, at an 8-byte-aligned offset, or as a
// field of a struct that lives there) and every process that maps the memory
// can use it. The zero value is an unlocked mutex; a Mutex must not be
// copied after first use.
//
// A Mutex belongs to the process that locked it, not to a goroutine: as with
// sync.Mutex, another goroutine of the same process may unlock it.
//
// If the owning process dies while it holds the lock, the next process that
// waits for it takes it over within about 20 ms: LockContext and LockTimeout
// return ErrOwnerDead with the lock held, and the mutex stays marked (see
// OwnerDied) until the new owner repairs the data it guards and calls
// MarkConsistent, so that a later locker learns of it even if the repairer
// dies too. Lock, which returns no error, takes the lock over the same way.
//
// The uncontended Lock and Unlock are one atomic compare-and-swap each and
// never enter the kernel.
//
// # Protocol
//
// The state is one 64-bit word:
//
//	bits  0..29  owner PID, 0 when unlocked
//	bit   30     waiters: a process may be asleep on the word (futex)
//	bit   31     inconsistent: an owner died holding the lock
//	bits 32..55  owner start tag (internal/proc), so a reused PID is not
//	             taken for the dead owner
//	bits 56..63  owner PID-namespace tag: an owner from another namespace
//	             is never judged dead by its PID
//
// Waiters sleep on the low 32 bits (owner PID and the two flags). The rules:
//
//   - Lock: CAS from unlocked (owner 0) to (self | inconsistent bit kept).
//     A locker that has slept sets the waiters bit in the value it installs,
//     since others may still be asleep.
//   - Before sleeping a waiter sets the waiters bit with a CAS on the value
//     it saw, then sleeps only while the low word still equals that value;
//     any unlock changes the owner field, so the sleep cannot miss it.
//   - Unlock: CAS from (self) to 0 when no flag is set; otherwise clear the
//     owner and the waiters bit (keeping inconsistent) and, if the waiters
//     bit was set, wake one sleeper. Every sleeper is therefore either woken
//     or sees a changed word.
//   - Owner death: a waiter that slept a full livenessSlice without the word
//     changing asks proc.Alive about the owner. If it is dead, the waiter
//     CASes the exact word it examined to (self | waiters | inconsistent):
//     of several waiters that noticed, one wins; a word that changed in the
//     meantime (the owner was alive after all, or another process took over)
//     makes the CAS fail and the waiter starts over.
//
// Invariants: the owner field is nonzero exactly while the lock is held; the
// inconsistent bit is only set by a takeover and only cleared by
// MarkConsistent; a sleeper is only ever asleep on a word with the waiters
// bit set.
type Mutex struct {
	state uint64
}

const (
	mPIDMask      = 1<<30 - 1
	mWaiters      = 1 << 30
	mInconsistent = 1 << 31
	mFlags        = mWaiters | mInconsistent
	mOwnerMask    = mPIDMask | 0xffffffff<<32
)

// selfWord is this process's owner value: (namespace and start tags) << 32 | PID.
var selfWord = func() uint64 {
	id := proc.Self()
	return uint64(id.Word())<<32 | uint64(id.PID&mPIDMask)
}()

func ownerOf(w uint64) proc.ID {
	return proc.FromWord(uint32(w&mPIDMask), uint32(w>>32))
}

// Lock locks m, waiting as long as it takes. If the previous owner died
// holding it, Lock takes it over; the data it guards may need repair (see
// OwnerDied).
func (m *Mutex) Lock() {
	if atomic.CompareAndSwapUint64(&m.state, 0, selfWord) {
		return
	}
	m.lockSlow(noDeadline())
}

// TryLock locks m if it is free and reports whether it did. It never waits
// and never checks whether a holder is alive.
func (m *Mutex) TryLock() bool {
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mOwnerMask != 0 {
			return false
		}
		if atomic.CompareAndSwapUint64(&m.state, old, selfWord|old&mInconsistent) {
			return true
		}
	}
}

// LockTimeout locks m, waiting at most d. It returns nil when it locked m,
// ErrOwnerDead when it locked m after its owner died (or while it is still
// marked inconsistent), and ErrTimeout when d passed without the lock.
func (m *Mutex) LockTimeout(d time.Duration) error {
	if atomic.CompareAndSwapUint64(&m.state, 0, selfWord) {
		return nil
	}
	return m.lockSlow(timeoutDeadline(d))
}

// LockContext locks m, waiting until ctx is done. It returns nil when it
// locked m, ErrOwnerDead when it locked m after its owner died (or while it
// is still marked inconsistent), and ctx.Err() when ctx ended first.
func (m *Mutex) LockContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if atomic.CompareAndSwapUint64(&m.state, 0, selfWord) {
		return nil
	}
	return m.lockSlow(ctxDeadline(ctx))
}

func (m *Mutex) lockSlow(dl deadline) error {
	word := lowHalf(&m.state)
	var w *watcher // armed before the first sleep
	defer func() { w.stop() }()

	var waiters uint64 // mWaiters once we have slept
	spins := spinBudget(unsafe.Pointer(word))
	spinning := spins > 0 // until the spin ends
	var seen uint64       // the word as it was at the start of the last sleep
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mOwnerMask == 0 {
			if atomic.CompareAndSwapUint64(&m.state, old, selfWord|waiters|old&mInconsistent) {
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
			spins--
			spinPause()
			continue
		}
		if waiters == 0 && seen == 0 {
			spinLost(unsafe.Pointer(word), spinning)
			spinning = false
		}
		if old&mWaiters == 0 {
			if !atomic.CompareAndSwapUint64(&m.state, old, old|mWaiters) {
				continue
			}
			old |= mWaiters
		}
		if old == seen {
			// A whole slice passed and the word did not change: is the
			// owner still there?
			if !proc.Alive(ownerOf(old)) {
				if atomic.CompareAndSwapUint64(&m.state, old, selfWord|mWaiters|mInconsistent) {
					return ErrOwnerDead
				}
				continue
			}
		}
		waiters = mWaiters
		if w == nil {
			w = dl.watch(word)
		}
		before := time.Now()
		if err := dl.sleep(word, uint32(old), livenessSlice); err != nil {
			return err
		}
		if time.Since(before) >= livenessSlice {
			seen = old
		} else {
			seen = 0
		}
	}
}

// Unlock unlocks m. Unlike sync.Mutex, unlocking an unlocked Mutex does not
// crash the program, since the word is shared with other processes that may
// have damaged it; it does nothing.
func (m *Mutex) Unlock() {
	if atomic.CompareAndSwapUint64(&m.state, selfWord, 0) {
		return
	}
	m.unlockSlow()
}

func (m *Mutex) unlockSlow() {
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mOwnerMask == 0 {
			return
		}
		if atomic.CompareAndSwapUint64(&m.state, old, old&mInconsistent) {
			if old&mWaiters != 0 {
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
// the lock guards has been repaired. Call it while holding m.
func (m *Mutex) MarkConsistent() {
	for {
		old := atomic.LoadUint64(&m.state)
		if old&mInconsistent == 0 || atomic.CompareAndSwapUint64(&m.state, old, old&^mInconsistent) {
			return
		}
	}
}

// Owner returns the process ID of the holder, or 0 if m is unlocked. It is
// a snapshot, for diagnostics.
func (m *Mutex) Owner() int {
	return int(atomic.LoadUint64(&m.state) & mPIDMask)
}
