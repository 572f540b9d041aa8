package examples_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-shm/shm"
)

// The tests build every example (each main package under examples/) once,
// into binDir, and run them as separate processes, as a user would. Where
// there is no go command to build them with (Windows binaries under Wine),
// the environment variable SHM_TEST_EXAMPLES may name a directory holding
// them built beforehand; without it, the tests are skipped.

var binDir string

// noBin says why binDir is empty.
var noBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shm-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, noGo := exec.LookPath("go")
	switch {
	case os.Getenv("SHM_TEST_EXAMPLES") != "":
		binDir = os.Getenv("SHM_TEST_EXAMPLES")
	case noGo != nil:
		noBin = "no go command to build the examples with (" + noGo.Error() + ") and no SHM_TEST_EXAMPLES naming them built"
	default:
		binDir = dir
		out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./...").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running example.
type proc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

func start(t *testing.T, prog string, args ...string) *proc {
	t.Helper()
	if binDir == "" {
		t.Skip(noBin)
	}
	p := &proc{cmd: exec.Command(filepath.Join(binDir, prog), args...), done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
	})
	return p
}

// wait returns how p ended, killing it if it runs longer than d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		p.cmd.Process.Kill()
		t.Fatalf("%s still running after %v:\n%s", p.cmd.Path, d, p.out.String())
		return nil
	}
}

var counter int

func uniqueName(t *testing.T) string {
	counter++
	name := fmt.Sprintf("shmexample-%d-%d", os.Getpid(), counter)
	t.Cleanup(func() { shm.Remove(name) })
	return name
}

func gone(t *testing.T, name string) {
	t.Helper()
	s, err := shm.Open(name, shm.ReadOnly())
	if err == nil {
		s.Close()
		t.Fatalf("segment %s is still there", name)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

func waitExists(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := shm.Open(name, shm.ReadOnly())
		if err == nil {
			s.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s never appeared: %v", name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runPair(t *testing.T, name string, openFirst bool) {
	var args []string
	if name != "some_raw_map" {
		args = []string{"-name", name}
	}
	var c, o *proc
	if openFirst {
		o = start(t, "raw_open", args...)
		time.Sleep(100 * time.Millisecond)
		c = start(t, "raw_create", args...)
	} else {
		c = start(t, "raw_create", args...)
		o = start(t, "raw_open", args...)
	}
	if err := o.wait(t, 20*time.Second); err != nil {
		t.Fatalf("raw_open: %v\n%s", err, o.out.String())
	}
	if err := c.wait(t, 20*time.Second); err != nil {
		t.Fatalf("raw_create: %v\n%s", err, c.out.String())
	}
	want := fmt.Sprintf("Created segment %q: 4096 bytes\n", name)
	if out := c.out.String(); !strings.Contains(out, want) || !strings.HasSuffix(out, "Done\n") {
		t.Fatalf("raw_create printed:\n%s\nwant %q and Done", out, want)
	}
	if out := o.out.String(); !strings.HasSuffix(out, "Done\n") {
		t.Fatalf("raw_open printed:\n%s", out)
	}
	gone(t, name)
}

func TestRawPair(t *testing.T) {
	t.Run("started together", func(t *testing.T) { runPair(t, uniqueName(t), false) })
	t.Run("opener first", func(t *testing.T) { runPair(t, uniqueName(t), true) })
	t.Run("default name", func(t *testing.T) {
		if s, err := shm.Open("some_raw_map", shm.ReadOnly()); err == nil {
			s.Close()
			t.Skip("some_raw_map exists already (another run of the example?): not touching it")
		}
		runPair(t, "some_raw_map", false)
	})
}

func TestRawCreateNobodyComes(t *testing.T) {
	name := uniqueName(t)
	c := start(t, "raw_create", "-name", name, "-timeout", "300ms")
	err := c.wait(t, 20*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("raw_create with nobody coming ended with %v, want exit status 1\n%s", err, c.out.String())
	}
	if !strings.Contains(c.out.String(), "nobody set byte 0 within 300ms") {
		t.Fatalf("raw_create does not say why it failed:\n%s", c.out.String())
	}
	gone(t, name)
}

func TestRawCreateInterrupted(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send on Windows")
	}
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		name := uniqueName(t)
		c := start(t, "raw_create", "-name", name)
		waitExists(t, name)
		time.Sleep(50 * time.Millisecond) // let it reach its wait
		c.cmd.Process.Signal(sig)
		err := c.wait(t, 20*time.Second)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("raw_create after %v ended with %v, want exit status 1\n%s", sig, err, c.out.String())
		}
		gone(t, name)
	}
}

