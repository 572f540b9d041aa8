package shm

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// TestOwnerInOtherPIDNamespace: a process in another PID namespace that
// shares the segment holds a lock. Its PID means nothing here (it is 1 in
// its namespace, which here is init), so a waiter must not take its lock
// as a dead owner's: it waits, as for any live holder.
func TestOwnerInOtherPIDNamespace(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) from util-linux")
	}
	name, _, a := newArea(t)
	args, _ := json.Marshal([]string{name, "mutex"})
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "--kill-child", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=hold", childArgsEnv+"="+string(args))
	out, _ := os.CreateTemp(t.TempDir(), "out")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process in a new PID namespace: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for atomic.LoadInt32(&a.ready) < 1 {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out.Name())
			t.Skipf("the child in a new PID namespace did not start (no privilege?): %s", b)
		}
		time.Sleep(time.Millisecond)
	}
	if pid := a.mu.Owner(); pid != 1 {
		t.Logf("owner PID as recorded: %d (expected 1, the child's PID in its namespace)", pid)
	}
	err = a.mu.LockTimeout(300 * time.Millisecond)
	if errors.Is(err, ErrOwnerDead) {
		t.Fatal("a live owner in another PID namespace was taken for dead: its lock was stolen")
	}
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("LockTimeout: %v, want ErrTimeout", err)
	}
}
