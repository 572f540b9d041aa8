package futex

import (
	"math"
	"time"

	"github.com/go-shm/shm/internal/cerrno"
)

// The macOS wait/wake layer, as pure functions so that the tests run on
// every system. futex_darwin.go makes the calls.
//
// macOS 14.4 and later export os_sync_wait_on_address and friends from
// libSystem (os/os_sync_wait_on_address.h); older systems have only the
// private __ulock_wait/__ulock_wake (xnu bsd/sys/ulock.h), which the new
// functions are built on. Both key a waiter on the physical page when told
// the word is shared between processes, which is the only way we use them.

// From os/os_sync_wait_on_address.h and os/clock.h.
const (
	osSyncWaitOnAddressShared = 0x00000001 // OS_SYNC_WAIT_ON_ADDRESS_SHARED
	osSyncWakeByAddressShared = 0x00000001 // OS_SYNC_WAKE_BY_ADDRESS_SHARED
	osClockMachAbsoluteTime   = 32         // OS_CLOCK_MACH_ABSOLUTE_TIME
)

// From xnu bsd/sys/ulock.h.
const (
	ulCompareAndWaitShared = 3          // UL_COMPARE_AND_WAIT_SHARED
	ulfWakeAll             = 0x00000100 // ULF_WAKE_ALL
	ulfNoErrno             = 0x01000000 // ULF_NO_ERRNO: return -errno instead of setting errno
)

// Error numbers of the darwin kernel (xnu bsd/sys/errno.h), named here so
// that the classification below can be tested on any system.
const (
	darwinENOENT    = 2
	darwinEINTR     = 4
	darwinENOMEM    = 12
	darwinEFAULT    = 14
	darwinETIMEDOUT = 60
)

// ulockWaitOp and ulockWakeOp are the operation words for __ulock_wait and
// __ulock_wake. A wake of more than one sleeper wakes them all: ulock can
// wake one or all, and waking too many is a spurious wake-up, which every
// caller tolerates.
func ulockWaitOp() uint32 { return ulCompareAndWaitShared | ulfNoErrno }

func ulockWakeOp(n int) uint32 {
	op := uint32(ulCompareAndWaitShared | ulfNoErrno)
	if n > 1 {
		op |= ulfWakeAll
	}
	return op
}

// ulockTimeout converts a timeout (> 0) to __ulock_wait's microseconds, where
// 0 means no limit: a positive timeout below one microsecond becomes 1 µs,
// never 0. A timeout too long for 32 bits (about 71 minutes) is cut to the
// largest value and clamped is true: the caller then reports a timeout from
// the kernel as a spurious wake-up, and its own deadline loop waits again.
func ulockTimeout(d time.Duration) (us uint32, clamped bool) {
	if d <= 0 {
		return 0, false
	}
	// Round up, so that we never wake before the timeout (without adding to
	// d, which may be near the largest Duration).
	q := d / time.Microsecond
	if d%time.Microsecond != 0 {
		q++
	}
	if q > math.MaxUint32 {
		return math.MaxUint32, true
	}
	return uint32(q), false
}

// osSyncTimeout converts a timeout (> 0) to the nanoseconds of
// os_sync_wait_on_address_with_timeout, a relative timeout on
// OS_CLOCK_MACH_ABSOLUTE_TIME; 0 is an error there (EINVAL), so the caller
// never passes a zero timeout.
func osSyncTimeout(d time.Duration) uint64 {
	if d <= 0 {
		return 1
	}
	return uint64(d)
}

// waitResult is what Wait reports after the kernel returned.
type waitResult int

const (
	woken    waitResult = iota // woken, value changed, or spurious: re-check
	timedOut                   // the timeout passed
	failed                     // another error, returned to the caller
)

// classifyDarwinWait interprets the return of __ulock_wait with ULF_NO_ERRNO
// (ret is -errno on failure) or of os_sync_wait_on_address* (ret is -1 and
// errno is set): errno is the error number (ulockErrno, or purego's errno
// result as it comes, upper half and all: only its low 32 bits count, see
// package cerrno), 0 if none. Interruptions, transient faults and low memory
// are spurious wake-ups; a timeout that the caller cut short (clamped) is
// one too. The error number returned with failed is the clean one.
func classifyDarwinWait(ret int32, errno uintptr, clamped bool) (waitResult, uintptr) {
	if ret >= 0 {
		return woken, 0
	}
	errno = uintptr(cerrno.Num(errno))
	switch errno {
	case darwinETIMEDOUT:
		if clamped {
			return woken, 0
		}
		return timedOut, 0
	case darwinEINTR, darwinEFAULT, darwinENOMEM:
		return woken, 0
	}
	return failed, errno
}

// ulockErrno returns the error number in a ULF_NO_ERRNO return value.
func ulockErrno(ret int32) uintptr {
	if ret >= 0 {
		return 0
	}
	return uintptr(-ret)
}

// darwinWoken interprets the return of a wake call (ret is -errno with
// ULF_NO_ERRNO, or -1 with errno set for os_sync_wake_by_address_*; errno as
// for classifyDarwinWait): how many sleepers it reports woken, and whether
// to call again because the call was interrupted. ENOENT means nobody was
// waiting. A successful wake of all does not say how many woke: it reports
// 1, meaning "at least one".
func darwinWoken(ret int32, errno uintptr) (n int, again bool) {
	if ret >= 0 {
		return 1, false
	}
	return 0, cerrno.Num(errno) == darwinEINTR
}
