package shm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-shm/shm/internal/owner"
)

func init() {
	registerChild("link-hold", childLinkHold)
}

// childLinkHold (args: name, link, dir) creates the segment with a link
// file, writes into it, reports "ready" and waits to be killed.
func childLinkHold(args []string) error {
	name, link, dir := args[0], args[1], args[2]
	s, err := Create(name, 4096, WithLink(link))
	if err != nil {
		return err
	}
	copy(s.Bytes(), "left by a dead creator")
	if err := report(dir, "ready", "ready"); err != nil {
		return err
	}
	time.Sleep(time.Minute)
	return errors.New("was not killed")
}

// waitReport waits for dir/result-id and returns it.
func waitReport(t *testing.T, dir, id string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "result-"+id))
		if err == nil {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report %q", id)
		}
		time.Sleep(time.Millisecond)
	}
}

// killedCreator starts a process that creates name with a link file at
// link, then kills it with SIGKILL, leaving an orphaned segment and a link
// whose creator is dead. On Windows a mapping dies with its last handle, so
// there this process keeps the segment open across the kill, as a surviving
// user would, and returns it (closed when the test ends); elsewhere it
// returns nil.
func killedCreator(t *testing.T, name, link string) *Segment {
	t.Helper()
	dir := t.TempDir()
	c := startChild(t, "link-hold", name, link, dir)
	waitReport(t, dir, "ready")
	var keeper *Segment
	if runtime.GOOS == "windows" {
		var err error
		if keeper, err = Open(name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { keeper.Close() })
	}
	c.kill()
	return keeper
}

func TestLinkCreateRace(t *testing.T) {
	link := filepath.Join(t.TempDir(), "race.link")
	var names []string
	winner := raceCreators(t, 4, func(dir string, i int, name string) []string {
		n := name + "-" + strconv.Itoa(i) // one segment name per creator
		t.Cleanup(func() { Remove(n) })
		names = append(names, n)
		return []string{dir, strconv.Itoa(i), n, link}
	})
	// The winner's Close removed its segment and link; the losers left none.
	for i, n := range names {
		if exists(t, n) {
			t.Errorf("creator %d (winner %d) left segment %s", i, winner, n)
		}
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("link left behind: %v", err)
	}
	leftTemps(t, filepath.Dir(link))
}

// leftTemps fails if dir holds anything but the test's own files.
func leftTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("temporary file left beside the link: %s", e.Name())
		}
	}
}

func TestLinkLiveIsKept(t *testing.T) {
	link := filepath.Join(t.TempDir(), "live.link")
	name := testName(t)
	s := mustCreate(t, name, 4096, WithLink(link))
	before, _ := os.ReadFile(link)
	other := testName(t)
	s2, err := Create(other, 4096, WithLink(link))
	if err == nil {
		s2.Close()
		t.Fatal("Create over a live link succeeded")
	}
	// quote: errors name paths Go-quoted (a Windows path's '\' doubled).
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), quote(link)) {
		t.Fatalf("Create over a live link: %v, want fs.ErrExist naming the path", err)
	}
	if exists(t, other) {
		t.Fatal("a Create that lost the link left its segment")
	}
	after, _ := os.ReadFile(link)
	if !bytes.Equal(before, after) {
		t.Fatal("a losing Create changed the live link")
	}
	if !exists(t, s.Name()) {
		t.Fatal("the live segment is gone")
	}
	// Same name and same link: the name is taken.
	if _, err := Create(name, 4096, WithLink(link)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create of name and link: %v, want fs.ErrExist", err)
	}
}

func TestLinkStaleSegmentGone(t *testing.T) {
	link := filepath.Join(t.TempDir(), "stale.link")
	name := testName(t)
	s := mustCreate(t, name, 4096, WithLink(link))
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	o, err := OpenLink(link)
	if err == nil {
		o.Close()
		t.Fatal("OpenLink of a link whose segment is gone succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("OpenLink of a stale link: %v, want fs.ErrNotExist saying stale", err)
	}
	// Its creator is alive, but the link is stale: Create replaces it.
	other := testName(t)
	n := mustCreate(t, other, 8192, WithLink(link))
	o, err = OpenLink(link)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Name() != other || o.Size() != 8192 || o.Orphaned() {
		t.Fatalf("OpenLink after replacement: %s size %d orphaned %v", o.Name(), o.Size(), o.Orphaned())
	}
	// The old owner's Close leaves the new link alone.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err := ReadLink(link); err != nil || l.Name != other {
		t.Fatalf("old owner's Close touched the replacement link: %+v, %v", l, err)
	}
	n.Close()
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("new owner's Close left the link: %v", err)
	}
}

