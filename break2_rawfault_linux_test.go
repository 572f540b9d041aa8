//go:build linux

package shm

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Offsets in the two-page segment of the raw-fault trials: a Mutex, events
// and an RWMutex whose w and idle words are on page 0 and whose slots run
// into page 1.
const (
	rfMutex  = 0
	rfAuto   = 8
	rfManual = 16
	rfRW     = 4096 - 64 - 8*64
)

func init() {
	// args: name, op, flagsName: open the segment, wait until the test
	// shrank it, and call op once.
	registerChild("brk2-rawfault", func(args []string) error {
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		fs, err := Open(args[2])
		if err != nil {
			return err
		}
		defer fs.Close()
		f, _ := View[efdFaultFlags](fs.Bytes())
		atomic.StoreInt32(&f.opened, 1)
		for atomic.LoadInt32(&f.cut) == 0 {
			time.Sleep(time.Millisecond)
		}
		b := seg.Bytes()
		var e error
		switch args[1] {
		case "rw.LockTimeout":
			rw, _ := View[RWMutex](b[rfRW:])
			e = rw.LockTimeout(10 * time.Millisecond)
		case "rw.TryLock":
			// TryLock returns no error: a fault is a panic with an error
			// matching ErrCorrupt (see "Memory faults"), which we recover.
			rw, _ := View[RWMutex](b[rfRW:])
			func() {
				defer func() {
					if r := recover(); r != nil {
						if err, ok := r.(error); ok && errors.Is(err, ErrCorrupt) {
							e = err
							return
						}
						panic(r)
					}
				}()
				rw.TryLock()
			}()
		case "mutex.LockTimeout":
			mu, _ := View[Mutex](b[rfMutex:])
			e = mu.LockTimeout(10 * time.Millisecond)
		case "auto.WaitTimeout":
			ev, _ := View[AutoEvent](b[rfAuto:])
			e = ev.WaitTimeout(10 * time.Millisecond)
		case "manual.WaitTimeout":
			ev, _ := View[ManualEvent](b[rfManual:])
			e = ev.WaitTimeout(10 * time.Millisecond)
		}
		println("RETURNED", errString(e))
		return nil
	})
}

// TestBreak2RawTimeoutFormsFaultOnShrunk: fault.go says the fast paths of
// the primitives are unguarded and advises, for a mapping a peer may
// shrink, "the managed API or the Timeout and Context forms (their waits
// are guarded)". But the Timeout forms start with the same unguarded fast
// path (one CAS or load: a cut page kills the process before any wait), and
// the uncontended RWMutex.LockTimeout (and TryLock) then scans all 256
// slots (2 KB, over a page boundary here) unguarded: no Timeout form
// protects a process from a peer's ftruncate. What this test records: which
// calls crash (SIGBUS) rather than return ErrCorrupt.
func TestBreak2RawTimeoutFormsFaultOnShrunk(t *testing.T) {
	var crashed []string
	for _, tc := range []struct {
		op  string
		cut int64
	}{
		{"rw.LockTimeout", 4096}, // w on the page kept: only the slot scan faults
		{"rw.TryLock", 4096},
		{"mutex.LockTimeout", 0},
		{"auto.WaitTimeout", 0},
		{"manual.WaitTimeout", 0},
	} {
		name, fname := testName(t), testName(t)
		seg, err := Create(name, 2*4096)
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
		fs, err := Create(fname, 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		f, _ := View[efdFaultFlags](fs.Bytes())
		c := startChild(t, "brk2-rawfault", name, tc.op, fname)
		deadline := time.Now().Add(20 * time.Second)
		for atomic.LoadInt32(&f.opened) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := os.Truncate(Dir+"/"+name, tc.cut); err != nil {
			t.Fatal(err)
		}
		atomic.StoreInt32(&f.cut, 1)
		err = c.waitErr(20 * time.Second)
		out := c.output()
		if err != nil || !strings.Contains(out, "RETURNED") {
			if i := strings.Index(out, "\n\n"); i > 0 {
				out = out[:i]
			}
			crashed = append(crashed, tc.op+": "+strings.ReplaceAll(strings.TrimSpace(out), "\n", " | "))
		} else {
			t.Logf("%s: %s", tc.op, strings.TrimSpace(out))
		}
	}
	if len(crashed) > 0 {
		t.Fatalf("Timeout forms crash the process on a shrunk segment:\n%s", strings.Join(crashed, "\n"))
	}
}
