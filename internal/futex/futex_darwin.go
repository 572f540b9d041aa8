package futex

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// macOS: os_sync_wait_on_address and friends with the shared flags where
// libSystem has them (macOS 14.4 and later), __ulock_wait/__ulock_wake with
// UL_COMPARE_AND_WAIT_SHARED before that (see ulock_args.go). Both are
// reached through purego: its calls go through the runtime's cgo call path,
// so a sleeping thread is a blocking system call to the Go scheduler.

// libSystem is where every libc function lives on macOS; it is always
// loaded in a Go program there, so opening it only finds it.
const libSystem = "/usr/lib/libSystem.B.dylib"

var fns struct {
	once sync.Once

	// os_sync_* (macOS 14.4+), all zero when missing
	wait, waitTimeout, wakeAny, wakeAll uintptr
	// __ulock_* (macOS 10.12+)
	ulockWait, ulockWake uintptr
}

func load() {
	fns.once.Do(func() {
		h, err := purego.Dlopen(libSystem, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			return
		}
		sym := func(name string) uintptr {
			p, err := purego.Dlsym(h, name)
			if err != nil {
				return 0
			}
			return p
		}
		wait, waitTimeout := sym("os_sync_wait_on_address"), sym("os_sync_wait_on_address_with_timeout")
		wakeAny, wakeAll := sym("os_sync_wake_by_address_any"), sym("os_sync_wake_by_address_all")
		if wait != 0 && waitTimeout != 0 && wakeAny != 0 && wakeAll != 0 {
			fns.wait, fns.waitTimeout, fns.wakeAny, fns.wakeAll = wait, waitTimeout, wakeAny, wakeAll
		}
		fns.ulockWait, fns.ulockWake = sym("__ulock_wait"), sym("__ulock_wake")
	})
}

// Wait sleeps while *addr == val, for at most timeout (Forever, or any
// negative timeout: no limit). It returns nil when woken, when *addr != val,
// or when interrupted, ErrTimeout when the timeout passed, and another error
// only when the system refuses the call. The call is a blocking one for the
// Go scheduler, so other goroutines keep running.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	if timeout == 0 {
		// Neither interface takes a zero timeout (os_sync: EINVAL; ulock:
		// 0 means no limit): answer without sleeping.
		if atomic.LoadUint32(addr) != val {
			return nil
		}
		return ErrTimeout
	}
	load()
	var (
		res   waitResult
		errno uintptr
	)
	switch {
	case fns.waitTimeout != 0 && timeout > 0:
		r, _, e := purego.SyscallN(fns.waitTimeout, uintptr(unsafe.Pointer(addr)), uintptr(val), 4,
			osSyncWaitOnAddressShared, osClockMachAbsoluteTime, uintptr(osSyncTimeout(timeout)))
		res, errno = classifyDarwinWait(int32(r), e, false)
	case fns.wait != 0:
		r, _, e := purego.SyscallN(fns.wait, uintptr(unsafe.Pointer(addr)), uintptr(val), 4, osSyncWaitOnAddressShared)
		res, errno = classifyDarwinWait(int32(r), e, false)
	case fns.ulockWait != 0:
		us, clamped := ulockTimeout(timeout)
		r, _, _ := purego.SyscallN(fns.ulockWait, uintptr(ulockWaitOp()), uintptr(unsafe.Pointer(addr)), uintptr(val), uintptr(us))
		res, errno = classifyDarwinWait(int32(r), ulockErrno(int32(r)), clamped)
	default:
		return pollWait(addr, val, timeout)
	}
	switch res {
	case woken:
		return nil
	case timedOut:
		return ErrTimeout
	}
	return syscall.Errno(errno)
}

// Wake wakes up to n processes or threads sleeping in Wait on addr. macOS
// wakes one or all, and does not count: Wake returns 1 when it woke someone
// (for n > 1: at least one), 0 when nobody was waiting.
func Wake(addr *uint32, n int) int {
	if n <= 0 {
		return 0
	}
	load()
	for {
		var (
			r int32
			e uintptr
		)
		switch {
		case fns.wakeAny != 0:
			fn := fns.wakeAny
			if n > 1 {
				fn = fns.wakeAll
			}
			r1, _, e1 := purego.SyscallN(fn, uintptr(unsafe.Pointer(addr)), 4, osSyncWakeByAddressShared)
			r, e = int32(r1), e1
		case fns.ulockWake != 0:
			r1, _, _ := purego.SyscallN(fns.ulockWake, uintptr(ulockWakeOp(n)), uintptr(unsafe.Pointer(addr)), 0)
			r, e = int32(r1), ulockErrno(int32(r1))
		default:
			return 0 // pollWait sleepers look for themselves
		}
		woke, again := darwinWoken(r, e)
		if !again {
			return woke
		}
	}
}

// pollWait is the last resort when libSystem offers neither interface
// (never seen on a supported macOS): sleep briefly and report a spurious
// wake-up, which every caller tolerates.
func pollWait(addr *uint32, val uint32, timeout time.Duration) error {
	d := 50 * time.Microsecond
	if timeout >= 0 && timeout < d {
		time.Sleep(timeout)
		if atomic.LoadUint32(addr) != val {
			return nil
		}
		return ErrTimeout
	}
	time.Sleep(d)
	return nil
}
