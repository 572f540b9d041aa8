//go:build linux

package shm

import (
	"strconv"
	"testing"
	"time"
)

func init() {
	// args: name, i, read (0|1), ms: open the managed segment, try to lock
	// lock i (for reading if read) within ms; print GOT or NO.
	registerChild("brk2-mlock", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		d := time.Duration(atoi(args[3])) * time.Millisecond
		var g *Guard
		if args[2] == "1" {
			g, err = m.RLockTimeout(atoi(args[1]), d)
		} else {
			g, err = m.LockTimeout(atoi(args[1]), d)
		}
		if g != nil {
			println("GOT", errString(err))
			g.Unlock()
			return nil
		}
		println("NO", errString(err))
		return nil
	})
}

// TestBreak2CloseReopenResurrectsGivenUpLocks: Managed.Close says the locks
// this process holds in the segment are given up, other processes taking
// them over as from a dead holder (Linux: the process no longer holds its
// liveness lock on the file). But the lock words still carry this
// process's token, and the process is judged by that token alone: as soon
// as it opens the segment again (a reconnect, another component of the
// program), it is alive again and holds those locks, with no Guard left to
// release them (the old Guards are no-ops after Close). Its own Lock waits
// for itself forever (owner.Alive(self) is always true), and every other
// process waits too, for as long as it keeps the segment open.
func TestBreak2CloseReopenResurrectsGivenUpLocks(t *testing.T) {
	name := testName(t)
	c := Config{Name: name, Size: 128}
	mu := c.AddLock(LockMutex, 0, 64)
	rw := c.AddLock(LockRW, 64, 64)
	m1, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	m1.Segment().SetOwner(false)
	if _, err := m1.Lock(mu); err != nil {
		t.Fatal(err)
	}
	if _, err := m1.RLock(rw); err != nil {
		t.Fatal(err)
	}
	m1.Close() // gives the locks up

	m2, err := OpenManaged(name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Release what the reopened process holds again, raw.
		if x, err := m2.Mutex(mu); err == nil {
			x.Unlock()
		}
		if x, err := m2.RWMutex(rw); err == nil {
			x.RUnlock()
		}
		m2.Close()
	}()
	var fails []string
	if g, err := m2.LockTimeout(mu, 300*time.Millisecond); g == nil {
		fails = append(fails, "this process, reopened: Lock(mutex): "+errString(err))
	} else {
		g.Unlock()
	}
	for _, tc := range []struct {
		i    int
		read string
		what string
	}{{mu, "0", "mutex"}, {rw, "0", "write lock"}} {
		ch := startChild(t, "brk2-mlock", name, strconv.Itoa(tc.i), tc.read, "500")
		ch.wait(20 * time.Second)
		if out := ch.output(); len(out) < 3 || out[:3] != "GOT" {
			fails = append(fails, "another process: "+tc.what+": "+out)
		}
	}
	if len(fails) > 0 {
		t.Fatalf("locks given up by Close are held again once the process reopens the segment:\n%v", fails)
	}
}