func TestLinkCreatorKilled(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		sameName bool // the replacement uses the orphan's name
	}{
		{"replace with a new name", false},
		{"replace with the same name", true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "dead.link")
			orphan := testName(t)
			keeper := killedCreator(t, orphan, link)

			l, err := ReadLink(link)
			if err != nil {
				t.Fatal(err)
			}
			if l.Name != orphan || l.PID == 0 || l.PID == os.Getpid() {
				t.Fatalf("link says %+v", l)
			}
			if (runtime.GOOS == "linux" || runtime.GOOS == "windows") && l.CreatorAlive() {
				t.Fatal("CreatorAlive is true for a killed process")
			}
			o, err := OpenLink(link)
			if err != nil {
				t.Fatalf("OpenLink of a dead creator's link: %v", err)
			}
			if !o.Orphaned() {
				t.Error("Orphaned() is false for a killed creator")
			}
			if got := string(o.Bytes()[:22]); got != "left by a dead creator" {
				t.Errorf("orphan holds %q", got)
			}
			o.Close()
			if !exists(t, orphan) {
				t.Fatal("closing a non-owning opener removed the orphan")
			}

			name := testName(t)
			if tc.sameName {
				name = orphan
				if keeper != nil {
					// Windows: the name is taken until its last handle closes.
					keeper.Close()
				}
			}
			s := mustCreate(t, name, 4096, WithLink(link))
			if string(s.Bytes()[:4]) != "\x00\x00\x00\x00" {
				t.Fatal("the replacement segment is not new")
			}
			if !tc.sameName && exists(t, orphan) {
				t.Fatal("replacing the link left the dead creator's segment")
			}
			n, err := OpenLink(link)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.Name() != name || n.Orphaned() {
				t.Fatalf("the link now names %q (orphaned %v), want %q", n.Name(), n.Orphaned(), name)
			}
		})
	}
}

// TestLinkNotALink puts all sorts of things at a link path: none is
// followed, parsed as a link, or replaced, and nothing panics.
func TestLinkNotALink(t *testing.T) {
	dir := t.TempDir()
	target := testName(t)
	valid := filepath.Join(dir, "valid.link")
	mustCreate(t, target, 4096, WithLink(valid))
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	for _, tc := range []struct {
		desc string
		make func(p string) error
		want string // in OpenLink's error
	}{
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o600) }, "not a shm link file"},
		{"binary", func(p string) error { return os.WriteFile(p, binary, 0o600) }, "not a shm link file"},
		{"huge", func(p string) error { return os.WriteFile(p, bytes.Repeat([]byte("shm-link 2\n"), 1<<17), 0o600) }, "larger than"},
		{"text", func(p string) error { return os.WriteFile(p, []byte("hello\n"), 0o600) }, "not a shm link file"},
		{"bad name", func(p string) error {
			return os.WriteFile(p, []byte("shm-link 2\nname \"a/b\"\npid 1\nowner 1\n"), 0o600)
		}, "'/' is allowed only"},
		{"unquoted name", func(p string) error {
			return os.WriteFile(p, []byte("shm-link 2\nname "+target+"\npid 1\nowner 1\n"), 0o600)
		}, "not quoted"},
		{"bad pid", func(p string) error {
			return os.WriteFile(p, []byte("shm-link 2\nname \"x\"\npid -1\nowner 1\n"), 0o600)
		}, "bad pid"},
		{"symlink to a valid link", func(p string) error { return os.Symlink(valid, p) }, "symbolic link"},
		{"dangling symlink", func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) }, "symbolic link"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }, "not a regular file"},
		{"fifo", func(p string) error { return mkfifo(p) }, "not a regular file"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.desc, " ", "-"))
			if err := tc.make(p); err != nil {
				t.Skipf("cannot make a %s here: %v", tc.desc, err)
			}
			before, err := os.Lstat(p)
			if err != nil {
				// Wine makes a symbolic link that it cannot stat or open.
				t.Skipf("the system made a %s it cannot stat: %v", tc.desc, err)
			}
			if _, err := ReadLink(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadLink: %v, want an error saying %q", err, tc.want)
			}
			s, err := OpenLink(p)
			if err == nil {
				s.Close()
				t.Fatal("OpenLink succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("OpenLink: %v, want an error saying %q (and not ErrNotExist)", err, tc.want)
			}
			name := testName(t)
			s, err = Create(name, 4096, WithLink(p))
			if err == nil {
				s.Close()
				t.Fatal("Create replaced something that is not a link")
			}
			if !errors.Is(err, fs.ErrExist) {
				t.Errorf("Create over a %s: %v, want fs.ErrExist", tc.desc, err)
			}
			if exists(t, name) {
				t.Error("the failed Create left its segment")
			}
			if err := RemoveLink(p); err == nil {
				t.Error("RemoveLink removed something that is not a link")
			}
			after, err := os.Lstat(p)
			if err != nil || !os.SameFile(before, after) || before.Mode() != after.Mode() || before.Size() != after.Size() {
				t.Errorf("the %s was changed: %v", tc.desc, err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "nowhere")); err == nil {
				t.Error("a symlink was followed: its target was created")
			}
		})
	}
	if !exists(t, target) {
		t.Fatal("the valid link's segment is gone")
	}
	if s, err := OpenLink(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("OpenLink of a missing path: %v, want fs.ErrNotExist", err)
	}
	leftTemps(t, dir)
}

