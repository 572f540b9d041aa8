package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-shm/shm"
)

// The tests build the real command once and run it as a user would. Where
// there is no go command to build it with (Windows binaries under Wine), the
// environment variable SHM_TEST_CLI may name one built beforehand; without
// it, the tests that run the command are skipped.

var bin string

// noBin says why bin is empty.
var noBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shm-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, noGo := exec.LookPath("go")
	switch {
	case os.Getenv("SHM_TEST_CLI") != "":
		bin = os.Getenv("SHM_TEST_CLI")
	case noGo != nil:
		noBin = "no go command to build shm with (" + noGo.Error() + ") and no SHM_TEST_CLI naming a built one"
	default:
		bin = filepath.Join(dir, "shm")
		if runtime.GOOS == "windows" {
			bin += ".exe"
		}
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 && runtime.GOOS == "linux" {
		ents, _ := os.ReadDir("/dev/shm")
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), namePrefix()) {
				fmt.Fprintf(os.Stderr, "FAIL: the tests left %s in /dev/shm\n", e.Name())
				code = 1
			}
		}
	}
	os.Exit(code)
}

// result is how a run of the command ended.
type result struct {
	code           int
	stdout, stderr string
}

func shmCmd(t *testing.T, args ...string) result {
	t.Helper()
	if bin == "" {
		t.Skip(noBin)
	}
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run shm %q: %v", args, err)
	}
	return r
}

func (r result) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	if code != 0 && r.stderr == "" {
		t.Fatal("failed without a word on stderr")
	}
	if code == 0 && r.stderr != "" {
		t.Fatalf("succeeded but wrote to stderr:\n%s", r.stderr)
	}
}

func namePrefix() string { return fmt.Sprintf("shmclitest-%d-", os.Getpid()) }

var counter atomic.Int64

// newSegment creates a segment that is gone when the test ends.
func newSegment(t *testing.T, size int, opts ...shm.Option) *shm.Segment {
	t.Helper()
	name := fmt.Sprintf("%s%d", namePrefix(), counter.Add(1))
	s, err := shm.Create(name, size, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		shm.Remove(name)
	})
	return s
}

func gone(name string) bool {
	s, err := shm.Open(name, shm.ReadOnly())
	if err == nil {
		s.Close()
	}
	return errors.Is(err, fs.ErrNotExist)
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := shmCmd(t, args...)
		r.want(t, 0)
		for _, c := range []string{"ls", "inspect [-n BYTES] NAME", "rm NAME...", "--link PATH", "Usage:"} {
			if !strings.Contains(r.stdout, c) {
				t.Errorf("shm %s does not mention %q:\n%s", args[0], c, r.stdout)
			}
		}
	}
	for _, c := range []string{"ls", "inspect", "rm"} {
		r := shmCmd(t, "help", c)
		r.want(t, 0)
		if !strings.HasPrefix(r.stdout, "Usage: shm "+c) {
			t.Errorf("shm help %s:\n%s", c, r.stdout)
		}
		r = shmCmd(t, c, "-h")
		r.want(t, 0)
		if !strings.HasPrefix(r.stdout, "Usage: shm "+c) {
			t.Errorf("shm %s -h:\n%s", c, r.stdout)
		}
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"ls", "extra"}, "ls takes no arguments"},
		{[]string{"inspect"}, "inspect takes one segment name"},
		{[]string{"inspect", "a", "b"}, "inspect takes one segment name"},
		{[]string{"inspect", "-n", "-1", "x"}, "-n must not be negative"},
		{[]string{"inspect", "-bogus", "x"}, "flag provided but not defined"},
		{[]string{"rm"}, "rm needs at least one name"},
	} {
		r := shmCmd(t, tc.args...)
		r.want(t, 2)
		if !strings.Contains(r.stderr, tc.says) || r.stdout != "" {
			t.Errorf("shm %q: stderr %q does not say %q (stdout %q)", tc.args, r.stderr, tc.says, r.stdout)
		}
	}
}

