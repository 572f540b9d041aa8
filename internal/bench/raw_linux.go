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
