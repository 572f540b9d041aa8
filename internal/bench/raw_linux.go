package bench

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw baselines, written directly against the system calls.

// futex(2) operations, shared between processes (no FUTEX_PRIVATE_FLAG).
const (
	futexWaitOp = 0
	futexWakeOp = 1
)

// rawSend publishes i on w and wakes its sleeper; rawRecv sleeps until w
// holds i: a futex ping-pong where neither side spins.
func rawSend(w *uint32, i uint32) {
	atomic.StoreUint32(w, i)
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakeOp, 1, 0, 0, 0)
}

func rawRecv(w *uint32, i uint32) {
	for {
		v := atomic.LoadUint32(w)
		if v == i {
			return
		}
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitOp, uintptr(v), 0, 0, 0)
	}
}

// rawLock and rawUnlock are the classic futex mutex ("Futexes Are
// Tricky", mutex 2): 0 free, 1 held, 2 held and a process may sleep.
// Lock: a CAS from 0 to 1; else swap in 2 and sleep while the word is 2,
// until a swap finds it free. Unlock: subtract one; if that leaves 1 (it
// was 2), store 0 and wake one sleeper. No spinning, no owner, no timeout:
// the baseline a contended Mutex is measured against.
func rawLock(w *uint32) {
	if atomic.CompareAndSwapUint32(w, 0, 1) {
		return
	}
	for atomic.SwapUint32(w, 2) != 0 {
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitOp, 2, 0, 0, 0)
	}
}

func rawUnlock(w *uint32) {
	if atomic.AddUint32(w, ^uint32(0)) != 0 {
		atomic.StoreUint32(w, 0)
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakeOp, 1, 0, 0, 0)
	}
}

// efdWrite adds 1 to the blocking eventfd fd; efdRead reads it (blocking
// until it is nonzero): the raw eventfd baseline, one system call a side.
func efdWrite(fd int) { efdCall(fd, unix.SYS_WRITE, 1) }
func efdRead(fd int)  { efdCall(fd, unix.SYS_READ, 0) }

// efdCall makes the 8-byte read or write (trap) of v on fd, again after a
// signal.
func efdCall(fd int, trap uintptr, v uint64) {
	for {
		_, _, e := unix.Syscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&v)), 8)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			panic(fmt.Sprintf("bench: eventfd: %v", e))
		}
		return
	}
}

// spinRecv polls w until it holds i. The raw spin ping-pong bounces one
// word between the processes (the sender stores odd numbers, the answer
// even ones): one cache line, the fastest exchange there is. A short pause
// between polls keeps the poller from hammering the line the other side is
// about to write.
func spinRecv(w *uint32, i uint32) {
	for atomic.LoadUint32(w) != i {
		pause()
	}
}

//go:noinline
func pause() {
	for i := 0; i < 10; i++ {
	}
}

// oneByte writes or reads one byte on fd, the pipe and socket round trips'
// message.
func oneByte(fd int, write bool) {
	var b [1]byte
	for {
		var n int
		var err error
		if write {
			n, err = unix.Write(fd, b[:])
		} else {
			n, err = unix.Read(fd, b[:])
		}
		if err == unix.EINTR {
			continue
		}
		if n != 1 {
			panic(fmt.Sprintf("bench: pipe/socket round trip: n=%d err=%v", n, err))
		}
		return
	}
}
