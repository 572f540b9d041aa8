//go:build unix

package shm

import "syscall"

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

// setUmask sets the process umask and returns the old one.
func setUmask(mask int) int { return syscall.Umask(mask) }
