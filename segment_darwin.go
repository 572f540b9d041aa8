package shm

import (
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/unix"

	"github.com/go-shm/shm/internal/cerrno"
)

// On macOS a segment is a POSIX shared memory object, opened with libc's
// shm_open("/name") (reached through purego: Go has no system call for it
// and macOS offers no stable system call interface), so C and Python peers
// see the same bytes. What the kernel does (xnu bsd/kern/posix_shm.c):
//   - the name, with its '/', is at most PSHMNAMLEN (31) bytes;
//   - the mode is stored as given (no umask), and fchmod does not work on
//     the descriptor, so the mode passed to shm_open is the final one;
//   - ftruncate sizes an object once, rounded up to the page size, and
//     fstat reports that rounded size: an opener's Size is the creator's
//     size rounded up to 16 KiB (arm64) or 4 KiB (amd64);
//   - there is nothing like MAP_POPULATE: Populate has no effect.

type osSegment struct{}

var libc struct {
	once               sync.Once
	shmOpen, shmUnlink uintptr
	err                error
}

func loadLibc() error {
	libc.once.Do(func() {
		h, err := purego.Dlopen("/usr/lib/libSystem.B.dylib", purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			libc.shmOpen, err = purego.Dlsym(h, "shm_open")
		}
		if err == nil {
			libc.shmUnlink, err = purego.Dlsym(h, "shm_unlink")
		}
		libc.err = err
	})
	return libc.err
}

// shmOpen calls shm_open("/"+name, flags, mode). shm_open is variadic:
// int shm_open(const char *name, int oflag, ...). On arm64 Apple passes
// variadic arguments on the stack, not in registers, so mode goes both in
// the third register (amd64, where variadic arguments use the normal
// registers) and in the first stack slot (arm64); see shmOpenArgs.
func shmOpen(name string, flags int, mode uint32) (int, error) {
	if err := loadLibc(); err != nil {
		return -1, err
	}
	p, err := unix.BytePtrFromString(shmObjectName(name))
	if err != nil {
		return -1, err
	}
	a := shmOpenArgs(uintptr(flags), uintptr(mode))
	// Hold off fork+exec while the descriptor may not yet be close-on-exec
	// (recent kernels set it themselves; older ones may not).
	syscall.ForkLock.RLock()
	r, _, e := purego.SyscallN(libc.shmOpen, uintptr(unsafe.Pointer(p)), a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
	fd := int(int32(r))
	if fd >= 0 {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if fd < 0 {
		return -1, cerrno.Err(e)
	}
	return fd, nil
}

func osCreate(name string, size int, o *options) ([]byte, osSegment, error) {
	fd, err := shmOpen(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, uint32(o.mode))
	if err != nil {
		return nil, osSegment{}, err
	}
	defer unix.Close(fd)
	fail := func(err error) ([]byte, osSegment, error) {
		osRemove(name)
		return nil, osSegment{}, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail(err)
	}
	data, err := mmapShm(fd, size, false, o.populate)
	if err != nil {
		return fail(err)
	}
	return data, osSegment{}, nil
}

// shmHasFileType: macOS reports only the permission bits in st_mode.
const shmHasFileType = false

// mmapShm maps size bytes of the object; macOS has nothing like
// MAP_POPULATE, so populate is ignored.
func mmapShm(fd, size int, readOnly, _ bool) ([]byte, error) {
	prot := unix.PROT_READ | unix.PROT_WRITE
	if readOnly {
		prot = unix.PROT_READ
	}
	return unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED)
}

func osRemove(name string) error {
	if err := loadLibc(); err != nil {
		return err
	}
	p, err := unix.BytePtrFromString(shmObjectName(name))
	if err != nil {
		return err
	}
	r, _, e := purego.SyscallN(libc.shmUnlink, uintptr(unsafe.Pointer(p)))
	if int32(r) != 0 {
		return cerrno.Err(e)
	}
	return nil
}
