package futex

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The shared (non-private) operations: the kernel keys them on the mapped
// page, not on this process's address space.
const (
	opWait = 0 // FUTEX_WAIT
	opWake = 1 // FUTEX_WAKE
)

// Wait sleeps while *addr == val, for at most timeout (Forever: no limit).
// It returns nil when woken, when *addr != val, or when interrupted by a
// signal, ErrTimeout when the timeout passed, and another error only for a
// bad address. The system call is a blocking one for the Go scheduler, so
// other goroutines keep running.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	var e syscall.Errno
	if timeout >= 0 {
		// The kernel measures a FUTEX_WAIT timeout on CLOCK_MONOTONIC.
		ts := unix.NsecToTimespec(int64(timeout))
		_, _, e = syscall.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	} else {
		_, _, e = syscall.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait, uintptr(val), 0, 0, 0)
	}
	switch e {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	}
	return e
}

// Wake wakes up to n processes or threads sleeping in Wait on addr and
// returns how many it woke.
func Wake(addr *uint32, n int) int {
	r, _, _ := syscall.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake, uintptr(n), 0, 0, 0)
	return int(r)
}
