package shm

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The uncontended paths make no system call. This is counted for real: a
// child process runs the operations in a loop on one OS thread between two
// marker system calls (getpgid of PIDs that cannot exist), under
// strace -f, and the test counts the system calls that thread made between
// the markers. Not counted: signals the runtime sends the thread to preempt
// it and the return from their handler, and the runtime's own futex calls
// (FUTEX_*_PRIVATE) that may follow; this package's futex calls are never
// private, since they work between processes.

const (
	syscallMarkStart = 987654321
	syscallMarkEnd   = 987654322
	syscallLoops     = 100000
	syscallChunks    = 20
)

func init() {
	registerChild("syscall-loop", func(args []string) error {
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		p, err := View[allocPrims](seg.Bytes())
		if err != nil {
			return err
		}
		q, err := AttachQueue(seg.Bytes()[4096:])
		if err != nil {
			return err
		}
		defer q.Close()
		qc, err := q.Consumer()
		if err != nil {
			return err
		}
		qp, err := q.Producer()
		if err != nil {
			return err
		}
		defer qp.Close()
		msg, buf := make([]byte, 64), make([]byte, 64)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		runtime.LockOSThread()
		loop := func(n int) {
			for i := 0; i < n; i++ {
				p.mu.Lock()
				p.mu.Unlock()
				if p.mu.TryLock() {
					p.mu.Unlock()
				}
				p.mu.LockTimeout(time.Minute)
				p.mu.Unlock()
				p.mu.LockContext(ctx)
				p.mu.Unlock()
				p.rw.RLock()
				p.rw.RUnlock()
				if p.rw.TryRLock() {
					p.rw.RUnlock()
				}
				p.rw.Lock()
				p.rw.Unlock()
				p.ae.Set()
				p.ae.Wait()
				p.ae.Set()
				p.ae.WaitTimeout(time.Minute)
				p.ae.Set()
				p.ae.Reset()
				p.me.Set()
				p.me.WaitContext(ctx)
				p.me.Reset()
				p.bae.Set()
				p.bae.Wait()
				p.bme.Set()
				p.bme.Wait()
				p.bme.Reset()
				// The queue, while neither side sleeps: every producer and
				// consumer call.
				if c, err := q.Claim(64); err == nil {
					c.Commit()
				}
				q.Send(msg)
				q.TrySend(msg)
				q.SendTimeout(msg, time.Minute)
				qp.Send(msg)
				if c, err := qp.TryClaim(8); err == nil {
					c.Abort()
				}
				if m, err := qc.Receive(); err == nil {
					qc.Release(m)
				}
				qc.TryCopy(buf)
				qc.CopyContext(ctx, buf)
				var last Message
				for j := 0; j < 2; j++ {
					if m, err := qc.ReceiveTimeout(time.Minute); err == nil {
						last = m
					}
				}
				qc.Release(last)
				qc.TryReceive() // the aborted record, then empty
			}
		}
		loop(1000) // first-use work, if any, happens before the count
		for i := 0; i < syscallChunks; i++ {
			// A goroutine that runs for 10 ms is preempted by a signal, after
			// which the runtime may wake its other threads: yield between
			// short chunks so that this rarely happens inside one.
			runtime.Gosched()
			unix.Getpgid(syscallMarkStart)
			loop(syscallLoops / syscallChunks)
			unix.Getpgid(syscallMarkEnd)
		}
		return nil
	})
}

func TestUncontendedNoSyscalls(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed: cannot count system calls")
	}
	name := testName(t)
	seg, err := Create(name, 4096+QueueSize(1024, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if _, err := FormatQueue(seg.Bytes()[4096:], 1024, 0, 0); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "strace.out")
	cmd := exec.Command(strace, "-f", "-qq", "-o", out, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=syscall-loop", childArgsEnv+`=["`+name+`"]`)
	if msg, err := cmd.CombinedOutput(); err != nil {
		if strings.Contains(string(msg), "ptrace") {
			t.Skipf("strace cannot trace here: %s", msg)
		}
		t.Fatalf("strace: %v\n%s", err, msg)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	startMark := "getpgid(" + strconv.Itoa(syscallMarkStart)
	endMark := "getpgid(" + strconv.Itoa(syscallMarkEnd)
	var tid string // the thread of the loop
	in := false    // between markers
	chunks, onThread, signals, runtimeFutex, others := 0, 0, 0, 0, 0
	var calls []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, rest, _ := strings.Cut(sc.Text(), " ")
		rest = strings.TrimSpace(rest)
		switch {
		case strings.HasPrefix(rest, startMark):
			tid, in = id, true
		case !in:
		case id == tid && strings.HasPrefix(rest, endMark):
			in = false
			chunks++
		case strings.HasPrefix(rest, "<..."), strings.HasPrefix(rest, "+++"):
			// The end of a call already counted; an exit.
		case id != tid:
			others++
		case strings.HasPrefix(rest, "---"), strings.HasPrefix(rest, "rt_sigreturn("):
			signals++
		case strings.HasPrefix(rest, "futex(") && strings.Contains(rest, "_PRIVATE"):
			runtimeFutex++
		default:
			onThread++
			if len(calls) < 10 {
				calls = append(calls, rest)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if chunks != syscallChunks {
		t.Fatalf("found %d of the %d marked chunks in the strace output", chunks, syscallChunks)
	}
	t.Logf("%d operations (lock, unlock, set, wait, reset, queue calls; %d loops of %d): %d system calls by them, "+
		"and %d signals (preemption), %d runtime futex calls on their thread, %d calls on the runtime's other threads",
		syscallLoops*syscallOpsPerLoop, syscallLoops, syscallOpsPerLoop, onThread, signals, runtimeFutex, others)
	if onThread != 0 {
		t.Errorf("the uncontended operations made %d system calls: %q", onThread, calls)
	}
}

// syscallOpsPerLoop is how many lock, unlock, set, wait and reset calls
// (28) and queue calls (16) one loop of the syscall-loop child makes.
const syscallOpsPerLoop = 28 + 16
