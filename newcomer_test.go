package shm

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// What a new user hits first: natural code that once crashed, silently
// broke exclusion, or said something unclear.

type roCfg struct {
	Mu    Mutex
	Ready AutoEvent
	N     int64
}

// TestViewOfReadOnlySegmentRefusesLocks: a View of a type holding locks or
// events on a segment opened ReadOnly is refused (using them would fault);
// plain data is fine.
func TestViewOfReadOnlySegmentRefusesLocks(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	ro, err := Open(name, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := View[roCfg](ro.Bytes()); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("View of a struct with a Mutex on a read-only segment: %v, want fs.ErrPermission", err)
	}
	if _, err := View[[4]RWMutex](ro.Bytes()); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("View of RWMutexes on a read-only segment: %v, want fs.ErrPermission", err)
	}
	if _, err := View[[16]int64](ro.Bytes()); err != nil {
		t.Fatalf("View of plain data on a read-only segment: %v", err)
	}
	if _, _, err := OpenValue[roCfg](name, ReadOnly()); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("OpenValue read-only of a type with locks: %v", err)
	}
	if _, err := View[roCfg](seg.Bytes()); err != nil {
		t.Fatalf("View on the read-write mapping: %v", err)
	}
	if _, err := ro.WriteAt([]byte("x"), 0); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("WriteAt on a read-only segment: %v, want fs.ErrPermission", err)
	}
}

func init() {
	// args: name: lock the area's mutex, say so, wait to be killed.
	registerChild("hold-mutex", func(args []string) error {
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

// TestStrayUnlockFromAnotherProcess: a process cannot release a mutex
// another process holds (once a stray Unlock did, silently).
func TestStrayUnlockFromAnotherProcess(t *testing.T) {
	name, _, a := newArea(t)
	c := startChild(t, "hold-mutex", name)
	waitCount(t, &a.ready, 1, 20*time.Second)
	a.mu.Unlock() // not ours: does nothing
	a.mu.Unlock()
	if a.mu.TryLock() {
		a.mu.Unlock()
		t.Fatal("a stray Unlock in this process released the lock another process holds")
	}
	if got := a.mu.Owner(); got != c.cmd.Process.Pid {
		t.Fatalf("Owner() = %d, want the holder %d", got, c.cmd.Process.Pid)
	}
	a.mu.MarkConsistent() // not ours either: does nothing, harmlessly
	c.kill()
}

// TestConflictingOptionsRefused: a Config and options that say different
// things are an error, not one of them silently.
func TestConflictingOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	c := Config{Name: testName(t), Size: 64, Link: filepath.Join(dir, "a.link"), Mode: 0o600}
	if m, err := c.Create(WithLink(filepath.Join(dir, "b.link"))); !errors.Is(err, ErrConflict) {
		if err == nil {
			m.Close()
		}
		t.Fatalf("Config.Link and another WithLink: %v, want ErrConflict", err)
	}
	if m, err := c.Create(WithMode(0o644)); !errors.Is(err, ErrConflict) {
		if err == nil {
			m.Close()
		}
		t.Fatalf("Config.Mode and another WithMode: %v, want ErrConflict", err)
	}
	if s, err := Create(testName(t), 64, WithMode(0o600), WithMode(0o640)); !errors.Is(err, ErrConflict) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("two different WithMode: %v, want ErrConflict", err)
	}
	// The same thing twice is no conflict.
	m, err := c.Create(WithLink(c.Link), WithMode(0o600))
	if err != nil {
		t.Fatalf("Config and options that agree: %v", err)
	}
	m.Close()
}

// TestEventsCarryVetsCopyCheck: go vet reports a copy of an event (the copy
// is private: Set on it reaches nobody), as it does for Mutex.
func TestEventsCarryVetsCopyCheck(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil || runtime.GOOS == "windows" {
		t.Skip("needs the go command")
	}
	root, _ := os.Getwd()
	dir := t.TempDir()
	mod := "module vetcheck\n\ngo 1.26.0\n\nrequire github.com/go-shm/shm v0.0.0\n\nreplace github.com/go-shm/shm => " + root + "\n"
	src := `package vetcheck

import "github.com/go-shm/shm"

type S struct {
	A  shm.AutoEvent
	M  shm.ManualEvent
	BA shm.BusyAutoEvent
	BM shm.BusyManualEvent
	RW shm.RWMutex
}

func F(s *S) {
	a := s.A
	a.Set()
	m := s.M
	m.Set()
	ba := s.BA
	ba.Set()
	bm := s.BM
	bm.Set()
	rw := s.RW
	rw.Lock()
}
`
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644)
	os.WriteFile(filepath.Join(dir, "v.go"), []byte(src), 0o644)
	sum, _ := os.ReadFile(filepath.Join(root, "go.sum"))
	os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)
	cmd := exec.Command(goCmd, "vet", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, _ := cmd.CombinedOutput()
	for _, v := range []string{"shm.AutoEvent", "shm.ManualEvent", "shm.BusyAutoEvent", "shm.BusyManualEvent", "shm.RWMutex"} {
		if !strings.Contains(string(out), "copies lock value") || !strings.Contains(string(out), v) {
			t.Errorf("go vet does not report a copy of %s:\n%s", v, out)
		}
	}
}

