package shm

import (
	"os"
)

// Placeholder until the Windows port lands.

func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

func linkExclusive(oldpath, newpath string) error { return os.Link(oldpath, newpath) }

func lockFile(f *os.File) error   { return nil }
func unlockFile(f *os.File) error { return nil }
