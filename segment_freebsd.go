package shm

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On FreeBSD a segment is a POSIX shared memory object: what libc's
// shm_open("/name") opens, so C and Python peers see the same bytes. libc's
// shm_open is the shm_open2 system call with O_CLOEXEC added, which we make
// directly (golang.org/x/sys/unix has no constant for it yet).

type osSegment struct{}

// From FreeBSD sys/kern/syscalls.master.
const (
	sysShmOpen2 = 571 // int shm_open2(const char *path, int flags, mode_t mode, int shmflags, const char *name)
	sysShmOpen  = 482 // freebsd12_shm_open, for kernels before 13.0
)

// shmOpen opens "/"+name. The kernel requires the leading '/'.
func shmOpen(name string, flags int, mode uint32) (int, error) {
	p, err := unix.BytePtrFromString(shmObjectName(name))
	if err != nil {
		return -1, err
	}
	flags |= unix.O_CLOEXEC
	fd, _, e := syscall.Syscall6(sysShmOpen2, uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mode), 0, 0, 0)
	if e == unix.ENOSYS {
		fd, _, e = syscall.Syscall(sysShmOpen, uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mode))
	}
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
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
	// The kernel applied the umask to the mode: set exactly what was asked.
	if err := unix.Fchmod(fd, uint32(o.mode)); err != nil {
		return fail(err)
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

// shmHasFileType: FreeBSD sets S_IFREG in st_mode.
const shmHasFileType = true

// mmapShm maps size bytes of the object. FreeBSD's nearest thing to
// MAP_POPULATE is MAP_PREFAULT_READ, which maps the pages already resident
// up front.
func mmapShm(fd, size int, readOnly, populate bool) ([]byte, error) {
	prot := unix.PROT_READ | unix.PROT_WRITE
	if readOnly {
		prot = unix.PROT_READ
	}
	flags := unix.MAP_SHARED
	if populate {
		flags |= unix.MAP_PREFAULT_READ
	}
	return unix.Mmap(fd, 0, size, prot, flags)
}

func osRemove(name string) error {
	p, err := unix.BytePtrFromString(shmObjectName(name))
	if err != nil {
		return err
	}
	_, _, e := syscall.Syscall(unix.SYS_SHM_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
