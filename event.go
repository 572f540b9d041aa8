package shm

import (
	"context"
	"runtime/debug"
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
// AutoEvent is one 32-bit word:
//
//	bit 0       set
//	bits 1..31  how many waiters are registered (may be asleep)
//
// Set: CAS the set bit on; if the waiter count was nonzero, wake one
// waiter. With no waiter registered, Set is one CAS and no system call.
// Wait: the event is consumed by a CAS that clears the set bit. A waiter
// that finds it clear spins briefly (see SetSpin), then registers (count+1)
// and sleeps on the word while it holds the value it saw; a Set changes the
// set bit, so a Set between the waiter's check and its sleep makes the sleep
// return at once, and a Set after it wakes it. A woken waiter competes with
// every other waiter to clear the bit: exactly one wins per Set, the others
// sleep again. A waiter leaves by a CAS that removes it from the count (and
// clears the bit in the same CAS when it takes the event); a waiter whose
// deadline or context ended takes a Set it finds on its way out rather than
// leave it, so the one wake-up a Set makes is never lost with a waiter that
// gives up. A Reset before any waiter took the event cancels the Set.
//
// ManualEvent is two 32-bit words:
//
//	state    bit 0: set; bits 1..31: generation, advanced by every Set
//	waiters  how many waiters are registered (may be asleep)
//
// Set: CAS state from (g, clear) to (g+1, set), then, if waiters is
// nonzero, wake every sleeper on state. Wait: a waiter notes state (g,
// clear) when it starts, registers, re-reads state and sleeps while it
// still equals (g, clear); any other value means a Set happened since the
// waiter started (set now, or set and reset again), and the waiter returns.
// So a Set releases every waiter that was waiting when it happened, even if
// a Reset follows at once. The waiter's increment of waiters and its reload
// of state, against the setter's CAS of state and its load of waiters, are
// the store-load pattern of Dekker's algorithm (sequentially consistent
// atomics): either the waiter sees the new generation or the setter sees
// the waiter and wakes it.
//
// Waiters sleep at most eventSlice at a time and look at the word again, so
// that a process that died in the middle of a Set (after the CAS, before
// the wake), or one woken by a Set that died before taking the event,
// delays the others by at most a slice; a Set that finds the event already
// set and waiters registered wakes them again, for the same reason.
//
// Invariants: a count is the number of waiters between registration and
// leaving (a dead waiter leaves it too high, which only costs a needless
// wake system call); the set bit changes only by Set, Reset, or an auto
// waiter taking the event; a manual event's generation only grows.

const (
	evSet    = 1
	evWaiter = 2
	evGen    = 2 // one generation of a manual event

	// eventSlice bounds one sleep of an event waiter. A process that dies
	// in the middle of a Set (after changing the word, before waking
	// anyone), or after being woken and before taking an auto event,
	// leaves the event set and its waiters asleep: they find it within a
	// slice. It costs an idle waiter a wake-up ten times a second.
	eventSlice = 100 * time.Millisecond
)

// AutoEvent is an auto-reset event for processes sharing memory: one Set
// releases exactly one Wait. Its waiters sleep in the kernel. The zero value
// is a clear event. It is 8 bytes; place it at an 8-byte-aligned offset.
// Like every primitive it needs write access to its memory (waiters
// register in it).
type AutoEvent struct {
	_     noCopy
	state uint32
	_     uint32
}

// ManualEvent is a manual-reset event for processes sharing memory: once
// Set, every Wait returns until Reset. A Set releases every waiter that was
// waiting when it happened, even if a Reset follows at once. Its waiters
// sleep in the kernel. The zero value is a clear event. It is 8 bytes;
// place it at an 8-byte-aligned offset. Like every primitive it needs write
// access to its memory.
type ManualEvent struct {
	_       noCopy
	state   uint32
	waiters uint32
}

// Set sets the event, waking one waiter. It never fails.
func (e *AutoEvent) Set() error {
	p := &e.state
	// The common case first, without a load: one cache-line transfer, not
	// two, when the line is in a waiter's cache.
	if atomic.CompareAndSwapUint32(p, 0, evSet) {
		return nil
	}
	for {
		old := atomic.LoadUint32(p)
		if old&evSet != 0 {
			if old >= evWaiter {
				// Set, with waiters: the waiter an earlier Set woke may have
				// died before taking it. Wake one (more) to make sure.
				futex.Wake(p, 1)
			}
			return nil
		}
		if atomic.CompareAndSwapUint32(p, old, old|evSet) {
			if old >= evWaiter {
				futex.Wake(p, 1)
			}
			return nil
		}
	}
}

// Reset clears the event, cancelling a Set no waiter has taken yet. It
// never fails.
func (e *AutoEvent) Reset() error {
	resetEvent(&e.state)
	return nil
}

// Wait waits until the event is set, and clears it.
func (e *AutoEvent) Wait() error {
	if tryTake(&e.state) {
		return nil
	}
	return waitAuto(&e.state, noDeadline())
}

// WaitTimeout waits at most d for the event, and clears it. It returns
// ErrTimeout if d passed.
func (e *AutoEvent) WaitTimeout(d time.Duration) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if tryTake(&e.state) {
		return nil
	}
	return waitAuto(&e.state, timeoutDeadline(d))
}

