package futex

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FreeBSD: _umtx_op(2) with the shared UMTX_OP_WAIT_UINT and UMTX_OP_WAKE
// (see umtx_args.go for the argument encoding and where it comes from).

// umtxTime is struct _umtx_time: a timespec, then _flags and _clockid.
// unix.Timespec has each port's layout, so this is right on all of them.
type umtxTime struct {
	timeout unix.Timespec
	flags   uint32
	clockid uint32
}

// Wait sleeps while *addr == val, for at most timeout (Forever, or any
// negative timeout: no limit). It returns nil when woken, when *addr != val,
// or when interrupted by a signal, ErrTimeout when the timeout passed, and
// another error only for a bad address. The system call is a blocking one
// for the Go scheduler, so other goroutines keep running.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	var e syscall.Errno
	clamped := false
	if timeout >= 0 {
		var ns int64
		ns, clamped = umtxTimeout(timeout)
		ut := umtxTime{timeout: unix.NsecToTimespec(ns), clockid: clockMonotonic}
		_, _, e = syscall.Syscall6(unix.SYS__UMTX_OP, uintptr(unsafe.Pointer(addr)), umtxOpWaitUint, uintptr(val), unsafe.Sizeof(ut), uintptr(unsafe.Pointer(&ut)), 0)
	} else {
		_, _, e = syscall.Syscall6(unix.SYS__UMTX_OP, uintptr(unsafe.Pointer(addr)), umtxOpWaitUint, uintptr(val), 0, 0, 0)
	}
	switch classifyUmtxWait(uintptr(e), clamped) {
	case woken:
		return nil
	case timedOut:
		return ErrTimeout
	}
	return e
}

// Wake wakes up to n processes or threads sleeping in Wait on addr. FreeBSD
// does not say how many it woke: Wake returns 0.
func Wake(addr *uint32, n int) int {
	if n <= 0 {
		return 0
	}
	syscall.Syscall6(unix.SYS__UMTX_OP, uintptr(unsafe.Pointer(addr)), umtxOpWake, umtxWakeCount(n), 0, 0, 0)
	return 0
}
