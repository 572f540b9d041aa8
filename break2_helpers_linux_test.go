//go:build linux

package shm

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func init() {
	// args: name, off, op, ms: open the segment, view an RWMutex at off and
	// try op (lock: LockTimeout(ms); trylock: TryLock; rlock: RLockTimeout)
	// once. Prints "GOT <err>" when it got the lock (and releases it),
	// "NO <err>" when it did not.
	registerChild("brk2-rwtry", func(args []string) error {
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		rw, err := View[RWMutex](seg.Bytes()[atoi(args[1]):])
		if err != nil {
			return err
		}
		d := time.Duration(atoi(args[3])) * time.Millisecond
		switch args[2] {
		case "lock":
			err := rw.LockTimeout(d)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				fmt.Printf("GOT %v\n", err)
				rw.Unlock()
				return nil
			}
			fmt.Printf("NO %v\n", err)
		case "trylock":
			if rw.TryLock() {
				fmt.Printf("GOT <nil>\n")
				rw.Unlock()
				return nil
			}
			fmt.Printf("NO <nil>\n")
		case "rlock":
			err := rw.RLockTimeout(d)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				fmt.Printf("GOT %v\n", err)
				rw.RUnlock()
				return nil
			}
			fmt.Printf("NO %v\n", err)
		default:
			return fmt.Errorf("op %q", args[2])
		}
		return nil
	})
}

// tryWriteFromChild runs a writer in another process on the RWMutex at off
// of segment name, and reports whether it got the write lock within d.
func tryWriteFromChild(t *testing.T, name string, off int, op string, d time.Duration) (bool, string) {
	t.Helper()
	c := startChild(t, "brk2-rwtry", name, strconv.Itoa(off), op, strconv.Itoa(int(d/time.Millisecond)))
	c.wait(d + 20*time.Second)
	out := c.output()
	return strings.HasPrefix(out, "GOT"), strings.TrimSpace(out)
}

// childTokenEnv passes nothing; it documents that a child has its own token.
var _ = os.Getpid

// stepUntil lets the thread faulting on pages a and b (pauser p, both
// registered and dropped) go from fault to fault, dropping the other page
// before each resume so that the thread's next touch of it faults too,
// until stop says the fault at pg is the place to stop; it returns that
// page, still stopped. done closing first fails the test.
func stepUntil(t *testing.T, p *pauser, done <-chan struct{}, a, b uintptr, stop func(pg uintptr) bool) uintptr {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case pg, ok := <-p.faults:
			if !ok {
				t.Fatal("userfaultfd closed")
			}
			if stop(pg) {
				return pg
			}
			other := a
			if pg == a {
				other = b
			}
			p.zap(other, 4096)
			p.resume(pg)
		case <-done:
			t.Fatal("the stepped call returned before reaching the place to stop")
		case <-timeout:
			t.Fatal("the stepped call never reached the place to stop")
		}
	}
}
