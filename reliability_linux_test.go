package shm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Owner death judged in environments where a PID lookup goes wrong: a
// holder whose main thread exited (zombie leader, other threads running),
// /proc mounted with hidepid=2, a /proc of another PID namespace, a holder
// in another PID namespace (whose namespace once shared an 8-bit tag with
// the waiter's), and a holder in another PID namespace that dies. A live
// holder must never lose its lock; a dead one must lose it within 100 ms.
// These need root and unshare/nsenter/setpriv (CI has them); elsewhere they
// skip, saying why.

func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, other users)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// childCmd runs role in this test binary under the command prefix (for
// example unshare ...), with args.
func childCmd(bin string, prefix []string, role string, args ...string) *exec.Cmd {
	if args == nil {
		args = []string{}
	}
	a, _ := json.Marshal(args)
	argv := append(append([]string{}, prefix...), bin, "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+role, childArgsEnv+"="+string(a))
	return cmd
}

func init() {
	// args: name, timeout: try the mutex of the area once; fail if it was
	// taken (a live holder's lock must not be).
	registerChild("rel-try", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		d, _ := time.ParseDuration(args[1])
		err = a.mu.LockTimeout(d)
		switch {
		case errors.Is(err, ErrTimeout):
			return nil
		case err == nil || errors.Is(err, ErrOwnerDead):
			a.mu.Unlock()
			return fmt.Errorf("took the lock of a live holder: %v", err)
		}
		return err
	})
	// args: name: run a holder and a waiter, both children of this process
	// (so both in its PID namespace), and report the waiter's verdict.
	registerChild("rel-pair", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		holder := childCmd(os.Args[0], nil, "area-hold", args[0])
		holder.Stderr = os.Stderr
		if err := holder.Start(); err != nil {
			return err
		}
		defer func() { holder.Process.Kill(); holder.Wait() }()
		for deadline := time.Now().Add(20 * time.Second); atomic.LoadInt32(&a.ready) == 0; {
			if time.Now().After(deadline) {
				return errors.New("holder never locked")
			}
			time.Sleep(time.Millisecond)
		}
		waiter := childCmd(os.Args[0], nil, "rel-try", args[0], "300ms")
		out, err := waiter.CombinedOutput()
		if err != nil {
			return fmt.Errorf("waiter: %v: %s", err, out)
		}
		return nil
	})
	// args: name: lock the area's mutex, say so, wait to be killed.
	registerChild("area-hold", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		a.mu.Lock()
		atomic.AddInt32(&a.ready, 1)
		time.Sleep(time.Hour)
		return nil
	})
}

// TestOwnerZombieMainThread: a C peer locks the mutex (following the wire
// format: owner token in the word, its liveness lock on the segment file),
// then its main thread calls pthread_exit while another thread keeps
// running. /proc shows the process as a zombie; it is alive and must keep
// its lock. Once it is killed, a waiter takes the lock over.
func TestOwnerZombieMainThread(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("needs gcc to build the C peer")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "peer.c")
	if err := os.WriteFile(src, []byte(zombiePeer), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "peer")
	if out, err := exec.Command(cc, "-O2", "-pthread", "-o", bin, src).CombinedOutput(); err != nil {
		t.Skipf("cannot build the C peer: %v\n%s", err, out)
	}
	name, _, a := newArea(t)
	peer := exec.Command(bin, Dir+"/"+name, fmt.Sprintf("%x", time.Now().UnixNano()))
	stdout, _ := peer.StdoutPipe()
	peer.Stderr = os.Stderr
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { peer.Process.Kill(); peer.Wait() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("C peer: %q", line)
	}
	// Wait until /proc shows the main thread gone.
	pid := peer.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for procState(pid) != 'Z' {
		if time.Now().After(deadline) {
			t.Fatalf("the peer's main thread did not exit (state %c)", procState(pid))
		}
		time.Sleep(time.Millisecond)
	}
	if got := a.mu.Owner(); got != pid {
		t.Errorf("Owner() = %d, want the C peer's pid %d", got, pid)
	}
	if err := a.mu.LockTimeout(300 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		if err == nil || errors.Is(err, ErrOwnerDead) {
			a.mu.Unlock()
		}
		t.Fatalf("LockTimeout while a live peer (main thread exited) holds the lock: %v, want ErrTimeout", err)
	}
	killed := time.Now()
	peer.Process.Kill()
	peer.Wait()
	if err := a.mu.LockTimeout(5 * time.Second); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("LockTimeout after the peer was killed: %v, want ErrOwnerDead", err)
	}
	if el := time.Since(killed); el > 100*time.Millisecond {
		t.Errorf("took the dead peer's lock after %v, want at most 100 ms", el)
	}
	a.mu.Unlock()
}