func TestLinkFile(t *testing.T) {
	old := setUmask(0o077)
	defer setUmask(old)
	for _, tc := range []struct {
		mode, want fs.FileMode
	}{
		{0, 0o600},
		{0o600, 0o600},
		{0o640, 0o640},
		{0o666, 0o644},
		{0o400, 0o600},
	} {
		dir := t.TempDir()
		link := filepath.Join(dir, "mode.link")
		var opts []Option
		if tc.mode != 0 {
			opts = append(opts, WithMode(tc.mode))
		}
		s := mustCreate(t, testName(t), 4096, append(opts, WithLink(link))...)
		fi, err := os.Lstat(link)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode() != tc.want { // no permission bits on Windows
			t.Errorf("segment mode %v: link has mode %v, want %v", tc.mode, fi.Mode(), tc.want)
		}
		b, _ := os.ReadFile(link)
		want := fmt.Sprintf("shm-link 2\nname %q\npid %d\nowner %x\n", s.Name(), os.Getpid(), uint64(owner.Self()))
		if !strings.HasPrefix(string(b), want) {
			t.Errorf("link holds %q, want it to start with %q", b, want)
		}
		leftTemps(t, dir)
	}
}

func TestLinkOwnership(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "own.link")
	name := testName(t)
	s := mustCreate(t, name, 4096, WithLink(link))
	if runtime.GOOS == "windows" {
		// A Windows mapping dies with its last handle: keep one open.
		keep, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer keep.Close()
	}
	s.SetOwner(false)
	s.Close()
	if _, err := os.Lstat(link); err != nil {
		t.Fatalf("Close after SetOwner(false) removed the link: %v", err)
	}
	// An opener through the link that takes ownership removes both.
	o, err := OpenLink(link)
	if err != nil {
		t.Fatal(err)
	}
	if o.IsOwner() || o.Orphaned() {
		t.Fatalf("opener: owner %v orphaned %v", o.IsOwner(), o.Orphaned())
	}
	o.SetOwner(true)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("owner opener's Close left the link: %v", err)
	}
	if exists(t, name) {
		t.Fatal("owner opener's Close left the segment")
	}
}

func TestLinkFailedCreateLeavesNoLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "fail.link")
	name := testName(t)
	mustCreate(t, name, 4096)
	for _, tc := range []struct {
		desc string
		name string
		size int
	}{
		{"bad size", testName(t), 0},
		{"bad name", "a/b", 4096},
		{"name taken", name, 4096},
	} {
		s, err := Create(tc.name, tc.size, WithLink(link))
		if err == nil {
			s.Close()
			t.Fatalf("%s: Create succeeded", tc.desc)
		}
		if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: a failed Create left a link: %v", tc.desc, err)
		}
	}
	// A link in a directory that does not exist.
	s, err := Create(testName(t), 4096, WithLink(filepath.Join(dir, "no", "such", "dir.link")))
	if err == nil {
		s.Close()
		t.Fatal("Create with a link in a missing directory succeeded")
	}
	leftTemps(t, dir)
}

func TestRemoveLink(t *testing.T) {
	link := filepath.Join(t.TempDir(), "rm.link")
	name := testName(t)
	s := mustCreate(t, name, 4096, WithLink(link))
	if err := RemoveLink(link); err != nil {
		t.Fatal(err)
	}
	if exists(t, name) {
		t.Fatal("RemoveLink left the segment")
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("RemoveLink left the link: %v", err)
	}
	s.Bytes()[0] = 1 // the mapping outlives the name
	if err := s.Close(); err != nil {
		t.Fatalf("owner's Close after RemoveLink: %v", err)
	}
	if err := RemoveLink(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("RemoveLink of a missing link: %v, want fs.ErrNotExist", err)
	}
}

func TestLinkNameRoundTrip(t *testing.T) {
	for _, name := range []string{"plain", "with space", "new\nline", "quote\"d", "tab\there", "\xff\xfe"} {
		l, err := parseLink(encodeLink(name, ownID()))
		if err != nil || l.Name != name {
			t.Errorf("name %q came back as %q, %v", name, l.Name, err)
		}
	}
}

func ownID() owner.Token { return owner.Self() }
