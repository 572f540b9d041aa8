package shm

import (
	"errors"
	"fmt"
	"time"
)

// Logic shared by the macOS and FreeBSD segments (segment_darwin.go,
// segment_freebsd.go). It has no build constraint ("bsd" is not a GOOS), so
// that its tests run on every system.

// darwinNameMax is PSHMNAMLEN (macOS sys/posix_shm.h): the
// longest name shm_open accepts on macOS, counting the leading '/'; longer
// names fail with ENAMETOOLONG. name_darwin.go derives maxNameLen from it.
const darwinNameMax = 31

// shmObjectName is the name shm_open and shm_unlink take for a segment: the
// segment's name with its leading '/' back. Both kernels keep the '/' as
// part of the name (FreeBSD requires it), and C peers pass "/name".
func shmObjectName(name string) string { return "/" + name }

// Opening races creating: between the creator's shm_open and its ftruncate
// the object exists with size 0 (neither system can create an object that
// is already sized, and macOS cannot rename one into place). An opener that
// sees size 0 looks again for a little while before calling the segment
// empty.
const (
	emptyWait = 100 * time.Millisecond
	emptyPoll = time.Millisecond
)

// shmSize returns the size of an open object from stat (size and st_mode),
// waiting up to emptyWait for a creator to size it. checkType makes it
// reject objects whose st_mode is not S_IFREG (FreeBSD sets it; macOS
// reports only the permission bits).
func shmSize(stat func() (size int64, mode uint32, err error), checkType bool) (int, error) {
	deadline := time.Now().Add(emptyWait)
	for {
		size, mode, err := stat()
		if err != nil {
			return 0, err
		}
		if checkType {
			if err := checkShmMode(mode); err != nil {
				return 0, err
			}
		}
		switch {
		case size < 0 || uint64(size) > maxSize:
			return 0, fmt.Errorf("%w: segment size %d", ErrInvalidSize, size)
		case size > 0:
			return int(size), nil
		case time.Now().After(deadline):
			return 0, fmt.Errorf("%w: segment is empty (size 0)", ErrInvalidSize)
		}
		time.Sleep(emptyPoll)
	}
}

// File type bits of st_mode, the same on every Unix (sys/stat.h).
const (
	sIFMT  = 0o170000
	sIFREG = 0o100000
)

var errNotShm = errors.New("not a shared-memory object")

// checkShmMode rejects an object that fstat says is not a regular file, the
// type FreeBSD reports for shared memory objects.
func checkShmMode(mode uint32) error {
	if mode&sIFMT != sIFREG {
		return fmt.Errorf("%w (file type %#o)", errNotShm, mode&sIFMT)
	}
	return nil
}

// shmOpenArgs lays out the arguments of shm_open after the name, for a call
// through purego.SyscallN: int shm_open(const char *name, int oflag, ...).
// The mode is variadic. The darwin/amd64 ABI passes variadic integers like
// the others, in registers: the mode is the third argument (rdx). The
// darwin/arm64 ABI (Apple's, unlike standard AAPCS64) passes every variadic
// argument on the stack, in 8-byte slots: the callee reads the mode from the
// first stack slot. SyscallN puts arguments 1-8 in x0-x7 and the 9th at the
// bottom of the stack, so the mode goes both third and ninth; each ABI reads
// its copy and ignores the other (arguments 4-8 are zero).
func shmOpenArgs(oflag, mode uintptr) [8]uintptr {
	return [8]uintptr{oflag, mode, 0, 0, 0, 0, 0, mode}
}
