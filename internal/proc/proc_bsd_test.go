//go:build darwin || freebsd

package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// These run on a macOS or FreeBSD host only: they read real kinfo_proc
// records through sysctl.

func TestLookupSelf(t *testing.T) {
	pid := uint32(os.Getpid())
	info, r := lookup(pid)
	if r != found {
		t.Fatalf("lookup(self) = %v", r)
	}
	if info.pid != int32(pid) || info.zombie || info.start == 0 {
		t.Fatalf("lookup(self) = %+v", info)
	}
	if Self().Start == unknownStart {
		t.Fatal("Self could not read its own start time")
	}
	if !alive(Self()) {
		t.Fatal("this process is not alive")
	}
	if alive(ID{PID: pid, Start: Self().Start ^ 0x5a5a}) {
		t.Fatal("a start tag from another process was accepted")
	}
}

func TestChildLifecycle(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	// Not yet reaped: a zombie once it has exited.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, r := lookup(pid)
		if r == found && info.zombie {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child never seen as a zombie: %+v, %v", info, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if alive(ID{PID: pid, Start: unknownStart}) {
		t.Fatal("a zombie is alive")
	}
	cmd.Wait()
	// Gone, unless the system may hide live processes from us (FreeBSD:
	// see freebsdESRCH), where no answer can say gone.
	if _, r := lookup(pid); r != wantVanished() {
		t.Fatalf("reaped child: lookup = %v, want %v", r, wantVanished())
	}
}
