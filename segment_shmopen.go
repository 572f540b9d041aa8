//go:build darwin || freebsd

package shm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// What macOS and FreeBSD do alike once shm_open has given a descriptor.

func osOpen(name string, o *options) ([]byte, osSegment, error) {
	flags := unix.O_RDWR
	if o.readOnly {
		flags = unix.O_RDONLY
	}
	fd, err := shmOpen(name, flags, 0)
	if err != nil {
		if err == unix.EACCES && !o.readOnly {
			if rfd, rerr := shmOpen(name, unix.O_RDONLY, 0); rerr == nil {
				unix.Close(rfd)
				err = fmt.Errorf("%w (you may read it: open it with shm.ReadOnly())", err)
			}
		}
		return nil, osSegment{}, err
	}
	defer unix.Close(fd)
	var owner unix.Stat_t
	if err := unix.Fstat(fd, &owner); err != nil {
		return nil, osSegment{}, err
	}
	if err := o.checkOwner("the segment", owner.Uid); err != nil {
		return nil, osSegment{}, err
	}
	size, err := shmSize(func() (int64, uint32, error) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, 0, err
		}
		return st.Size, uint32(st.Mode), nil
	}, shmHasFileType)
	if err != nil {
		return nil, osSegment{}, err
	}
	data, err := mmapShm(fd, size, o.readOnly, o.populate)
	return data, osSegment{}, err
}

// segmentOwner returns the user that owns the segment name, and whether it
// exists.
func segmentOwner(name string) (uid uint32, exists bool, err error) {
	fd, err := shmOpen(name, unix.O_RDONLY, 0)
	if err != nil {
		if err == unix.ENOENT {
			return 0, false, nil
		}
		return 0, false, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, false, err
	}
	return st.Uid, true, nil
}

func osClose(data []byte, _ *osSegment) error {
	if data == nil {
		return nil
	}
	return unix.Munmap(data)
}