func TestLs(t *testing.T) {
	if runtime.GOOS != "linux" {
		r := shmCmd(t, "ls")
		r.want(t, 1)
		if !strings.Contains(r.stderr, "not possible on "+runtime.GOOS) {
			t.Fatalf("shm ls on %s: %q does not say that listing is impossible", runtime.GOOS, r.stderr)
		}
		return
	}
	a := newSegment(t, 4096, shm.WithMode(0o640))
	b := newSegment(t, 12345)
	// Things in /dev/shm that are not segments are not listed.
	dir := filepath.Join("/dev/shm", fmt.Sprintf("%s%d", namePrefix(), counter.Add(1)))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })

	r := shmCmd(t, "ls")
	r.want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !regexp.MustCompile(`^SIZE\s+MODE\s+UID\s+MANAGED\s+CREATOR\s+MAPS\s+NAME$`).MatchString(lines[0]) {
		t.Fatalf("header %q", lines[0])
	}
	uid := os.Getuid()
	for _, want := range []string{
		fmt.Sprintf(`^4096\s+-rw-r-----\s+%d\s+no\s+-\s+1\s+%s$`, uid, regexp.QuoteMeta(a.Name())), // mapped by this process
		fmt.Sprintf(`^12345\s+-rw-------\s+%d\s+no\s+-\s+1\s+%s$`, uid, regexp.QuoteMeta(b.Name())),
	} {
		if !regexp.MustCompile(`(?m)` + want).MatchString(r.stdout) {
			t.Errorf("ls has no line matching %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, filepath.Base(dir)) {
		t.Errorf("ls lists a directory:\n%s", r.stdout)
	}
}

func TestInspect(t *testing.T) {
	s := newSegment(t, 8192, shm.WithMode(0o604))
	copy(s.Bytes(), "inspect me\x00\xff")
	for _, name := range []string{s.Name(), "/" + s.Name()} {
		r := shmCmd(t, "inspect", name)
		r.want(t, 0)
		for _, want := range []string{
			"name:    " + s.Name() + "\n",
			"size:    8192 bytes\n",
			"managed: no\n",
			"first 64 bytes:\n",
			"00000000  69 6e 73 70 65 63 74 20  6d 65 00 ff 00 00 00 00  |inspect me......|",
			"00000030  00",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("inspect %s does not say %q:\n%s", name, want, r.stdout)
			}
		}
		if runtime.GOOS == "linux" {
			for _, want := range []string{"mode:    -rw----r--\n", fmt.Sprintf("owner:   uid %d\n", os.Getuid())} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("inspect %s does not say %q:\n%s", name, want, r.stdout)
				}
			}
		}
	}
	r := shmCmd(t, "inspect", "-n", "4", s.Name())
	r.want(t, 0)
	if !strings.Contains(r.stdout, "first 4 bytes:\n00000000  69 6e 73 70  ") || strings.Contains(r.stdout, "65 63") {
		t.Errorf("inspect -n 4:\n%s", r.stdout)
	}
	if string(s.Bytes()[:10]) != "inspect me" {
		t.Fatal("inspect changed the segment")
	}

	missing := namePrefix() + "missing"
	r = shmCmd(t, "inspect", missing)
	r.want(t, 1)
	notFound := "no such file" // ENOENT
	if runtime.GOOS == "windows" {
		notFound = fs.ErrNotExist.Error() // what the Windows port says for ERROR_FILE_NOT_FOUND
	}
	if !strings.Contains(r.stderr, missing) || !strings.Contains(r.stderr, notFound) {
		t.Errorf("inspect of a missing segment: %q", r.stderr)
	}
	r = shmCmd(t, "inspect", "a/b")
	r.want(t, 1)
	if !strings.Contains(r.stderr, "'/' is allowed only as the first byte") {
		t.Errorf("inspect of a bad name: %q", r.stderr)
	}
}

func TestRm(t *testing.T) {
	a := newSegment(t, 4096)
	b := newSegment(t, 4096)
	r := shmCmd(t, "rm", a.Name(), "/"+b.Name())
	r.want(t, 0)
	if !gone(a.Name()) || !gone(b.Name()) {
		t.Fatal("rm left a segment")
	}
	a.Bytes()[0] = 1 // mappings outlive the name

	c := newSegment(t, 4096)
	missing := namePrefix() + "missing"
	r = shmCmd(t, "rm", missing, c.Name(), "bad/name")
	r.want(t, 1)
	if !gone(c.Name()) {
		t.Fatal("rm stopped at the first error")
	}
	for _, want := range []string{missing, "bad/name", "2 of 3 not removed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("rm errors %q do not mention %q", r.stderr, want)
		}
	}
}

func TestRmLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "seg.link")
	s := newSegment(t, 4096, shm.WithLink(link))
	r := shmCmd(t, "rm", "--link", link)
	r.want(t, 0)
	if !gone(s.Name()) {
		t.Fatal("rm --link left the segment")
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rm --link left the link: %v", err)
	}
	// A file that is not a link is left alone.
	other := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(other, []byte("not a link\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = shmCmd(t, "rm", "--link", other)
	r.want(t, 1)
	if !strings.Contains(r.stderr, "not a shm link file") {
		t.Errorf("rm --link of a text file: %q", r.stderr)
	}
	if b, err := os.ReadFile(other); err != nil || string(b) != "not a link\n" {
		t.Fatalf("rm --link touched a file that is not a link: %v", err)
	}
}

func TestIsManaged(t *testing.T) {
	header := make([]byte, headerPeek) // a header (128 bytes since layout 3) and more
	copy(header, "GOSHM\x00\x00\x01")
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{nil, false},
		{[]byte{}, false},
		{make([]byte, 64), false},
		{[]byte("GOSHM\x00\x00\x01"), false}, // shorter than a header
		{bytes.Repeat([]byte{0xff}, 4096), false},
		{header, true},
	} {
		if got := isManaged(tc.b); got != tc.want {
			t.Errorf("isManaged(%q...) = %v, want %v", tc.b[:min(len(tc.b), 8)], got, tc.want)
		}
	}
}

