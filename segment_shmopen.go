//go:build darwin || freebsd

package shm

import "golang.org/x/sys/unix"

// What macOS and FreeBSD do alike once shm_open has given a descriptor.

func osOpen(name string, o *options) ([]byte, osSegment, error) {
	flags := unix.O_RDWR
	if o.readOnly {
		flags = unix.O_RDONLY
	}
	fd, err := shmOpen(name, flags, 0)
	if err != nil {
		return nil, osSegment{}, err
	}
	defer unix.Close(fd)
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

func osClose(data []byte, _ *osSegment) error {
	if data == nil {
		return nil
	}
	return unix.Munmap(data)
}
