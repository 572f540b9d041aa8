//go:build linux

package shm

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type efdFaultFlags struct {
	opened int32 // child: 1 opened the managed segment
	cut    int32 // parent: 1 the file was shrunk
}

func init() {
	// args: name, flagsName: open the managed segment, wait until told the
	// file shrank, then ask for event 0 (an eventfd event) and print what
	// it returned.
	registerChild("brk2-efd-shrunk", func(args []string) error {
		fs, err := Open(args[1])
		if err != nil {
			return err
		}
		defer fs.Close()
		f, _ := View[efdFaultFlags](fs.Bytes())
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		atomic.StoreInt32(&f.opened, 1)
		for atomic.LoadInt32(&f.cut) == 0 {
			time.Sleep(time.Millisecond)
		}
		_, err = m.Event(0)
		println("EVENT", errString(err))
		return nil
	})
}

// TestBreak2EventFDOpenOnShrunkSegment: Managed calls turn a memory fault
// (a peer shrank the segment's file) into ErrCorrupt, but Managed.Event
// for an eventfd kind reads the event's record in the segment (creator
// token, nonce: openEventFD) without a fault guard: the first Event call
// after the shrink kills the process with SIGBUS.
func TestBreak2EventFDOpenOnShrunkSegment(t *testing.T) {
	name := testName(t)
	c := Config{Name: name, Size: 64, Events: []EventKind{EventFDAuto}}
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fname := testName(t)
	fs, err := Create(fname, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	f, _ := View[efdFaultFlags](fs.Bytes())
	ch := startChild(t, "brk2-efd-shrunk", name, fname)
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadInt32(&f.opened) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("child never opened the segment")
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Truncate(Dir+"/"+name, 0); err != nil {
		t.Fatal(err)
	}
	atomic.StoreInt32(&f.cut, 1)
	err = ch.waitErr(20 * time.Second)
	out := ch.output()
	if err != nil || !strings.Contains(out, "EVENT") {
		first := out
		if i := strings.Index(first, "\n\n"); i > 0 {
			first = first[:i]
		}
		t.Fatalf("Managed.Event (eventfd) on a segment a peer shrank crashed the process (%v):\n%s", err, first)
	}
	if !strings.Contains(out, "corrupt") {
		t.Errorf("Managed.Event on a shrunk segment: %s, want ErrCorrupt", strings.TrimSpace(out))
	}
}