// newManaged creates a managed segment that is gone when the test ends.
func newManaged(t *testing.T) *shm.Managed {
	t.Helper()
	name := fmt.Sprintf("%s%d", namePrefix(), counter.Add(1))
	m, err := shm.Config{Name: name, Size: 256}.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		shm.Remove(name)
	})
	return m
}

func TestManagedIsOurs(t *testing.T) {
	m := newManaged(t)
	r := shmCmd(t, "inspect", m.Name())
	r.want(t, 0)
	if !strings.Contains(r.stdout, "managed: yes\n") {
		t.Errorf("inspect of a managed segment:\n%s", r.stdout)
	}
	if runtime.GOOS != "linux" {
		return
	}
	r = shmCmd(t, "ls")
	r.want(t, 0)
	if !regexp.MustCompile(`(?m)\s+yes\s+pid \d+ \(alive\)\s+\d+\s+` + regexp.QuoteMeta(m.Name()) + `$`).MatchString(r.stdout) {
		t.Errorf("ls does not call the managed segment ours:\n%s", r.stdout)
	}
}

func TestHelpHidesInternalFlags(t *testing.T) {
	r := shmCmd(t, "help", "demo")
	r.want(t, 0)
	if regexp.MustCompile(`(?m)^\s+-(worker|index)\b|internal:`).MatchString(r.stdout) {
		t.Errorf("help demo shows internal flags:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "-workers") {
		t.Errorf("help demo lacks -workers:\n%s", r.stdout)
	}
}

func TestInspectQueue(t *testing.T) {
	name := fmt.Sprintf("%s%d", namePrefix(), counter.Add(1))
	conf := shm.Config{Name: name, Size: 64}
	conf.AddQueue(4096, 1000)
	m, err := conf.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q, err := m.Queue(0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	p, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, n := range []int{10, 100, 0} {
		if err := p.Send(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := p.Claim(5)
	if err != nil {
		t.Fatal(err)
	}
	cl.Abort()
	msg, err := c.Receive()
	if err != nil {
		t.Fatal(err)
	}
	c.Release(msg) // the first one: 32 bytes with its header
	r := shmCmd(t, "inspect", "-n", "0", name)
	r.want(t, 0)
	self := os.Getpid()
	for _, want := range []string{
		"data:    64 bytes, 0 lock(s), 0 event(s), 1 queue(s)\n",
		// 32 + 128 + 16 + 32 (the aborted claim) bytes of records
		fmt.Sprintf("queue 0: 4096 bytes (messages up to 1000); 2 message(s), 176 byte(s) in flight; head 32, tail 208; consumer pid %d; producing: pid %d; 1 aborted\n", self, self),
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, r.stdout)
		}
	}
	for i := 0; i < 2; i++ {
		if msg, err = c.Receive(); err != nil {
			t.Fatal(err)
		}
	}
	c.Release(msg)
	if _, err := c.TryReceive(); !errors.Is(err, shm.ErrEmpty) { // past the aborted record
		t.Fatal(err)
	}
	r = shmCmd(t, "inspect", "-n", "0", name)
	r.want(t, 0)
	want := fmt.Sprintf("queue 0: 4096 bytes (messages up to 1000); 0 message(s), 0 byte(s) in flight; head 208, tail 208; consumer pid %d; producing: pid %d; 1 aborted\n", self, self)
	if !strings.Contains(r.stdout, want) {
		t.Errorf("inspect lacks %q:\n%s", want, r.stdout)
	}
}

// TestInspectLogAndCell: inspect shows a log's writer, messages and
// registered readers with their lag, and a cell's version and writer.
func TestInspectLogAndCell(t *testing.T) {
	name := fmt.Sprintf("%s%d", namePrefix(), counter.Add(1))
	conf := shm.Config{Name: name, Size: 64}
	conf.AddLog(4096, 400)
	conf.AddCell(16)
	m, err := conf.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Reader(shm.LogOldest)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 100, 0} {
		if err := w.Append(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1000)
	if _, err := r.Copy(buf); err != nil { // the first: 32 bytes with its header
		t.Fatal(err)
	}
	c, err := m.Cell(0)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := c.Writer()
	if err != nil {
		t.Fatal(err)
	}
	cw.Store(make([]byte, 16))
	cw.Store(make([]byte, 16))
	res := shmCmd(t, "inspect", "-n", "0", name)
	res.want(t, 0)
	self := os.Getpid()
	for _, want := range []string{
		"data:    64 bytes, 0 lock(s), 0 event(s), 0 queue(s), 1 log(s), 1 cell(s)\n",
		// 32 + 128 + 16 bytes of records
		fmt.Sprintf("log 0:   4096 bytes (messages up to 400); 3 message(s) appended; head 0, tail 176; writer pid %d; 1 registered reader(s)\n", self),
		fmt.Sprintf("  reader pid %d: 2 message(s) behind (144 bytes), 0 lost\n", self),
		fmt.Sprintf("cell 0:  16 bytes; version 2; writer pid %d\n", self),
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, res.stdout)
		}
	}
}
