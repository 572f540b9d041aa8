//go:build linux

package shm

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBreakWholeFileLockHidesDeath: a peer's ordinary whole-file read lock
// on the segment's file (fcntl with l_len 0, "to the end of the file and
// beyond", as lockf-style code takes) covers every liveness byte at
// 2^62 + token, so while it is held the kernel reports every token as held
// and a dead holder cannot be told from a live one. This was found by an
// adversarial test; the choice made (see internal/owner) is to keep the
// liveness locks read locks, so that such a peer never makes an open of the
// segment fail, and to accept that the peer's lock suspends recovery while
// it is held: never two holders, timed waits still return, and the dead
// holder's lock is taken over as soon as the peer lets go.
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
	// Opening the segment (taking a liveness lock) still works.
	holder := startChild(t, "area-hold", name)
	waitCount(t, &a.ready, 1, 20*time.Second)
	holder.kill()
	if err := a.mu.LockTimeout(200 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		if err == nil || errors.Is(err, ErrOwnerDead) {
			a.mu.Unlock()
		}
		t.Fatalf("with a peer's whole-file read lock held, LockTimeout: %v (want ErrTimeout: deaths cannot be told then)", err)
	}
	lk.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.mu.LockTimeout(time.Second); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("once the peer let go of its lock, LockTimeout: %v, want ErrOwnerDead", err)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Errorf("the dead holder's lock was taken %v after the peer let go, want at most 100 ms", el)
	}
	a.mu.Unlock()
}
