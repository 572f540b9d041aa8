//go:build linux

package shm

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBreak2LivenessFDClosedBehindBack: liveness rests on the descriptor a
// Segment keeps. A program that closes descriptors it does not own (a
// daemon's "close every fd above 2", a double close of a number reused by
// the Segment) does two things the library cannot see: its own liveness
// lock is gone (peers take its locks over while it runs), and, once the
// number is reused for another file, its liveness questions go to that
// file, where no token's byte is locked: every peer is judged dead, and it
// takes a live peer's lock. Two holders either way. This records the
// failure mode (a closed-but-not-reused number is safe: EBADF makes Alive
// say "cannot tell").
func TestBreak2LivenessFDClosedBehindBack(t *testing.T) {
	name, seg, a := newArea(t)
	startChild(t, "hold", name, "mutex")
	waitReady(t, a, 1)
	fd := seg.sys.fd

	// Closed, not reused: safe.
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	if err := a.mu.LockTimeout(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("descriptor closed: LockTimeout = %v, want a timeout", err)
	}
	// The number reused for another file (here /dev/null at the same
	// number, as the next open would get it).
	nfd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if nfd != fd {
		if err := unix.Dup3(nfd, fd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(nfd)
	}
	// (seg.Close closes fd, now /dev/null.)
	err = a.mu.LockTimeout(200 * time.Millisecond)
	if err == nil || errors.Is(err, ErrOwnerDead) {
		a.mu.Unlock()
		t.Fatalf("descriptor number reused for another file: took a live process's lock (%v): two holders (Alive could check that the descriptor is still the segment's file: fstat dev/ino)", err)
	}
}
