package shm

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
)

// Event is what every event kind does: Set signals it, Wait waits for it,
// Reset clears it. Auto-reset events are consumed by the Wait that returns
// (one Set releases one waiter); manual-reset events stay set, releasing
// every waiter, until Reset. A Set with nobody waiting is not lost: the next
// Wait returns at once. Setting an event that is already set does nothing
// (Sets do not accumulate).
type Event interface {
	// Set signals the event.
	Set() error
	// Reset clears the event.
	Reset() error
	// Wait waits until the event is set, with no limit.
	Wait() error
	// WaitTimeout waits at most d; it returns ErrTimeout if d passed.
	WaitTimeout(d time.Duration) error
	// WaitContext waits until ctx is done; it returns ctx.Err() then.
	WaitContext(ctx context.Context) error
}

// EventKind says how an event signals and how its waiters wait.
type EventKind uint32

// The event kinds of the model crate.
const (
	// EventAuto is an auto-reset event whose waiters sleep in the kernel
	// (AutoEvent).
	EventAuto EventKind = 1 + iota
	// EventManual is a manual-reset event whose waiters sleep in the kernel
	// (ManualEvent).
	EventManual
	// EventBusyAuto is an auto-reset event whose waiters spin (BusyAutoEvent).
	EventBusyAuto
	// EventBusyManual is a manual-reset event whose waiters spin
	// (BusyManualEvent).
	EventBusyManual
	// EventFDAuto is an auto-reset Linux eventfd (EventFD).
	EventFDAuto
	// EventFDManual is a manual-reset Linux eventfd (EventFD).
	EventFDManual
)

func (k EventKind) String() string {
	switch k {
	case EventAuto:
		return "auto"
	case EventManual:
		return "manual"
	case EventBusyAuto:
		return "busy-auto"
	case EventBusyManual:
		return "busy-manual"
	case EventFDAuto:
		return "eventfd-auto"
	case EventFDManual:
		return "eventfd-manual"
	}
	return "EventKind(" + strconv.FormatUint(uint64(k), 10) + ")"
}

// Kernel events.
//
// AutoEvent and ManualEvent share one 32-bit word:
//
//	bit 0       set
//	bits 1..31  how many waiters are registered (may be asleep)
//
// Set: CAS the set bit on; if the waiter count was nonzero, wake one waiter
// (auto) or all (manual). With no waiter registered, Set is one CAS and no
// system call. Wait: an auto event is consumed by a CAS that clears the set
// bit, a manual event only read. A waiter that finds it clear spins briefly
// (see SetSpin), then registers (count+1) and sleeps on the word while it
// holds the value it saw; a Set changes the set bit, so a Set between the
// waiter's check and its sleep makes the sleep return at once, and a Set
// after it wakes it. A woken auto waiter competes with every other waiter
// to clear the bit: exactly one wins per Set, the others sleep again. A
// waiter leaves by a CAS that removes it from the count (and, for auto,
// clears the bit in the same CAS when it takes the event).
//
// Invariants: the count is the number of waiters between registration and
// leaving (a dead waiter leaves it too high, which only costs a needless
// wake system call); the set bit changes only by Set, Reset, or an auto
// waiter taking the event.

const (
	evSet    = 1
	evWaiter = 2
)

// AutoEvent is an auto-reset event for processes sharing memory: one Set
// releases exactly one Wait. Its waiters sleep in the kernel. The zero value
// is a clear event. It is 8 bytes; place it at an 8-byte-aligned offset.
type AutoEvent struct {
	state uint32
	_     uint32
}

// ManualEvent is a manual-reset event for processes sharing memory: once
// Set, every Wait returns until Reset. Its waiters sleep in the kernel. The
// zero value is a clear event. It is 8 bytes; place it at an 8-byte-aligned
// offset.
type ManualEvent struct {
	state uint32
	_     uint32
}

// Set sets the event, waking one waiter. It never fails.
func (e *AutoEvent) Set() error {
	setEvent(&e.state, 1)
	return nil
}

// Reset clears the event. It never fails.
func (e *AutoEvent) Reset() error {
	resetEvent(&e.state)
	return nil
}

// Wait waits until the event is set, and clears it.
func (e *AutoEvent) Wait() error {
	if tryTake(&e.state) {
		return nil
	}
	return waitEvent(&e.state, true, noDeadline())
}

