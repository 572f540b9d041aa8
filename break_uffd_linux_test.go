//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A pauser stops the threads of this process that touch chosen pages of a
// shared mapping, in the middle of a library call, by way of userfaultfd in
// minor-fault mode: a page whose page-table entry was dropped
// (MADV_DONTNEED; the data stays in the page cache) faults on the next
// access, and the faulting thread sleeps in the kernel until the handler
// lets it go. This is what reclaim, NUMA balancing or a preemption can do
// to any instruction; here it happens exactly where the test wants it.
type pauser struct {
	fd     int
	f      *os.File
	base   uintptr // first registered page
	size   uintptr
	faults chan uintptr // page address of each fault, as it happens
}

const (
	uffdAPI                = 0xAA
	uffdFeatureMinorShmem  = 1 << 10
	uffdioAPI              = 0xC018AA3F
	uffdioRegister         = 0xC020AA00
	uffdioContinue         = 0xC020AA07
	uffdRegisterModeMinor  = 1 << 2
	uffdEventPagefault     = 0x12
	uffdPagefaultFlagMinor = 1 << 2
)

type uffdioAPIArg struct{ api, features, ioctls uint64 }
type uffdioRange struct{ start, len uint64 }
type uffdioRegisterArg struct {
	rng          uffdioRange
	mode, ioctls uint64
}
type uffdioContinueArg struct {
	rng    uffdioRange
	mode   uint64
	mapped int64
}

// newPauser registers the pages [base, base+size) of a shared mapping of a
// /dev/shm file for minor faults. Every fault is reported on faults and
// waits for resume.
func newPauser(base, size uintptr) (*pauser, error) {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return nil, fmt.Errorf("userfaultfd: %w", e)
	}
	p := &pauser{fd: int(fd), base: base, size: size, faults: make(chan uintptr, 16)}
	api := uffdioAPIArg{api: uffdAPI, features: uffdFeatureMinorShmem}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); e != 0 {
		unix.Close(int(fd))
		return nil, fmt.Errorf("UFFDIO_API (minor faults on shmem): %w", e)
	}
	reg := uffdioRegisterArg{rng: uffdioRange{uint64(base), uint64(size)}, mode: uffdRegisterModeMinor}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioRegister, uintptr(unsafe.Pointer(&reg))); e != 0 {
		unix.Close(int(fd))
		return nil, fmt.Errorf("UFFDIO_REGISTER: %w", e)
	}
	p.f = os.NewFile(fd, "userfaultfd")
	go p.read()
	return p, nil
}

func (p *pauser) read() {
	var msg [32]byte
	for {
		n, err := p.f.Read(msg[:])
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			close(p.faults)
			return
		}
		if n != 32 || msg[0] != uffdEventPagefault {
			continue
		}
		addr := *(*uint64)(unsafe.Pointer(&msg[16]))
		p.faults <- uintptr(addr) &^ 4095
	}
}

// zap drops the mapping's page-table entries of [addr, addr+n): the next
// access to them faults.
func (p *pauser) zap(addr, n uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, addr&^4095, (n+4095)&^4095, unix.MADV_DONTNEED)
	if e != 0 {
		return e
	}
	return nil
}

// resume maps the page at addr back, letting the threads that fault on it
// go on.
func (p *pauser) resume(page uintptr) error {
	c := uffdioContinueArg{rng: uffdioRange{uint64(page), 4096}}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(p.fd), uffdioContinue, uintptr(unsafe.Pointer(&c)))
	if e != 0 && e != unix.EEXIST {
		return fmt.Errorf("UFFDIO_CONTINUE: %w", e)
	}
	return nil
}

func (p *pauser) close() { p.f.Close() }

// needProcs makes sure at least two goroutines can run while one of them is
// stopped in a page fault (it keeps its P), and returns the restore.
func needProcs() func() {
	if old := runtime.GOMAXPROCS(0); old < 2 {
		runtime.GOMAXPROCS(2)
		return func() { runtime.GOMAXPROCS(old) }
	}
	return func() {}
}
