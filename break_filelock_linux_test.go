//go:build linux

package shm

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBreakWholeFileLockHidesDeath: a peer that takes an ordinary
// whole-file read lock on the segment's file (fcntl with l_len 0, "to the
// end of the file and beyond", as lockf-style code does) covers every
// liveness byte at 2^62 + token: the kernel then reports every token as
// held, and a dead holder's lock is never taken over. internal/owner says
// the liveness bytes lie "far beyond any real size ... so that the liveness
// locks never touch the bytes a peer may lock itself", but a lock to EOF
// reaches them.
func TestBreakWholeFileLockHidesDeath(t *testing.T) {
	name, _, a := newArea(t)
	f, err := os.Open(Dir + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	holder := startChild(t, "area-hold", name)
	waitCount(t, &a.ready, 1, 20*time.Second)
	holder.kill()
	err = a.mu.LockTimeout(500 * time.Millisecond)
	if err == nil || errors.Is(err, ErrOwnerDead) {
		a.mu.Unlock()
		return
	}
	t.Fatalf("the holder was killed; with a whole-file read lock on the segment held by a peer, LockTimeout: %v (want ErrOwnerDead)", err)
}