// zombiePeer locks the mutex at offset 0 of the segment as the wire format
// says a process does: owner token = instance << 22 | pid, its liveness lock
// (an open-file-description read lock on byte 2^62 + token of the segment's
// file), then the word (token bits 0..23 in bits 0..23, bits 24..55 in bits
// 32..63), and lets its main thread exit.
const zombiePeer = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void *hold(void *arg) { (void)arg; sleep(60); return 0; }

int main(int argc, char **argv) {
	if (argc != 3) return 2;
	int fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0) { perror("open"); return 1; }
	uint64_t inst = strtoull(argv[2], 0, 16) & ((1ULL << 34) - 1);
	if (inst == 0) inst = 1;
	uint64_t tok = inst << 22 | ((uint64_t)getpid() & 0x3fffff);
	struct flock lk = {0};
	lk.l_type = F_RDLCK;
	lk.l_whence = SEEK_SET;
	lk.l_start = (off_t)((1ULL << 62) + tok);
	lk.l_len = 1;
	if (fcntl(fd, F_OFD_SETLK, &lk) != 0) { perror("F_OFD_SETLK"); return 1; }
	uint64_t *w = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (w == MAP_FAILED) { perror("mmap"); return 1; }
	uint64_t word = (tok & 0xffffff) | (tok >> 24) << 32, zero = 0;
	if (!__atomic_compare_exchange_n(w, &zero, word, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
		fprintf(stderr, "mutex busy\n");
		return 1;
	}
	pthread_t t;
	pthread_create(&t, 0, hold, 0);
	printf("locked\n");
	fflush(stdout);
	pthread_exit(0);
}
`

// procState returns the state letter of /proc/pid/stat, or 0.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// worldBinary copies this test binary where any user may run it.
func worldBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shmtest-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "shm.test")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestOwnerHiddenByHidepid: a waiter run by another user, with /proc
// mounted hidepid=2 (other users' processes invisible), must not take the
// lock of a live holder it cannot see.
func TestOwnerHiddenByHidepid(t *testing.T) {
	needRoot(t, "unshare", "setpriv")
	name := testName(t)
	seg, err := Create(name, 4096, WithMode(0o666))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	a, err := View[area](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock() // held by this process (root), alive throughout
	defer a.mu.Unlock()
	bin := worldBinary(t)
	prefix := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -t proc -o hidepid=2 proc /proc && test ! -e /proc/` + strconv.Itoa(os.Getpid()) + `/stat -o "$(id -u)" = 0 && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"`, "sh"}
	out, err := childCmd(bin, prefix, "rel-try", name, "300ms").CombinedOutput()
	if err != nil {
		t.Fatalf("waiter as uid 65534 with /proc hidepid=2: %v\n%s", err, out)
	}
}

// TestOwnerForeignProc: holder and waiter both in a new PID namespace whose
// /proc was not remounted (it shows the parent namespace's PIDs): the
// waiter must not judge the holder by a PID looked up there.
func TestOwnerForeignProc(t *testing.T) {
	needRoot(t, "unshare")
	name, _, _ := newArea(t)
	out, err := childCmd(os.Args[0], []string{"unshare", "--pid", "--fork", "--"}, "rel-pair", name).CombinedOutput()
	if err != nil {
		t.Fatalf("holder and waiter in a PID namespace with the parent's /proc: %v\n%s", err, out)
	}
}

