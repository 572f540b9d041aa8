package futex

import (
	"math"
	"time"
)

// The FreeBSD wait/wake layer, as pure functions so that the tests run on
// every system. futex_freebsd.go makes the calls:
//
//	_umtx_op(addr, UMTX_OP_WAIT_UINT, val, (void *)sizeof(struct _umtx_time), &ut)
//	_umtx_op(addr, UMTX_OP_WAKE, n, NULL, NULL)
//
// The non-_PRIVATE operations key a sleeper on the VM object and offset
// when the page is shared (AUTO_SHARE in sys/kern/kern_umtx.c), so
// processes that map the same segment meet on the same word.
//
// A timeout is passed as a struct _umtx_time, whose size goes in uaddr1 (a
// size of at most sizeof(struct timespec) would make the kernel read a bare
// timespec on CLOCK_REALTIME instead). With _flags 0 the timeout is relative;
// _clockid CLOCK_MONOTONIC keeps it from moving with the wall clock.

// From sys/sys/umtx.h, sys/sys/_umtx.h and sys/sys/_clock_id.h.
const (
	umtxOpWake     = 3  // UMTX_OP_WAKE
	umtxOpWaitUint = 11 // UMTX_OP_WAIT_UINT (compares a u_int, not a long)
	clockMonotonic = 4  // CLOCK_MONOTONIC
)

// Error numbers of the FreeBSD kernel (sys/sys/errno.h).
const (
	freebsdEINTR     = 4
	freebsdETIMEDOUT = 60
)

// umtxMaxTimeout bounds the timeout handed to the kernel, so that tv_sec
// fits every port's time_t and the kernel's own arithmetic (it adds the
// timeout to the current time) cannot overflow. Longer waits are cut to
// this, and a timeout from the kernel is then a spurious wake-up.
const umtxMaxTimeout = time.Duration(math.MaxInt32) * time.Second / 4

// umtxTimeout returns the relative timeout, in nanoseconds, to put in
// _umtx_time for a timeout d >= 0, and whether it was cut short.
func umtxTimeout(d time.Duration) (ns int64, clamped bool) {
	if d < 0 {
		d = 0
	}
	if d > umtxMaxTimeout {
		return int64(umtxMaxTimeout), true
	}
	return int64(d), false
}

// umtxWakeCount is the val argument of UMTX_OP_WAKE: the number of sleepers
// to wake, which the kernel reads as an int (All, MaxInt32, wakes all).
func umtxWakeCount(n int) uintptr {
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return uintptr(n)
}

// classifyUmtxWait interprets the errno of UMTX_OP_WAIT_UINT. The kernel
// returns 0 when woken and when the word no longer held val, EINTR when a
// signal interrupted the sleep (it turns ERRESTART into EINTR), and
// ETIMEDOUT when the timeout passed.
func classifyUmtxWait(errno uintptr, clamped bool) waitResult {
	switch errno {
	case 0, freebsdEINTR:
		return woken
	case freebsdETIMEDOUT:
		if clamped {
			return woken
		}
		return timedOut
	}
	return failed
}
