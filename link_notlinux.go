//go:build !linux

package shm

import (
	"errors"
	"io/fs"
)

// publishTmpfile is Linux only; elsewhere a temporary file is linked into
// place.
func publishTmpfile(path string, content []byte, mode fs.FileMode) error {
	return errors.ErrUnsupported
}
