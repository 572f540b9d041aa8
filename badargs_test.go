package shm

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBadArguments gives every exported function bad arguments: each case
// must return an error matching the sentinel listed, with a message, and
// never panic.
func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.link", nil)
	binary := write("binary.link", []byte{0, 1, 2, 0xff, 0xfe, '\n', 0})
	huge := write("huge.link", bytes.Repeat([]byte("shm-link 1\n"), 100000))
	text := write("text.link", []byte("just some notes\n"))
	subdir := filepath.Join(dir, "a-directory")
	os.Mkdir(subdir, 0o700)
	symlink := filepath.Join(dir, "symlink.link")
	good := filepath.Join(dir, "good.link")
	seg, err := Create(testName(t), 4096, WithLink(good))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if runtime.GOOS != "windows" {
		if err := os.Symlink(good, symlink); err != nil {
			t.Fatal(err)
		}
	}
	// A managed segment that another process truncates to almost nothing.
	m := createManaged(t, testConfig(testName(t)))
	truncated := testName(t)
	tm := createManaged(t, Config{Name: truncated, Size: 4096, Locks: []LockSpec{{LockMutex, 0, 10}}})
	_ = tm
	if runtime.GOOS == "linux" {
		if err := os.Truncate(filepath.Join("/dev/shm", truncated), 40); err != nil {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("x", 256)
	// And one that shrinks after this process mapped it.
	shrunk := testName(t)
	createManaged(t, Config{Name: shrunk, Size: 8192})
	shrunkSeg, err := Open(shrunk)
	if err != nil {
		t.Fatal(err)
	}
	defer shrunkSeg.Close()
	if runtime.GOOS == "linux" {
		if err := os.Truncate(filepath.Join("/dev/shm", shrunk), 0); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"Create empty name ok but size 0", func() error { _, err := Create("", 0); return err }, ErrInvalidSize},
		{"Create negative size", func() error { _, err := Create("x", -1); return err }, ErrInvalidSize},
		{"Create absurd size", func() error { _, err := Create("x", math.MaxInt); return err }, ErrInvalidSize},
		{"Create slash", func() error { _, err := Create("/", 10); return err }, ErrInvalidName},
		{"Create inner slash", func() error { _, err := Create("a/b", 10); return err }, ErrInvalidName},
		{"Create NUL", func() error { _, err := Create("a\x00b", 10); return err }, ErrInvalidName},
		{"Create dot", func() error { _, err := Create(".", 10); return err }, ErrInvalidName},
		{"Create dotdot", func() error { _, err := Create("..", 10); return err }, ErrInvalidName},
		{"Create too long", func() error { _, err := Create(long, 10); return err }, ErrInvalidName},
		{"Create taken", func() error { _, err := Create(seg.Name(), 10); return err }, fs.ErrExist},
		{"Open empty", func() error { _, err := Open(""); return err }, ErrInvalidName},
		{"Open too long", func() error { _, err := Open(long); return err }, ErrInvalidName},
		{"Open missing", func() error { _, err := Open("no-such-segment-here"); return err }, fs.ErrNotExist},
		{"OpenOrCreate zero size", func() error { _, _, err := OpenOrCreate("x", 0); return err }, ErrInvalidSize},
		{"OpenOrCreate bad name", func() error { _, _, err := OpenOrCreate("a/b", 1); return err }, ErrInvalidName},
		{"Remove bad name", func() error { return Remove("") }, ErrInvalidName},
		{"Remove missing", func() error { return Remove("no-such-segment-here") }, fs.ErrNotExist},
		{"OpenLink empty path", func() error { _, err := OpenLink(""); return err }, fs.ErrNotExist},
		{"OpenLink missing", func() error { _, err := OpenLink(filepath.Join(dir, "none")); return err }, fs.ErrNotExist},
		{"OpenLink empty file", func() error { _, err := OpenLink(empty); return err }, ErrCorrupt},
		{"OpenLink binary", func() error { _, err := OpenLink(binary); return err }, ErrCorrupt},
		{"OpenLink huge", func() error { _, err := OpenLink(huge); return err }, ErrCorrupt},
		{"OpenLink text file", func() error { _, err := OpenLink(text); return err }, ErrCorrupt},
		{"OpenLink directory", func() error { _, err := OpenLink(subdir); return err }, ErrCorrupt},
		{"ReadLink binary", func() error { _, err := ReadLink(binary); return err }, ErrCorrupt},
		{"RemoveLink text file", func() error { return RemoveLink(text) }, ErrCorrupt},
		{"OpenManaged raw segment", func() error { _, err := OpenManaged(seg.Name()); return err }, ErrNotManaged},
		{"OpenManagedLink text file", func() error { _, err := OpenManagedLink(text); return err }, ErrCorrupt},
		{"Config.Create bad lock", func() error {
			_, err := Config{Size: 8, Locks: []LockSpec{{LockMutex, 4, 8}}}.Create()
			return err
		}, ErrRange},
		{"Managed.Lock -1", func() error { _, err := m.Lock(-1); return err }, ErrRange},
		{"Managed.RLock 99", func() error { _, err := m.RLock(99); return err }, ErrRange},
		{"Managed.Event 99", func() error { _, err := m.Event(99); return err }, ErrRange},
		{"Managed.LockSpec -1", func() error { _, err := m.LockSpec(-1); return err }, ErrRange},
		{"Managed.EventKind 6", func() error { _, err := m.EventKind(6); return err }, ErrRange},
		{"Managed.LockState 3", func() error { _, err := m.LockState(3); return err }, ErrRange},
		{"Managed.EventState -2", func() error { _, err := m.EventState(-2); return err }, ErrRange},
		{"Managed.MarkConsistent 7", func() error { return m.MarkConsistent(7) }, ErrRange},
		{"Managed.RWMutex of a mutex", func() error { _, err := m.RWMutex(0); return err }, ErrWrongKind},
		{"View too short", func() error { _, err := View[Mutex](make([]byte, 4)); return err }, ErrRange},
		{"View nil", func() error { _, err := View[uint64](nil); return err }, ErrRange},
		{"View misaligned", func() error { _, err := View[Mutex](seg.Bytes()[1:]); return err }, ErrRange},
	}
	if runtime.GOOS != "windows" {
		cases = append(cases,
			struct {
				name string
				call func() error
				want error
			}{"OpenLink symlink", func() error { _, err := OpenLink(symlink); return err }, nil})
	}
	if runtime.GOOS == "linux" {
		cases = append(cases,
			struct {
				name string
				call func() error
				want error
			}{"OpenManaged truncated by another process", func() error { _, err := OpenManaged(truncated); return err }, ErrCorrupt},
			struct {
				name string
				call func() error
				want error
			}{"header read after another process truncated the mapping", func() error {
				_, err := attach(shrunkSeg)
				return err
			}, ErrCorrupt})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panicked: %v", r)
					}
				}()
				err = tc.call()
			}()
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %q does not match %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "shm: ") {
				t.Errorf("error %q does not say it comes from shm", err)
			}
			if n := strings.Count(err.Error(), "shm: "); n != 1 {
				t.Errorf("error %q says %q %d times", err, "shm: ", n)
			}
			t.Log(err)
		})
	}
	if _, err := View[struct{ S string }](seg.Bytes()); err == nil || !strings.Contains(err.Error(), "pointer") {
		t.Errorf("View of a type with a string: %v", err)
	}
}
