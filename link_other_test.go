//go:build !unix

package shm

import "errors"

func mkfifo(path string) error { return errors.ErrUnsupported }

// setUmask does nothing where there is no umask.
func setUmask(mask int) int { return 0 }