func TestRawCreateNameTaken(t *testing.T) {
	name := uniqueName(t)
	s, err := shm.Create(name, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := start(t, "raw_create", "-name", name)
	err = c.wait(t, 20*time.Second)
	if err == nil || !strings.Contains(c.out.String(), "shm rm "+name) {
		t.Fatalf("raw_create over an existing name: %v\n%s", err, c.out.String())
	}
	if s2, err := shm.Open(name); err != nil || s2.Size() != 100 {
		t.Fatalf("raw_create touched a segment it did not create: %v", err)
	} else {
		s2.Close()
	}
}

// TestQueuePair runs queue_recv and queue_send together, in either order:
// every message arrives, checked, and the segment is gone afterwards.
func TestQueuePair(t *testing.T) {
	for _, sendFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "receiver first", true: "sender first"}[sendFirst], func(t *testing.T) {
			name := uniqueName(t)
			args := []string{"-name", name, "-n", "300000", "-timeout", "20s"}
			var r, s *proc
			if sendFirst {
				s = start(t, "queue_send", args...)
				time.Sleep(100 * time.Millisecond)
				r = start(t, "queue_recv", args...)
			} else {
				r = start(t, "queue_recv", args...)
				s = start(t, "queue_send", args...)
			}
			if err := s.wait(t, 60*time.Second); err != nil {
				t.Fatalf("queue_send: %v\n%s", err, s.out.String())
			}
			if err := r.wait(t, 60*time.Second); err != nil {
				t.Fatalf("queue_recv: %v\n%s", err, r.out.String())
			}
			if out := r.out.String(); !strings.Contains(out, "Received and checked 300000 messages") || !strings.HasSuffix(out, "Done\n") {
				t.Fatalf("queue_recv printed:\n%s", out)
			}
			if out := s.out.String(); !strings.Contains(out, "Sent 300000 messages") || !strings.HasSuffix(out, "Done\n") {
				t.Fatalf("queue_send printed:\n%s", out)
			}
			gone(t, name)
		})
	}
}

// TestQueueRecvNobodyComes: without a sender, queue_recv gives up after its
// timeout, says why, and removes its segment.
func TestQueueRecvNobodyComes(t *testing.T) {
	name := uniqueName(t)
	r := start(t, "queue_recv", "-name", name, "-timeout", "300ms")
	err := r.wait(t, 20*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("queue_recv with nobody sending ended with %v, want exit status 1\n%s", err, r.out.String())
	}
	if !strings.Contains(r.out.String(), "message 0:") {
		t.Fatalf("queue_recv does not say why it failed:\n%s", r.out.String())
	}
	gone(t, name)
}

// TestBroadcast runs broadcast_pub and 3 broadcast_sub together, the
// subscribers first or the publisher first: every subscriber accounts for
// every message (received and checked, or reported lost), all exit 0, and
// the segment is gone afterwards.
func TestBroadcast(t *testing.T) {
	for _, pubFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "subscribers first", true: "publisher first"}[pubFirst], func(t *testing.T) {
			name := uniqueName(t)
			const n = "100000"
			pubArgs := []string{"-name", name, "-n", n, "-subs", "3", "-timeout", "30s"}
			subArgs := []string{"-name", name, "-timeout", "30s"}
			var pub *proc
			var subs []*proc
			if pubFirst {
				pub = start(t, "broadcast_pub", pubArgs...)
				waitExists(t, name)
			}
			for i := 0; i < 3; i++ {
				subs = append(subs, start(t, "broadcast_sub", subArgs...))
			}
			if !pubFirst {
				time.Sleep(100 * time.Millisecond)
				pub = start(t, "broadcast_pub", pubArgs...)
			}
			for _, s := range subs {
				if err := s.wait(t, 60*time.Second); err != nil {
					t.Fatalf("broadcast_sub: %v\n%s", err, s.out.String())
				}
				out := s.out.String()
				if !strings.Contains(out, "of "+n+" published") || !strings.HasSuffix(out, ": Done\n") {
					t.Fatalf("broadcast_sub printed:\n%s", out)
				}
				t.Logf("%s", out)
			}
			if err := pub.wait(t, 60*time.Second); err != nil {
				t.Fatalf("broadcast_pub: %v\n%s", err, pub.out.String())
			}
			if out := pub.out.String(); !strings.Contains(out, "Published "+n+" messages") || !strings.HasSuffix(out, "Done\n") {
				t.Fatalf("broadcast_pub printed:\n%s", out)
			}
			gone(t, name)
		})
	}
}

// TestBroadcastPubNobodyComes: without subscribers, broadcast_pub gives up
// after its timeout, says why, and removes its segment.
func TestBroadcastPubNobodyComes(t *testing.T) {
	name := uniqueName(t)
	p := start(t, "broadcast_pub", "-name", name, "-subs", "2", "-timeout", "300ms")
	err := p.wait(t, 20*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("broadcast_pub with nobody subscribing ended with %v, want exit status 1\n%s", err, p.out.String())
	}
	if !strings.Contains(p.out.String(), "waiting for 2 subscriber(s): 0 subscriber(s) attached after 300ms") {
		t.Fatalf("broadcast_pub does not say why it failed:\n%s", p.out.String())
	}
	gone(t, name)
}
