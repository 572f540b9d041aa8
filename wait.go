package shm

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-shm/shm/internal/futex"
)

// Waiting.
//
// Every blocking call of a lock or event ends in one of three forms:
// no limit (Lock, Wait), a timeout (LockTimeout, WaitTimeout: a deadline on
// the monotonic clock, taken once at the call), or a context (LockContext,
// WaitContext: its deadline if it has one, and its cancellation). A waiter
// sleeps in the kernel on a 32-bit word (internal/futex) for at most the
// time left, so a spurious wake-up, a signal or a wake meant for another
// waiter never restarts the full timeout: the time left is recomputed from
// the deadline before every sleep.
//
// A cancellable context arms context.AfterFunc to wake the word's sleepers
// when it is cancelled, so cancellation is seen at once. A cancellation that
// lands between the waiter's last check and its sleep cannot be seen by the
// kernel (the word did not change), so such waiters also sleep in slices of
// at most ctxSlice.

const (
	// ctxSlice bounds one sleep of a waiter whose context can be cancelled.
	ctxSlice = 20 * time.Millisecond
	// livenessSlice bounds one sleep of a lock waiter, after which it checks
	// whether the lock's owner is still alive.
	livenessSlice = 20 * time.Millisecond
)

// deadline is when a wait gives up; the zero value waits forever.
type deadline struct {
	ctx context.Context // nil: no context
	at  time.Time       // zero: no deadline
}

func noDeadline() deadline { return deadline{} }

func timeoutDeadline(d time.Duration) deadline {
	if d < 0 {
		d = 0
	}
	return deadline{at: time.Now().Add(d)}
}

func ctxDeadline(ctx context.Context) deadline {
	dl := deadline{}
	if ctx.Done() != nil {
		dl.ctx = ctx
	}
	if t, ok := ctx.Deadline(); ok {
		dl.at = t
	}
	return dl
}

// expired returns the error that ends the wait, or nil if time remains.
func (d *deadline) expired() error {
	if d.ctx != nil {
		if err := d.ctx.Err(); err != nil {
			return err
		}
	}
	if !d.at.IsZero() && !time.Now().Before(d.at) {
		if d.ctx != nil {
			// The context's own deadline: report it the context's way.
			return context.DeadlineExceeded
		}
		return ErrTimeout
	}
	return nil
}

// sleep blocks on addr while it holds val, for at most the time left and at
// most slice (slice < 0: no bound). It returns nil when woken or when the
// slice ended, and the error that ends the wait once the deadline passed or
// the context was cancelled.
func (d *deadline) sleep(addr *uint32, val uint32, slice time.Duration) error {
	if err := d.expired(); err != nil {
		return err
	}
	t := slice
	if d.ctx != nil && (t < 0 || t > ctxSlice) {
		t = ctxSlice
	}
	if !d.at.IsZero() {
		left := time.Until(d.at)
		if t < 0 || left < t {
			t = left
		}
	}
	if t < 0 {
		t = futex.Forever
	}
	futex.Wait(addr, val, t)
	return d.expired()
}

// watch arranges for a cancellation of the deadline's context to wake the
// sleepers on addr. The returned function stops it; it must be called when
// the wait ends.
func (d *deadline) watch(addr *uint32) (stop func() bool) {
	if d.ctx == nil {
		return nop
	}
	return context.AfterFunc(d.ctx, func() { futex.Wake(addr, futex.All) })
}

func nop() bool { return false }

// Spinning.
//
// A waiter that expects the word to change very soon (another process is
// about to unlock or set it) spins briefly before it sleeps, because a
// kernel sleep and wake-up costs microseconds. Spinning only helps when the
// other process runs on another CPU at the same time: on a single CPU a
// spinner only delays the process it waits for. So spinning is on only when
// this process may use more than one CPU, and it is bounded.

// spinLimit is how many times a waiter polls its word before it sleeps. It is
// set from the CPUs available to the process and can be changed with
// SetSpin.
var spinLimit atomic.Int32

func init() {
	spinLimit.Store(defaultSpin())
}

func defaultSpin() int32 {
	if runtime.NumCPU() > 1 && runtime.GOMAXPROCS(0) > 1 {
		return 4000
	}
	return 0
}

// SetSpin sets how many times a waiter re-checks a word before it goes to
// sleep in the kernel (or, for busy events, before it starts yielding the
// CPU), and returns the previous value. 0 turns spinning off; a negative
// value restores the default, which is 0 when the process may use only one
// CPU. It affects the whole process.
func SetSpin(n int) int {
	var v int32
	switch {
	case n < 0:
		v = defaultSpin()
	case n > 1<<30:
		v = 1 << 30
	default:
		v = int32(n)
	}
	return int(spinLimit.Swap(v))
}

// spinPause burns a little time between two polls of a word without
// touching shared memory.
//
//go:noinline
func spinPause() {
	for i := 0; i < 10; i++ {
	}
}