// WaitTimeout waits at most d for the event, and clears it. It returns
// ErrTimeout if d passed.
func (e *AutoEvent) WaitTimeout(d time.Duration) error {
	if tryTake(&e.state) {
		return nil
	}
	return waitEvent(&e.state, true, timeoutDeadline(d))
}

// WaitContext waits for the event until ctx is done, and clears it. It
// returns ctx.Err() if ctx ended first.
func (e *AutoEvent) WaitContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if tryTake(&e.state) {
		return nil
	}
	return waitEvent(&e.state, true, ctxDeadline(ctx))
}

// IsSet reports whether the event is set, without waiting or clearing it.
func (e *AutoEvent) IsSet() bool { return atomic.LoadUint32(&e.state)&evSet != 0 }

// Set sets the event, waking every waiter. It never fails.
func (e *ManualEvent) Set() error {
	setEvent(&e.state, futex.All)
	return nil
}

// Reset clears the event. It never fails.
func (e *ManualEvent) Reset() error {
	resetEvent(&e.state)
	return nil
}

// Wait waits until the event is set.
func (e *ManualEvent) Wait() error {
	if atomic.LoadUint32(&e.state)&evSet != 0 {
		return nil
	}
	return waitEvent(&e.state, false, noDeadline())
}

// WaitTimeout waits at most d for the event to be set. It returns ErrTimeout
// if d passed.
func (e *ManualEvent) WaitTimeout(d time.Duration) error {
	if atomic.LoadUint32(&e.state)&evSet != 0 {
		return nil
	}
	return waitEvent(&e.state, false, timeoutDeadline(d))
}

// WaitContext waits for the event to be set until ctx is done. It returns
// ctx.Err() if ctx ended first.
func (e *ManualEvent) WaitContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if atomic.LoadUint32(&e.state)&evSet != 0 {
		return nil
	}
	return waitEvent(&e.state, false, ctxDeadline(ctx))
}

// IsSet reports whether the event is set.
func (e *ManualEvent) IsSet() bool { return atomic.LoadUint32(&e.state)&evSet != 0 }

func setEvent(p *uint32, wake int) {
	// The common case first, without a load: one cache-line transfer, not
	// two, when the line is in a waiter's cache.
	if atomic.CompareAndSwapUint32(p, 0, evSet) {
		return
	}
	for {
		old := atomic.LoadUint32(p)
		if old&evSet != 0 {
			return
		}
		if atomic.CompareAndSwapUint32(p, old, old|evSet) {
			if old >= evWaiter {
				futex.Wake(p, wake)
			}
			return
		}
	}
}

func resetEvent(p *uint32) {
	for {
		old := atomic.LoadUint32(p)
		if old&evSet == 0 || atomic.CompareAndSwapUint32(p, old, old&^evSet) {
			return
		}
	}
}

// tryTake consumes a set auto-reset event.
func tryTake(p *uint32) bool {
	for {
		old := atomic.LoadUint32(p)
		if old&evSet == 0 {
			return false
		}
		if atomic.CompareAndSwapUint32(p, old, old&^evSet) {
			return true
		}
	}
}

func waitEvent(p *uint32, auto bool, dl deadline) error {
	spins := spinBudget(unsafe.Pointer(p))
	for i := 0; i < spins; i++ {
		if atomic.LoadUint32(p)&evSet != 0 {
			if !auto || tryTake(p) {
				spinWon(unsafe.Pointer(p))
				return nil
			}
		}
		spinPause()
	}
	spinLost(unsafe.Pointer(p), spins > 0)
	w := dl.watch(p)
	defer w.stop()
	atomic.AddUint32(p, evWaiter)
	for {
		old := atomic.LoadUint32(p)
		if old&evSet != 0 {
			nw := old - evWaiter
			if auto {
				nw &^= evSet
			}
			if atomic.CompareAndSwapUint32(p, old, nw) {
				return nil
			}
			continue
		}
		if err := dl.sleep(p, old, -1); err != nil {
			// Leave, unless a Set came in the meantime: then take it.
			for {
				old := atomic.LoadUint32(p)
				nw := old - evWaiter
				took := old&evSet != 0
				if took && auto {
					nw &^= evSet
				}
				if atomic.CompareAndSwapUint32(p, old, nw) {
					if took {
						return nil
					}
					return err
				}
			}
		}
	}
}