// TestErrorsSayWhat: the errors a newcomer provokes name the segment, the
// lock and the holder, and say what is wrong in words.
func TestErrorsSayWhat(t *testing.T) {
	c := Config{Name: testName(t), Size: 64, Locks: []LockSpec{{LockMutex, 0, 64}}}
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	g, err := m.Lock(0)
	if err != nil {
		t.Fatal(err)
	}
	// Another goroutine of this process: the holder is this process.
	done := make(chan error, 1)
	go func() { _, err := m.LockTimeout(0, 10*time.Millisecond); done <- err }()
	err = <-done
	g.Unlock()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("LockTimeout: %v", err)
	}
	for _, want := range []string{"lock 0", c.Name, "held by pid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout error %q does not say %q", err, want)
		}
	}
	if strings.Count(err.Error(), "shm: ") != 1 {
		t.Errorf("error %q repeats its prefix", err)
	}
	_, err = OpenLink("/etc/passwd")
	if !errors.Is(err, ErrNotLink) || !errors.Is(err, ErrCorrupt) || strings.Contains(err.Error(), "corrupt shared state") {
		t.Errorf("OpenLink of /etc/passwd: %v, want it to say it is not a link file (ErrNotLink)", err)
	}
	if _, err := (Config{Size: 64, Locks: []LockSpec{{LockKind(9), 0, 8}}}).Create(); !errors.Is(err, ErrWrongKind) {
		t.Errorf("an unknown LockKind: %v, want ErrWrongKind", err)
	}
}

// TestConveniences: typed segments, an init hook, the link path, a
// readable Process, IsOwner after Close, and io.ReaderAt/WriterAt.
func TestConveniences(t *testing.T) {
	type frame struct {
		Mu     Mutex
		Width  int64
		Height int64
	}
	name := testName(t)
	seg, f, err := CreateValue[frame](name, func(f *frame) { f.Width, f.Height = 640, 480 })
	if err != nil {
		t.Fatal(err)
	}
	if f.Width != 640 || seg.Size() < 24 {
		t.Fatalf("CreateValue: width %d, size %d", f.Width, seg.Size())
	}
	seg2, f2, err := OpenValue[frame](name)
	if err != nil {
		t.Fatal(err)
	}
	if f2.Height != 480 {
		t.Fatalf("OpenValue sees height %d", f2.Height)
	}
	seg2.Close()

	if _, err := seg.WriteAt([]byte("abc"), 8); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 3)
	if n, err := seg.ReadAt(p, 8); n != 3 || err != nil || string(p) != "abc" {
		t.Fatalf("ReadAt: %d %v %q", n, err, p)
	}
	if n, err := seg.ReadAt(make([]byte, 8), int64(seg.Size()-4)); n != 4 || err != io.EOF {
		t.Fatalf("ReadAt past the end: %d, %v", n, err)
	}
	if _, err := seg.WriteAt(make([]byte, 8), int64(seg.Size()-4)); !errors.Is(err, ErrRange) {
		t.Fatalf("WriteAt past the end: %v", err)
	}
	if !seg.IsOwner() {
		t.Fatal("creator is not owner")
	}
	seg.Close()
	if seg.IsOwner() {
		t.Error("IsOwner is true after Close")
	}
	if _, err := seg.ReadAt(p, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v", err)
	}

	// Config.Init fills the data before an opener can see it.
	c := Config{Name: testName(t), Size: 64, Init: func(d []byte) { copy(d, "ready") }}
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	o, err := OpenManaged(c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if string(o.Data()[:5]) != "ready" {
		t.Errorf("opener sees %q", o.Data()[:5])
	}
	if got := o.Creator().String(); got != "pid "+strconv.Itoa(os.Getpid())+" (alive)" {
		t.Errorf("Process.String() = %q", got)
	}
	if (Process{}).String() != "none" {
		t.Errorf("zero Process prints %q", Process{}.String())
	}
	o.Close()

	dir := t.TempDir()
	link := filepath.Join(dir, "x.link")
	ls, err := Create(testName(t), 64, WithLink(link))
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	if ls.LinkPath() != link {
		t.Errorf("LinkPath() = %q, want %q", ls.LinkPath(), link)
	}
	lo, err := OpenLink(link)
	if err != nil {
		t.Fatal(err)
	}
	if lo.LinkPath() != link {
		t.Errorf("LinkPath() of an OpenLink = %q", lo.LinkPath())
	}
	lo.Close()
}