// WaitContext waits for the event until ctx is done, and clears it. It
// returns ctx.Err() if ctx ended first.
func (e *AutoEvent) WaitContext(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if tryTake(&e.state) {
		return nil
	}
	return waitAuto(&e.state, ctxDeadline(ctx))
}

// IsSet reports whether the event is set, without waiting or clearing it.
func (e *AutoEvent) IsSet() bool { return atomic.LoadUint32(&e.state)&evSet != 0 }

// Set sets the event, waking every waiter. It never fails.
func (e *ManualEvent) Set() error {
	for {
		old := atomic.LoadUint32(&e.state)
		if old&evSet != 0 {
			if atomic.LoadUint32(&e.waiters) != 0 {
				// Set, with waiters: an earlier setter may have died before
				// it woke them.
				futex.Wake(&e.state, futex.All)
			}
			return nil
		}
		if atomic.CompareAndSwapUint32(&e.state, old, (old+evGen)|evSet) {
			break
		}
	}
	if atomic.LoadUint32(&e.waiters) != 0 {
		futex.Wake(&e.state, futex.All)
	}
	return nil
}

// Reset clears the event. Processes that were waiting when it was last set
// are released all the same. It never fails.
func (e *ManualEvent) Reset() error {
	resetEvent(&e.state)
	return nil
}

// Wait waits until the event is set.
func (e *ManualEvent) Wait() error {
	if atomic.LoadUint32(&e.state)&evSet != 0 {
		return nil
	}
	return e.wait(noDeadline())
}

// WaitTimeout waits at most d for the event to be set. It returns ErrTimeout
// if d passed.
func (e *ManualEvent) WaitTimeout(d time.Duration) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if atomic.LoadUint32(&e.state)&evSet != 0 {
		return nil
	}
	return e.wait(timeoutDeadline(d))
}

// WaitContext waits for the event to be set until ctx is done. It returns
// ctx.Err() if ctx ended first.
func (e *ManualEvent) WaitContext(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if atomic.LoadUint32(&e.state)&evSet != 0 {
		return nil
	}
	return e.wait(ctxDeadline(ctx))
}

// IsSet reports whether the event is set.
func (e *ManualEvent) IsSet() bool { return atomic.LoadUint32(&e.state)&evSet != 0 }

func (e *ManualEvent) wait(dl deadline) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	p := &e.state
	g := atomic.LoadUint32(p) // any other value means a Set since we started
	if g&evSet != 0 {
		return nil
	}
	spins := spinBudget(unsafe.Pointer(p))
	for i := 0; i < spins; i++ {
		if pollWord(p, i) != g {
			spinWon(unsafe.Pointer(p))
			return nil
		}
		if dl.spinDone(i) {
			break
		}
		spinPause()
	}
	spinLost(unsafe.Pointer(p), spins > 0)
	w := dl.watch(p)
	defer w.stop()
	atomic.AddUint32(&e.waiters, 1)
	defer atomic.AddUint32(&e.waiters, ^uint32(0))
	for atomic.LoadUint32(p) == g {
		if err := dl.sleep(p, g, eventSlice); err != nil {
			if atomic.LoadUint32(p) != g {
				return nil
			}
			return err
		}
	}
	return nil
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

