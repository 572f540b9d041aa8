package owner

import (
	"crypto/rand"
	"encoding/binary"
	"os"
	"sort"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LockBase is the offset of the byte that token 0 would lock in a segment's
// file: far beyond any real size (locks may lie past the end of a file), so
// that the liveness locks never touch the bytes a peer may lock itself.
// LockBase plus any token is below the largest offset the kernel accepts.
const LockBase = 1 << 62

func selfToken() Token {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; should it, the PID and time
		// still make collisions unlikely.
		binary.LittleEndian.PutUint64(b[:], uint64(os.Getpid())<<32^uint64(nanotime()))
	}
	return makeToken(uint32(os.Getpid()), binary.LittleEndian.Uint64(b[:]))
}

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// PID returns the process ID in t, as the holder's PID namespace numbers it.
func (t Token) PID() int {
	if t.PIDField() == bigPID {
		return 0
	}
	return int(t.PIDField())
}

// A region is a mapping of a segment's file, with this process's
// descriptor of that file, on which it holds its liveness lock.
type region struct {
	base, end uintptr
	fd        int
	dev, ino  uint64 // the file fd must still be
}

var regions struct {
	// mu is held for reading while a descriptor is in use, so that Detach
	// (whose caller closes the descriptor next) waits for the question in
	// flight: a descriptor number closed and reused for another file would
	// answer for the wrong file.
	mu   sync.RWMutex
	list []region // sorted by base
}

// Attach takes this process's liveness lock on the segment file fd, which
// is mapped at [base, base+size), and makes Alive answer for words in that
// range. The caller keeps fd open until after Detach(base).
func Attach(fd int, base, size uintptr) error {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: LockBase + int64(self), Len: 1}
	if err := fcntlLock(fd, unix.F_OFD_SETLK, &lk); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	regions.mu.Lock()
	defer regions.mu.Unlock()
	l := append(regions.list, region{base: base, end: base + size, fd: fd, dev: uint64(st.Dev), ino: st.Ino})
	sort.Slice(l, func(i, j int) bool { return l[i].base < l[j].base })
	regions.list = l
	return nil
}

// Detach forgets the mapping at base. The caller then closes the
// descriptor, which drops the liveness lock.
func Detach(base uintptr) {
	regions.mu.Lock()
	defer regions.mu.Unlock()
	l := regions.list
	for i := range l {
		if l[i].base == base {
			regions.list = append(l[:i:i], l[i+1:]...)
			return
		}
	}
}

// Alive reports whether the process t may still be running, for a token
// found in the word at addr. It says false only when the kernel says that no
// process holds t's liveness lock on the file addr belongs to. A word
// outside every attached mapping cannot be judged: Alive says true.
func Alive(addr unsafe.Pointer, t Token) bool {
	t &= Mask
	if t == 0 {
		return false
	}
	if t == self {
		return true
	}
	a := uintptr(addr)
	regions.mu.RLock()
	defer regions.mu.RUnlock()
	l := regions.list
	i := sort.Search(len(l), func(i int) bool { return l[i].end > a })
	if i == len(l) || a < l[i].base {
		return true
	}
	// The descriptor must still be the segment's file: a program that
	// closed it behind our back may have had its number reused for another
	// file, where nobody holds the owner's byte.
	var st unix.Stat_t
	if err := unix.Fstat(l[i].fd, &st); err != nil || uint64(st.Dev) != l[i].dev || st.Ino != l[i].ino {
		return true
	}
	return holds(l[i].fd, t)
}

// HeldIn reports whether any process holds t's liveness lock on the file
// fd: whether the process t has that segment open. It says true when it
// cannot tell.
func HeldIn(fd int, t Token) bool { return holds(fd, t&Mask) }

// holds asks whether any process holds t's liveness lock on fd's file.
func holds(fd int, t Token) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: LockBase + int64(t), Len: 1}
	if err := fcntlLock(fd, unix.F_OFD_GETLK, &lk); err != nil {
		return true // cannot tell
	}
	return lk.Type != unix.F_UNLCK
}

// AnyHolder reports whether any process holds a liveness lock on the file
// fd: whether some process has the segment open through this package.
func AnyHolder(fd int) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: LockBase, Len: 1 << Bits}
	if err := fcntlLock(fd, unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}

// fcntlLock is fcntl(fd, cmd, lk) without letting lk escape to the heap.
func fcntlLock(fd, cmd int, lk *unix.Flock_t) error {
	for {
		_, _, e := syscall.Syscall(unix.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(unsafe.Pointer(lk)))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}
