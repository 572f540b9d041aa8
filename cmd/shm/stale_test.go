package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-shm/shm"
)

// A child role of this test binary: create a managed segment (with a link
// file), lock its lock, say so, and wait to be killed.
func init() {
	if os.Getenv("SHM_CLI_TEST_CHILD") != "hold" {
		return
	}
	conf := shm.Config{Name: os.Args[1], Link: os.Args[2], Size: 64}
	conf.AddLock(shm.LockMutex, 0, 64)
	conf.AddEvent(shm.EventAuto)
	m, err := conf.Create()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if _, err := m.Lock(0); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("holding")
	time.Sleep(time.Minute)
	os.Exit(1)
}

// startHolder runs the hold role and returns once the lock is held.
func startHolder(t *testing.T, name, link string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], name, link)
	cmd.Env = append(os.Environ(), "SHM_CLI_TEST_CHILD=hold")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); shm.Remove(name) })
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "holding") {
		t.Fatalf("holder: %q", buf[:n])
	}
	return cmd
}

func TestStale(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("listing segments and their mappers needs Linux")
	}
	dir := t.TempDir()
	dead := fmt.Sprintf("%sdead", namePrefix())
	link := filepath.Join(dir, "dead.link")
	holder := startHolder(t, dead, link)
	live := newSegment(t, 64) // a raw segment: never stale
	conf := shm.Config{Name: fmt.Sprintf("%slive", namePrefix()), Size: 64}
	m, err := conf.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	r := shmCmd(t, "inspect", "-n", "0", dead)
	r.want(t, 0)
	pid := holder.Process.Pid
	for _, want := range []string{
		fmt.Sprintf("creator: pid %d (alive)", pid),
		fmt.Sprintf("lock 0:  mutex [0, 64): held by pid %d", pid),
		"event 0: auto: clear",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, r.stdout)
		}
	}
	// While the creator lives and maps it, nothing is stale.
	r = shmCmd(t, "rm", "--stale", dir)
	r.want(t, 0)
	if !gone(dead) && strings.Contains(r.stdout, "removed") {
		t.Fatalf("rm --stale removed something live:\n%s", r.stdout)
	}

	holder.Process.Kill()
	holder.Wait()

	r = shmCmd(t, "inspect", "-n", "0", dead)
	r.want(t, 0)
	for _, want := range []string{
		fmt.Sprintf("creator: pid %d (dead)", pid),
		fmt.Sprintf("held by pid %d (DEAD)", pid),
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect after the kill lacks %q:\n%s", want, r.stdout)
		}
	}
	r = shmCmd(t, "ls")
	r.want(t, 0)
	if !regexpLine(r.stdout, fmt.Sprintf(`yes\s+pid %d \(dead\)\s+0\s+%s$`, pid, dead)) {
		t.Errorf("ls does not show the dead creator and no mappers:\n%s", r.stdout)
	}
	// This process maps the segment it created (through the unnamed file
	// it was made as, "/dev/shm/#N (deleted)" in its maps): one mapper.
	if !regexpLine(r.stdout, fmt.Sprintf(`yes\s+pid %d \(alive\)\s+1\s+%s$`, os.Getpid(), conf.Name)) {
		t.Errorf("ls does not show our live segment, mapped once (by this process, its creator):\n%s", r.stdout)
	}

	// A dry run says what it would remove and removes nothing.
	r = shmCmd(t, "rm", "--stale", "-n", dir)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "would remove link "+link) || strings.Contains(r.stdout, "removed") {
		t.Errorf("rm --stale -n does not say what it would remove:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "would remove segment "+dead) {
		t.Errorf("rm --stale -n names the linked segment twice (its link removes it):\n%s", r.stdout)
	}
	if gone(dead) {
		t.Fatal("rm --stale -n removed the stale segment")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Fatalf("rm --stale -n removed the link: %v", err)
	}

	r = shmCmd(t, "rm", "--stale", dir)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "removed link "+link) {
		t.Errorf("rm --stale did not report the link:\n%s", r.stdout)
	}
	if !gone(dead) {
		t.Error("rm --stale left the dead creator's segment")
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("rm --stale left the link: %v", err)
	}
	if gone(live.Name()) || gone(conf.Name) {
		t.Error("rm --stale removed a live segment")
	}
	r = shmCmd(t, "rm", "--stale")
	r.want(t, 0)
	if strings.Contains(r.stdout, namePrefix()) {
		t.Errorf("second rm --stale removed more:\n%s", r.stdout)
	}
}

func regexpLine(out, pattern string) bool {
	for _, line := range strings.Split(out, "\n") {
		if ok, _ := regexpMatch(pattern, line); ok {
			return true
		}
	}
	return false
}

func regexpMatch(pattern, s string) (bool, error) { return regexp.MatchString(pattern, s) }
