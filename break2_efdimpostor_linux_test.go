//go:build linux

package shm

import (
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestBreak2EventFDImpostorInOtherPIDNamespace: as
// TestEventFDImpostorRefused (the creator stopped serving but still has the
// segment open, a process that can read the segment binds the server's
// socket name and hands out an eventfd of its own), but the impostor runs
// in a new PID namespace (unshare --pid, as any user may with user
// namespaces, or any container). The opener's check accepts a server whose
// PID differs from the creator's when the server is in another PID
// namespace; SO_PEERCRED translates the PID into the opener's namespace,
// where the impostor of a child namespace is visible under a PID that
// /proc shows in another namespace: the check passes, and the opener takes
// the impostor's eventfd for the creator's.
func TestBreak2EventFDImpostorInOtherPIDNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a new PID namespace")
	}
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

	cmd := childCmd(os.Args[0], nil, "efd-impostor", name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	out, _ := os.CreateTemp(t.TempDir(), "out")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process in a new PID namespace: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadUint32(word32(opener.Data(), 0)) == 0 {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("impostor did not start: %s", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err = opener.Event(0)
	if err == nil {
		t.Fatalf("an opener accepted an eventfd from a process in another PID namespace (pid %d here) that is not the creator (pid %d), after the creator stopped serving", cmd.Process.Pid, os.Getpid())
	}
	t.Logf("refused: %v", err)
}