// nsFold folds a namespace inode into the 8-bit tag lock words once
// carried, to find a namespace whose tag collided with ours.
func nsFold(ino uint64) uint8 {
	t := uint8(ino ^ ino>>8 ^ ino>>16 ^ ino>>24 ^ ino>>32 ^ ino>>40 ^ ino>>48 ^ ino>>56)
	if t == 0 {
		t = 1
	}
	return t
}

func pidNSIno(pid string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+pid+"/ns/pid", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// TestOwnerOtherNamespaceSameTag: a live holder in another PID namespace,
// one whose namespace folds to the same 8-bit tag as the waiter's (which
// once made the waiter judge it by a PID that means nothing here), keeps
// its lock.
func TestOwnerOtherNamespaceSameTag(t *testing.T) {
	needRoot(t, "unshare", "nsenter")
	self, err := pidNSIno("self")
	if err != nil {
		t.Skip(err)
	}
	want := nsFold(self)
	// Make PID namespaces (each kept alive by a sleeping process) until
	// one folds to our tag.
	var keepers []*exec.Cmd
	defer func() {
		for _, k := range keepers {
			k.Process.Kill()
			k.Wait()
		}
	}()
	target := ""
	for i := 0; i < 1024 && target == ""; i++ {
		k := exec.Command("unshare", "--pid", "--fork", "--kill-child", "sleep", "120")
		if err := k.Start(); err != nil {
			t.Skip(err)
		}
		keepers = append(keepers, k)
		var inner string
		for deadline := time.Now().Add(5 * time.Second); inner == "" && time.Now().Before(deadline); {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", k.Process.Pid, k.Process.Pid))
			inner = strings.TrimSpace(string(b))
			if inner == "" {
				time.Sleep(time.Millisecond)
			}
		}
		if ino, err := pidNSIno(inner); err == nil && ino != self && nsFold(ino) == want {
			target = inner
		}
	}
	if target == "" {
		t.Skip("no PID namespace with a colliding tag found")
	}
	name, _, a := newArea(t)
	holder := childCmd(os.Args[0], []string{"nsenter", "--target", target, "--pid", "--"}, "area-hold", name)
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	waitCount(t, &a.ready, 1, 20*time.Second)
	if err := a.mu.LockTimeout(300 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		if err == nil || errors.Is(err, ErrOwnerDead) {
			a.mu.Unlock()
		}
		t.Fatalf("LockTimeout while a live holder in another PID namespace (same 8-bit tag) holds it: %v", err)
	}
}

// TestOwnerDeathAcrossNamespaces: a holder in another PID namespace, with
// its own /proc and mount namespace (as in a container sharing /dev/shm),
// is judged right: alive while it runs, dead within 100 ms of its death.
func TestOwnerDeathAcrossNamespaces(t *testing.T) {
	needRoot(t, "unshare")
	name, _, a := newArea(t)
	holder := childCmd(os.Args[0], []string{"unshare", "--pid", "--fork", "--mount-proc", "--"}, "area-hold", name)
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	waitCount(t, &a.ready, 1, 20*time.Second)
	if err := a.mu.LockTimeout(200 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("LockTimeout while the holder in another namespace lives: %v", err)
	}
	// The holder is the namespace's init, a child of unshare.
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", holder.Process.Pid, holder.Process.Pid))
	inner, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("holder's pid: %q", b)
	}
	done := make(chan error, 1)
	go func() { done <- a.mu.LockTimeout(5 * time.Second) }()
	time.Sleep(50 * time.Millisecond)
	killed := time.Now()
	syscall.Kill(inner, syscall.SIGKILL)
	if err := <-done; !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("after the holder in another namespace died: %v, want ErrOwnerDead", err)
	}
	if el := time.Since(killed); el > 100*time.Millisecond {
		t.Errorf("took the dead holder's lock %v after its death, want at most 100 ms", el)
	}
	a.mu.Unlock()
}