func waitAuto(p *uint32, dl deadline) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	spins := spinBudget(unsafe.Pointer(p))
	for i := 0; i < spins; i++ {
		// A CAS first (see pollWord): it takes a set event with no other
		// waiter registered in one access, the line arriving exclusive.
		if i < ownPolls && atomic.CompareAndSwapUint32(p, evSet, 0) ||
			atomic.LoadUint32(p)&evSet != 0 && tryTake(p) {
			spinWon(unsafe.Pointer(p))
			return nil
		}
		if dl.spinDone(i) {
			break
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
			if atomic.CompareAndSwapUint32(p, old, (old-evWaiter)&^evSet) {
				return nil
			}
			continue
		}
		if err := dl.sleep(p, old, eventSlice); err != nil {
			// Leave, unless a Set came in the meantime: then take it (its
			// wake-up may have been ours alone).
			for {
				old := atomic.LoadUint32(p)
				nw := old - evWaiter
				took := old&evSet != 0
				if took {
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
// BusyAutoEvent and BusyManualEvent are one 32-bit word, and their waiters
// never sleep in the kernel on it: they poll the word (spin, when more than
// one CPU is usable, see SetSpin), then yield the processor to other
// threads and processes between polls (busyYields times, and for at least
// busyYieldTime), then sleep for short, growing intervals (up to
// busyMaxSleep), so that an idle waiter costs little CPU.
//
// BusyAutoEvent's word is 1 when set, 0 when clear: Set is an atomic store
// (release), Wait takes the event with a CAS from 1 to 0 (acquire).
// BusyManualEvent's word is like ManualEvent's state: bit 0 set, bits 1..31
// a generation that every Set advances, so that a waiter that notes the word
// when it starts returns once the word changed, even if a Reset followed
// the Set before the waiter looked again. What the setter wrote before Set
// is visible to the waiter after Wait.

const (
	busyYields    = 100
	busyYieldTime = time.Millisecond
	busyMaxSleep  = 100 * time.Microsecond
)

// BusyAutoEvent is an auto-reset event whose waiters poll instead of
// sleeping in the kernel: the lowest latency, at the price of CPU while
// waiting. The zero value is clear. It is 8 bytes.
type BusyAutoEvent struct {
	_     noCopy
	state uint32
	_     uint32
}

// BusyManualEvent is a manual-reset event whose waiters poll instead of
// sleeping in the kernel. A Set releases every waiter that was waiting when
// it happened, even if a Reset follows at once. The zero value is clear. It
// is 8 bytes.
type BusyManualEvent struct {
	_     noCopy
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
func (e *BusyAutoEvent) WaitTimeout(d time.Duration) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return busyWait(&e.state, true, timeoutDeadline(d))
}

// WaitContext waits for the event until ctx is done, and clears it.
func (e *BusyAutoEvent) WaitContext(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return busyWait(&e.state, true, ctxDeadline(ctx))
}

// IsSet reports whether the event is set.
func (e *BusyAutoEvent) IsSet() bool { return atomic.LoadUint32(&e.state) != 0 }

// Set sets the event. It never fails and never makes a system call.
func (e *BusyManualEvent) Set() error {
	for {
		old := atomic.LoadUint32(&e.state)
		if old&evSet != 0 || atomic.CompareAndSwapUint32(&e.state, old, (old+evGen)|evSet) {
			return nil
		}
	}
}

// Reset clears the event.
func (e *BusyManualEvent) Reset() error { resetEvent(&e.state); return nil }

// Wait waits until the event is set.
func (e *BusyManualEvent) Wait() error { return busyWait(&e.state, false, noDeadline()) }

// WaitTimeout waits at most d for the event to be set.
func (e *BusyManualEvent) WaitTimeout(d time.Duration) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return busyWait(&e.state, false, timeoutDeadline(d))
}

// WaitContext waits for the event to be set until ctx is done.
func (e *BusyManualEvent) WaitContext(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return busyWait(&e.state, false, ctxDeadline(ctx))
}

// IsSet reports whether the event is set.
func (e *BusyManualEvent) IsSet() bool { return atomic.LoadUint32(&e.state)&evSet != 0 }

// ownPolls is how many polls of a spin read the word for ownership.
const ownPolls = 64

// pollWord reads the word *p for the i-th poll of a spin. The first
// ownPolls polls read it with an atomic add of 0, which brings the cache
// line exclusive, as a write would: the waiter's next step after the word
// changes is a write to it (a CAS that takes an auto-reset event, the
// Reset of a manual one in a ping-pong), which then costs no second
// transfer of the line. A plain load brings it shared, and the write then
// waits for the other CPU to give it up: about 40 ns more per round trip
// between two CPUs of this project's machine (a BusyAutoEvent round trip
// 1.24-1.29x the raw spin's with loads, 1.00-1.14x with a CAS, in three
// runs of each). Later polls are plain loads, so that waiters that wait
// long, or many waiters, share the line instead of passing it around.
func pollWord(p *uint32, i int) uint32 {
	if i < ownPolls {
		return atomic.AddUint32(p, 0)
	}
	return atomic.LoadUint32(p)
}

// busyTry is the i-th poll of a busy wait (i >= ownPolls after the spin).
// An auto event is taken with a CAS: in the first ownPolls polls a CAS from
// 1 to 0 straight away (see pollWord), later after a plain load, so that
// pollers share the cache line until it changes. A manual event is there
// once the word differs from g, its value when the wait started (with the
// set bit clear).
func busyTry(p *uint32, auto bool, g uint32, i int) bool {
	if !auto {
		return pollWord(p, i) != g
	}
	if i < ownPolls {
		return atomic.CompareAndSwapUint32(p, 1, 0)
	}
	v := atomic.LoadUint32(p)
	return v != 0 && atomic.CompareAndSwapUint32(p, v, 0)
}

func busyWait(p *uint32, auto bool, dl deadline) error {
	g := atomic.LoadUint32(p)
	if !auto && g&evSet != 0 || busyTry(p, auto, g, ownPolls) {
		return nil
	}
	return busyWaitSlow(p, auto, g, dl)
}

func busyWaitSlow(p *uint32, auto bool, g uint32, dl deadline) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	// Spin: only worth it when the setter can run at the same time. The
	// whole budget, every time (see fullSpin).
	spins := fullSpin()
	for i := 0; i < spins && !dl.spinDone(i); i++ {
		spinPause()
		if busyTry(p, auto, g, i) {
			return nil
		}
	}
	spinLost(unsafe.Pointer(p), false)
	// Yield the CPU (to the setter, if it waits for one: on a single CPU it
	// runs only when we yield) for busyYieldTime, then sleep for growing
	// intervals, checking the deadline. (A sleep is much longer than asked
	// on some machines: time.Sleep(time.Microsecond) took 285 µs on a
	// virtual machine, so sleeping early stalled a busy waiter whose setter
	// was descheduled for a moment.)
	sleep := time.Microsecond
	var yieldEnd time.Time
	for i := 0; ; i++ {
		if busyTry(p, auto, g, ownPolls) {
			return nil
		}
		if err := dl.expired(); err != nil {
			if busyTry(p, auto, g, ownPolls) {
				return nil
			}
			return err
		}
		if i < busyYields {
			osYield()
			continue
		}
		if i == busyYields {
			yieldEnd = time.Now().Add(busyYieldTime)
		}
		if !yieldEnd.IsZero() {
			if i&15 != 0 || time.Now().Before(yieldEnd) {
				osYield()
				continue
			}
			yieldEnd = time.Time{} // the clock is read every 16 yields
		}
		time.Sleep(sleep)
		if sleep < busyMaxSleep {
			sleep *= 2
		}
	}
}

// noCopy makes go vet's copylocks check report a copy of the type that
// holds it: a primitive copied out of shared memory is a private copy, and
// no other process sees what is done to it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
