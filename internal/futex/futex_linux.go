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

// FUTEX_WAIT_BITSET and FUTEX_WAKE_BITSET (shared, as above).
const (
	opWaitBitset = 9
	opWakeBitset = 10
)

// Selective is whether WakeBits wakes only the sleepers whose bits meet
// its own (Linux: FUTEX_WAKE_BITSET).
const Selective = true

// WaitBits is Wait for a sleeper that WakeBits wakes only when their bits
// meet (bits must not be 0). Wake, and a WakeBits with every bit, wake it
// as any other sleeper.
func WaitBits(addr *uint32, val uint32, timeout time.Duration, bits uint32) error {
	var e syscall.Errno
	if timeout >= 0 {
		// FUTEX_WAIT_BITSET takes a deadline on CLOCK_MONOTONIC.
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
			return err
		}
		ts := unix.NsecToTimespec(now.Nano() + int64(timeout))
		_, _, e = syscall.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWaitBitset, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, uintptr(bits))
	} else {
		_, _, e = syscall.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWaitBitset, uintptr(val), 0, 0, uintptr(bits))
	}
	switch e {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	}
	return e
}

// WakeBits wakes up to n sleepers on addr whose bits meet bits (every
// sleeper of Wait has every bit) and returns how many it woke.
func WakeBits(addr *uint32, n int, bits uint32) int {
	r, _, _ := syscall.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWakeBitset, uintptr(n), 0, 0, uintptr(bits))
	return int(r)
}
