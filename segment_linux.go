package shm

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// On Linux a segment is a file in /dev/shm: the same object glibc's
// shm_open("/name") opens, so C and Python peers see the same bytes.

// Dir is where Linux keeps named shared memory.
const Dir = "/dev/shm"

type osSegment struct{}

func shmPath(name string) string { return Dir + "/" + name }

// osCreate creates the segment so that no other process can ever see it
// half-made: the memory is an unnamed O_TMPFILE in /dev/shm, sized and
// reserved with fallocate, then linked under its name with linkat, which
// fails with EEXIST if the name is taken. A crash before the link leaves
// nothing behind. Where O_TMPFILE is missing (very old kernels), it falls
// back to O_CREAT|O_EXCL, and openers may briefly see a zero size.
func osCreate(name string, size int, o *options) ([]byte, osSegment, error) {
	const flags = unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW
	fd, err := unix.Open(Dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(o.mode))
	tmp := err == nil
	if !tmp {
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
			return nil, osSegment{}, err
		}
		fd, err = unix.Open(shmPath(name), flags|unix.O_CREAT|unix.O_EXCL, uint32(o.mode))
		if err != nil {
			return nil, osSegment{}, err
		}
	}
	defer unix.Close(fd)
	fail := func(err error) ([]byte, osSegment, error) {
		if !tmp {
			unix.Unlink(shmPath(name))
		}
		return nil, osSegment{}, err
	}
	// The umask applied to the mode given to open; set exactly what was asked.
	if err := unix.Fchmod(fd, uint32(o.mode)); err != nil {
		return fail(err)
	}
	if err := unix.Fallocate(fd, 0, 0, int64(size)); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			err = fmt.Errorf("%w: %s is full (a container may need a larger --shm-size)", err, Dir)
		} else if errors.Is(err, unix.EOPNOTSUPP) {
			err = unix.Ftruncate(fd, int64(size))
		}
		if err != nil {
			return fail(err)
		}
	}
	data, err := mmapFD(fd, size, false, o.populate)
	if err != nil {
		return fail(err)
	}
	if tmp {
		if err := linkTmp(fd, shmPath(name)); err != nil {
			unix.Munmap(data)
			return nil, osSegment{}, err
		}
	}
	return data, osSegment{}, nil
}

// linkTmp gives the O_TMPFILE fd a name. AT_EMPTY_PATH needs
// CAP_DAC_READ_SEARCH; the /proc/self/fd route works for everyone.
func linkTmp(fd int, path string) error {
	err := unix.Linkat(fd, "", unix.AT_FDCWD, path, unix.AT_EMPTY_PATH)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return err
	}
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
}

func osOpen(name string, o *options) ([]byte, osSegment, error) {
	flags := unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	if o.readOnly {
		flags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	}
	fd, err := unix.Open(shmPath(name), flags, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = fmt.Errorf("%w: refusing to follow a symbolic link", err)
		}
		return nil, osSegment{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, osSegment{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, osSegment{}, fmt.Errorf("not a shared-memory object (file type %#o)", st.Mode&unix.S_IFMT)
	}
	if st.Size <= 0 {
		return nil, osSegment{}, fmt.Errorf("%w: segment is empty (size 0)", ErrInvalidSize)
	}
	if uint64(st.Size) > maxSize {
		return nil, osSegment{}, fmt.Errorf("%w: segment size %d", ErrInvalidSize, st.Size)
	}
	data, err := mmapFD(fd, int(st.Size), o.readOnly, o.populate)
	return data, osSegment{}, err
}

func mmapFD(fd, size int, readOnly, populate bool) ([]byte, error) {
	prot := unix.PROT_READ | unix.PROT_WRITE
	if readOnly {
		prot = unix.PROT_READ
	}
	flags := unix.MAP_SHARED
	if populate {
		flags |= unix.MAP_POPULATE
	}
	return unix.Mmap(fd, 0, size, prot, flags)
}

func osRemove(name string) error {
	return unix.Unlink(shmPath(name))
}

func osClose(data []byte, _ *osSegment) error {
	if data == nil {
		return nil
	}
	return unix.Munmap(data)
}