// Busy events.
//
// BusyAutoEvent and BusyManualEvent are one 32-bit word, 1 when set, and
// their waiters never sleep in the kernel on it: they poll the word (spin,
// when more than one CPU is usable, see SetSpin), then yield the processor
// to other threads and processes between polls (busyYields times), then
// sleep for short, growing intervals (up to busyMaxSleep), so that an idle
// waiter costs little CPU.
// Set is an atomic store (release), Wait's successful load or CAS an acquire:
// what the setter wrote before Set is visible to the waiter after Wait.

const (
	busyYields   = 100
	busyMaxSleep = 100 * time.Microsecond
)

// BusyAutoEvent is an auto-reset event whose waiters poll instead of
// sleeping in the kernel: the lowest latency, at the price of CPU while
// waiting. The zero value is clear. It is 8 bytes.
type BusyAutoEvent struct {
	state uint32
	_     uint32
}

// BusyManualEvent is a manual-reset event whose waiters poll instead of
// sleeping in the kernel. The zero value is clear. It is 8 bytes.
type BusyManualEvent struct {
	state uint32
	_     uint32
}

// Set sets the event. It never fails and never makes a system call.
func (e *BusyAutoEvent) Set() error { atomic.StoreUint32(&e.state, 1); return nil }

// Reset clears the event.
func (e *BusyAutoEvent) Reset() error { atomic.StoreUint32(&e.state, 0); return nil }

// Wait waits until the event is set, and clears it.
func (e *BusyAutoEvent) Wait() error { return busyWait(&e.state, true, noDeadline()) }

// WaitTimeout waits at most d for the event, and clears it.
func (e *BusyAutoEvent) WaitTimeout(d time.Duration) error {
	return busyWait(&e.state, true, timeoutDeadline(d))
}

// WaitContext waits for the event until ctx is done, and clears it.
func (e *BusyAutoEvent) WaitContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return busyWait(&e.state, true, ctxDeadline(ctx))
}

// IsSet reports whether the event is set.
func (e *BusyAutoEvent) IsSet() bool { return atomic.LoadUint32(&e.state) != 0 }

// Set sets the event. It never fails and never makes a system call.
func (e *BusyManualEvent) Set() error { atomic.StoreUint32(&e.state, 1); return nil }

// Reset clears the event.
func (e *BusyManualEvent) Reset() error { atomic.StoreUint32(&e.state, 0); return nil }

// Wait waits until the event is set.
func (e *BusyManualEvent) Wait() error { return busyWait(&e.state, false, noDeadline()) }

// WaitTimeout waits at most d for the event to be set.
func (e *BusyManualEvent) WaitTimeout(d time.Duration) error {
	return busyWait(&e.state, false, timeoutDeadline(d))
}

// WaitContext waits for the event to be set until ctx is done.
func (e *BusyManualEvent) WaitContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return busyWait(&e.state, false, ctxDeadline(ctx))
}

// IsSet reports whether the event is set.
func (e *BusyManualEvent) IsSet() bool { return atomic.LoadUint32(&e.state) != 0 }

// busyTry polls the word with a plain load (so that pollers share the cache
// line until it changes) and, for an auto event, takes it with a CAS.
func busyTry(p *uint32, auto bool) bool {
	v := atomic.LoadUint32(p)
	if v == 0 {
		return false
	}
	return !auto || atomic.CompareAndSwapUint32(p, v, 0)
}

func busyWait(p *uint32, auto bool, dl deadline) error {
	if busyTry(p, auto) {
		return nil
	}
	// Spin: only worth it when the setter can run at the same time (see
	// spinBudget).
	spins := spinBudget(unsafe.Pointer(p))
	for i := 0; i < spins; i++ {
		spinPause()
		if busyTry(p, auto) {
			spinWon(unsafe.Pointer(p))
			return nil
		}
	}
	spinLost(unsafe.Pointer(p), spins > 0)
	// Yield the CPU (to the setter, if it waits for one: on a single CPU it
	// runs only when we yield), then sleep for growing intervals, checking
	// the deadline.
	sleep := time.Microsecond
	for i := 0; ; i++ {
		if busyTry(p, auto) {
			return nil
		}
		if err := dl.expired(); err != nil {
			return err
		}
		if i < busyYields {
			osYield()
			continue
		}
		time.Sleep(sleep)
		if sleep < busyMaxSleep {
			sleep *= 2
		}
	}
}
