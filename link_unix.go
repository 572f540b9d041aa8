//go:build unix

package shm

import (
	"os"

	"golang.org/x/sys/unix"
)

// openNoFollow opens path for reading, refusing a symbolic link in its last
// element, and without blocking on a FIFO.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
}

// linkExclusive makes newpath a hard link to oldpath, failing with
// fs.ErrExist if newpath exists.
func linkExclusive(oldpath, newpath string) error {
	err := unix.Link(oldpath, newpath)
	if err != nil {
		return &os.LinkError{Op: "link", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

func lockFile(f *os.File) error   { return unix.Flock(int(f.Fd()), unix.LOCK_EX) }
func unlockFile(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_UN) }
