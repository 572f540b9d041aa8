package shm

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The eventfd handout between processes: one peer must not be able to block
// it for others, and an opener must trust only the creator.

func init() {
	// args: name: open the managed segment and fetch eventfd 0; say how
	// long it took on stdout.
	registerChild("efd-open", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		start := time.Now()
		if _, err := m.Event(0); err != nil {
			return err
		}
		os.Stdout.WriteString(time.Since(start).String() + "\n")
		return nil
	})
	// args: name: bind the eventfd server's socket name of event 0 (read
	// from the segment, as any process that can read it may) and hand out
	// a pipe instead of the eventfd, until killed.
	registerChild("efd-impostor", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		p := m.seg.data[m.l.events[0].prim:]
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: efdSocket(p[efdOffNonce : efdOffNonce+8]), Net: "unix"})
		if err != nil {
			return err
		}
		fake, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			return err
		}
		atomic.StoreUint32(word32(m.Data(), 0), 1) // listening
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return err
			}
			var req [4]byte
			c.Read(req[:])
			c.WriteMsgUnix(req[:], unix.UnixRights(fake), nil)
			c.Close()
		}
	})
}

// TestEventFDHandoutNotBlockedByIdlePeers: connections that say nothing
// (a peer of the same user holding them open) must not keep a legitimate
// opener from its eventfd for long.
func TestEventFDHandoutNotBlockedByIdlePeers(t *testing.T) {
	name := testName(t)
	m, err := Config{Name: name, Size: 64, Events: []EventKind{EventFDAuto}}.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := m.seg.data[m.l.events[0].prim:]
	addr := &net.UnixAddr{Name: efdSocket(p[efdOffNonce : efdOffNonce+8]), Net: "unix"}
	var idle []*net.UnixConn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 8; i++ {
		c, err := net.DialUnix("unix", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	start := time.Now()
	c := startChild(t, "efd-open", name)
	if err := c.waitErr(20 * time.Second); err != nil {
		t.Fatalf("opener with 8 idle connections ahead of it: %v\n%s", err, c.output())
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("the opener needed %v (process start included), want well under 2 s", el)
	}
}

// TestEventFDImpostorRefused: after the creator stopped serving (it closed
// the managed segment but still has it open another way, so it is alive), a
// process that binds the server's socket name and hands out something else
// is not trusted: its PID is not the creator's.
func TestEventFDImpostorRefused(t *testing.T) {
	name := testName(t)
	m, err := Config{Name: name, Size: 64, Events: []EventKind{EventFDAuto}}.Create()
	if err != nil {
		t.Fatal(err)
	}
	keep, err := Open(name) // keeps the creator (this process) alive as the creator
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	opener, err := OpenManaged(name)
	if err != nil {
		t.Fatal(err)
	}
	defer opener.Close()
	m.Segment().SetOwner(false)
	m.Close() // the server stops; the segment stays
	keep.SetOwner(true)
	imp := startChild(t, "efd-impostor", name)
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadUint32(word32(opener.Data(), 0)) == 0 {
		if time.Now().After(deadline) {
			imp.kill()
			t.Fatalf("impostor did not start: %s", imp.output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err = opener.Event(0)
	if err == nil {
		t.Fatal("an opener accepted an eventfd from a process that is not the creator")
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("eventfd from an impostor: %v, want fs.ErrPermission", err)
	}
}
