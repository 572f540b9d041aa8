package shm

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/owner"
)

// life is a handle's life, a Queue's, a Log's or a Cell's: its calls look
// at the closed flag first and fail with ErrClosed once it is set. The
// calls that wait register themselves (use), so that Close, which sets the
// flag, wakes them and waits for them to leave before the memory can be
// unmapped (Managed.Close). The other calls are a few instructions long and
// do not register, which would cost them a good share of their time:
// closing a handle (or its Managed) while another goroutine is in such a
// call is a bug of the caller's, as closing a file during a read.
type life struct {
	users atomic.Int64 // calls in progress
	stop  atomic.Bool  // closed: calls fail, waits end
}

// use registers a call; it fails once the handle is closed. A call counts
// itself in, then looks at the closed flag; shut sets the flag, then waits
// for the count to drop to 0: either the call sees the flag or shut sees
// the call.
func (h *life) use() bool {
	h.users.Add(1)
	if h.stop.Load() {
		h.users.Add(-1)
		return false
	}
	return true
}

func (h *life) done() { h.users.Add(-1) }

// shut closes the handle: it sets the flag, wakes the waits in progress
// (wake, guarded), and waits for every registered call to leave. Only the
// first call does: it reports whether it was that one.
func (h *life) shut(wake func()) bool {
	if h.stop.Swap(true) {
		return false
	}
	guarded(func() error {
		wake()
		return nil
	})
	for wait := time.Microsecond; h.users.Load() != 0; {
		time.Sleep(wait)
		wait = min(2*wait, time.Millisecond)
	}
	return true
}

// wakeAll wakes every sleeper on a futex word whose bit 0 says some may
// sleep and bits 1..31 count wake-ups: it clears the bit, counts one, and
// wakes them all (a sleeper whose value changed does not go to sleep).
// (Out of line, so that the checks before it inline into fast paths.)
//
//go:noinline
func wakeAll(word *uint32) {
	for {
		w := atomic.LoadUint32(word)
		if atomic.CompareAndSwapUint32(word, w, (w+2)&^1) {
			break
		}
	}
	futex.Wake(word, futex.All)
}

// attachOne makes this process the one process recorded in word (a
// queue's consumer, a log's or a cell's writer): while another is there
// (another live process, or this one), it fails with an error matching
// ErrInUse; a dead one's place is taken. It returns this process's token.
func attachOne(word *uint64, op, name, what string) (uint64, error) {
	self := uint64(owner.Self())
	for {
		v := atomic.LoadUint64(word)
		switch {
		case v == self:
			return 0, &Error{Op: op, Name: name, Err: fmt.Errorf("%w: this process's %s is attached", ErrInUse, what)}
		case v != 0 && owner.Alive(unsafe.Pointer(word), owner.Token(v)):
			return 0, &Error{Op: op, Name: name, Err: fmt.Errorf("%w: the %s is pid %d", ErrInUse, what, owner.Token(v).PID())}
		}
		if atomic.CompareAndSwapUint64(word, v, self) {
			return self, nil
		}
	}
}

// writerSlice bounds a sleep of a reader (of a log, of a cell) whose
// writer, recorded in word, is in the middle of a store that may not wake
// it: at most busy at a time while the writer lives (asked every
// livenessSlice of this wait, see ownerWatch), slice once it was found
// dead (*dead: only its successor, which wakes the readers, goes on).
func writerSlice(word *uint64, watch *ownerWatch, dead *uint64, busy, slice time.Duration) time.Duration {
	w := atomic.LoadUint64(word)
	now := time.Now()
	if w != 0 && w != *dead && watch.due(w, now) && !owner.Alive(unsafe.Pointer(word), owner.Token(w)) {
		*dead = w
	}
	if w != 0 && w != *dead {
		return max(min(watch.left(now), busy), time.Microsecond)
	}
	return slice
}
