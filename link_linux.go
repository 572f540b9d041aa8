package shm

import (
	"errors"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// publishTmpfile writes content to an unnamed O_TMPFILE in path's directory
// and gives it the name path with linkat(2), which fails with EEXIST if the
// path exists. A crash at any point leaves nothing behind. It returns
// errors.ErrUnsupported where the file system or the kernel cannot do it.
func publishTmpfile(path string, content []byte, mode fs.FileMode) error {
	fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(mode))
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return errors.ErrUnsupported
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, uint32(mode)); err != nil {
		return err
	}
	for b := content; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		b = b[n:]
	}
	err = linkTmp(fd, path)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return err
	}
	// No way to name the unnamed file (no /proc?): the portable route then.
	return errors.ErrUnsupported
}
