package shm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Child roles used by the segment and link tests. Children report through
// files in a directory the parent gives them, because their output can be
// read only after they exit.

func init() {
	registerChild("seg-peer", childPeer)
	registerChild("seg-create-race", childCreateRace)
	registerChild("seg-open-or-create-race", childOpenOrCreateRace)
	registerChild("seg-readonly-write", childReadOnlyWrite)
	registerChild("seg-readonly-crash", childReadOnlyCrash)
	registerChild("seg-expect-missing", childExpectMissing)
}

// pattern returns n bytes that differ from zero and from one test to the next.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) | 1
	}
	return b
}

// openBy opens a segment by name, or by link when how is "link".
func openBy(how, target string, opts ...Option) (*Segment, error) {
	if how == "link" {
		return OpenLink(target, opts...)
	}
	return Open(target, opts...)
}

// childPeer opens the parent's segment (args: how, target, seed, n, mode),
// checks that it starts with the parent's pattern, and, unless mode is "ro",
// writes the reversed pattern after it.
func childPeer(args []string) error {
	how, target, mode := args[0], args[1], args[4]
	seed, _ := strconv.Atoi(args[2])
	n, _ := strconv.Atoi(args[3])
	var opts []Option
	if mode == "ro" {
		opts = append(opts, ReadOnly())
	}
	s, err := openBy(how, target, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	if s.IsOwner() {
		return errors.New("an opener must not own the segment")
	}
	want := pattern(byte(seed), n)
	if got := s.Bytes()[:n]; !bytes.Equal(got, want) {
		return fmt.Errorf("child sees %x..., want %x...", got[:8], want[:8])
	}
	if mode != "ro" {
		reply := s.Bytes()[n : 2*n]
		for i := range reply {
			reply[i] = want[n-1-i]
		}
	}
	return nil
}

// barrier waits until path exists, so that children started one after the
// other act together.
func barrier(path string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(100 * time.Microsecond)
	}
	return fmt.Errorf("barrier %s never opened", path)
}

// report writes msg to dir/result-id in one atomic step.
func report(dir, id, msg string) error {
	tmp := filepath.Join(dir, ".tmp-"+id)
	if err := os.WriteFile(tmp, []byte(msg), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "result-"+id))
}

// outcome classifies a create error for a race report.
func outcome(err error) string {
	switch {
	case err == nil:
		return "won"
	case errors.Is(err, fs.ErrExist):
		return "exist"
	}
	return "error: " + err.Error()
}

// childCreateRace (args: dir, id, name, link) waits for dir/go, creates the
// segment (with a link file if link is not empty), reports, and holds what
// it won until dir/done exists, so that every rival tries while the winner
// is alive.
func childCreateRace(args []string) error {
	dir, id, name, link := args[0], args[1], args[2], args[3]
	if err := barrier(filepath.Join(dir, "go")); err != nil {
		return err
	}
	var opts []Option
	if link != "" {
		opts = append(opts, WithLink(link))
	}
	s, err := Create(name, 4096, opts...)
	if err := report(dir, id, outcome(err)); err != nil {
		return err
	}
	if err != nil {
		return nil
	}
	defer s.Close()
	return barrier(filepath.Join(dir, "done"))
}

// childOpenOrCreateRace (args: dir, id, name, n) waits for dir/go, calls
// OpenOrCreate, counts itself in the segment's first word, waits (at most
// 20 s) until all n peers have counted themselves, and reports whether it
// created, the size it saw and the count it saw last. Every peer keeps the
// segment open until all are in, because on Windows a mapping dies with its
// last handle and a late peer would create it anew. Nobody removes the
// segment: the parent does, after everyone has been in.
func childOpenOrCreateRace(args []string) error {
	dir, id, name := args[0], args[1], args[2]
	n, err := strconv.Atoi(args[3])
	if err != nil {
		return err
	}
	if err := barrier(filepath.Join(dir, "go")); err != nil {
		return err
	}
	s, created, err := OpenOrCreate(name, 8192)
	if err != nil {
		return report(dir, id, "error: "+err.Error())
	}
	if created != s.IsOwner() {
		return fmt.Errorf("created %v but owner %v", created, s.IsOwner())
	}
	s.SetOwner(false)
	defer s.Close()
	count := (*uint32)(unsafe.Pointer(&s.Bytes()[0]))
	atomic.AddUint32(count, 1)
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadUint32(count) < uint32(n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return report(dir, id, fmt.Sprintf("%v %d %d", created, s.Size(), atomic.LoadUint32(count)))
}

// mapsPerms returns the protection of the mapping starting at b, as
// /proc/self/maps shows it ("r--s" for a read-only shared mapping).
func mapsPerms(b []byte) (string, error) {
	addr := uintptr(unsafe.Pointer(&b[0]))
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		start, _, _ := strings.Cut(fields[0], "-")
		if a, err := strconv.ParseUint(start, 16, 64); err == nil && uintptr(a) == addr {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("no mapping at %#x in /proc/self/maps", addr)
}

// childReadOnlyWrite (args: name) opens the segment read-only, checks the
// mapping's protection in /proc/self/maps, then writes to it and expects
// the write to fault.
func childReadOnlyWrite(args []string) error {
	s, err := Open(args[0], ReadOnly())
	if err != nil {
		return err
	}
	defer s.Close()
	if !s.ReadOnly() {
		return errors.New("ReadOnly() is false")
	}
	if runtime.GOOS == "linux" {
		perms, err := mapsPerms(s.Bytes())
		if err != nil {
			return err
		}
		if perms != "r--s" {
			return fmt.Errorf("read-only mapping has protection %q, want r--s", perms)
		}
	}
	faulted := func() (faulted bool) {
		debug.SetPanicOnFault(true)
		defer func() {
			debug.SetPanicOnFault(false)
			if r := recover(); r != nil {
				_, faulted = r.(interface{ Addr() uintptr })
			}
		}()
		s.Bytes()[0] = 0xee
		return false
	}()
	if !faulted {
		return errors.New("writing to a read-only mapping did not fault")
	}
	return nil
}

// childReadOnlyCrash (args: name) writes to a read-only mapping and does not
// recover: the process must die of the fault.
func childReadOnlyCrash(args []string) error {
	s, err := Open(args[0], ReadOnly())
	if err != nil {
		return err
	}
	s.Bytes()[1] = 0xee
	return errors.New("survived a write to a read-only mapping")
}

// childExpectMissing (args: name) succeeds only if the name is gone.
func childExpectMissing(args []string) error {
	s, err := Open(args[0])
	if err == nil {
		s.Close()
		return errors.New("opened a removed segment")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("want fs.ErrNotExist, got %v", err)
	}
	return nil
}

// mustCreate creates a segment that is closed (and so removed) when the
// test ends.
func mustCreate(t *testing.T, name string, size int, opts ...Option) *Segment {
	t.Helper()
	s, err := Create(name, size, opts...)
	if err != nil {
		t.Fatalf("Create(%q, %d): %v", name, size, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// exists reports whether the segment name exists.
func exists(t *testing.T, name string) bool {
	t.Helper()
	return segmentExists(name)
}

func TestSegmentChildSeesParent(t *testing.T) {
	const n = 1024
	for i, tc := range []struct {
		desc string
		how  string // "name" or "link"
		mode string // "rw" or "ro"
		dash bool   // open as "/name"
	}{
		{desc: "by name", how: "name", mode: "rw"},
		{desc: "by /name", how: "name", mode: "rw", dash: true},
		{desc: "by link", how: "link", mode: "rw"},
		{desc: "by name read-only", how: "name", mode: "ro"},
		{desc: "by link read-only", how: "link", mode: "ro"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			name := testName(t)
			link := filepath.Join(t.TempDir(), "seg.link")
			s := mustCreate(t, name, 3*n, WithLink(link))
			if s.Name() != name || s.Size() != 3*n || len(s.Bytes()) != 3*n || !s.IsOwner() || s.ReadOnly() {
				t.Fatalf("new segment: name %q size %d len %d owner %v ro %v", s.Name(), s.Size(), len(s.Bytes()), s.IsOwner(), s.ReadOnly())
			}
			if !bytes.Equal(s.Bytes(), make([]byte, 3*n)) {
				t.Fatal("new segment is not zero-filled")
			}
			seed := byte(i*31 + 5)
			copy(s.Bytes(), pattern(seed, n))
			target := name
			if tc.how == "link" {
				target = link
			} else if tc.dash {
				target = "/" + name
			}
			startChild(t, "seg-peer", tc.how, target, strconv.Itoa(int(seed)), strconv.Itoa(n), tc.mode).wait(20 * time.Second)
			want := make([]byte, n)
			if tc.mode == "rw" {
				p := pattern(seed, n)
				for j := range want {
					want[j] = p[n-1-j]
				}
			}
			if got := s.Bytes()[n : 2*n]; !bytes.Equal(got, want) {
				t.Fatalf("parent sees %x... after the child wrote, want %x...", got[:8], want[:8])
			}
			if !exists(t, name) {
				t.Fatal("the child's Close removed the parent's segment")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if exists(t, name) {
				t.Fatal("owner's Close left the segment")
			}
			if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("owner's Close left the link file: %v", err)
			}
		})
	}
}

func TestSegmentCreateExisting(t *testing.T) {
	name := testName(t)
	s := mustCreate(t, name, 4096)
	s.Bytes()[0] = 42
	for _, n := range []string{name, "/" + name} {
		s2, err := Create(n, 8192)
		if err == nil {
			s2.Close()
			t.Fatalf("Create(%q) of an existing name succeeded", n)
		}
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Create(%q): %v, want fs.ErrExist", n, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "create") || !strings.Contains(msg, name) {
			t.Fatalf("error %q does not name the operation and the segment", msg)
		}
	}
	if s.Bytes()[0] != 42 || s.Size() != 4096 {
		t.Fatal("a failed Create changed the existing segment")
	}
}

func TestSegmentOpenMissing(t *testing.T) {
	name := testName(t)
	for _, opts := range [][]Option{nil, {ReadOnly()}} {
		s, err := Open(name, opts...)
		if err == nil {
			s.Close()
			t.Fatal("opened a segment that does not exist")
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open: %v, want fs.ErrNotExist", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "open") || !strings.Contains(msg, name) {
			t.Fatalf("error %q does not name the operation and the segment", msg)
		}
	}
	if err := Remove(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Remove of a missing name: %v, want fs.ErrNotExist", err)
	}
}

func TestSegmentRemoveKeepsMappings(t *testing.T) {
	name := testName(t)
	s := mustCreate(t, name, 4096)
	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open after Remove: %v, want fs.ErrNotExist", err)
	}
	startChild(t, "seg-expect-missing", name).wait(20 * time.Second)
	// Both old mappings still work and still share their bytes.
	s.Bytes()[100] = 7
	o.Bytes()[200] = 9
	if o.Bytes()[100] != 7 || s.Bytes()[200] != 9 {
		t.Fatal("mappings of a removed segment no longer share their bytes")
	}
	if runtime.GOOS == "windows" {
		// A Windows mapping keeps its name until its last handle closes.
		t.Skip("the rest re-creates the name while the old mappings are open; on Windows TestWindowsRemove checks that Create fails until they close")
	}
	// The name is free again, for a new, distinct segment.
	n := mustCreate(t, name, 4096)
	if n.Bytes()[100] != 0 {
		t.Fatal("a new segment under the old name sees the old bytes")
	}
	// The old owner's Close must not remove the new segment.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !exists(t, name) {
		t.Fatal("closing the removed segment's owner removed a new segment of the same name")
	}
}

func TestSegmentReadOnly(t *testing.T) {
	name := testName(t)
	s := mustCreate(t, name, 4096)
	copy(s.Bytes(), "unchanged")
	t.Run("protection", func(t *testing.T) {
		startChild(t, "seg-readonly-write", name).wait(20 * time.Second)
	})
	t.Run("crash", func(t *testing.T) {
		c := startChild(t, "seg-readonly-crash", name)
		err := c.waitErr(20 * time.Second)
		var ee interface{ ExitCode() int }
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("child writing to a read-only mapping ended with %v, want a crash\n%s", err, c.output())
		}
		if runtime.GOOS != "windows" && !strings.Contains(c.output(), "SIGSEGV") {
			t.Fatalf("child did not die of SIGSEGV:\n%s", c.output())
		}
	})
	t.Run("in process", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("reads /proc/self/maps")
		}
		r, err := Open(name, ReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		perms, err := mapsPerms(r.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if perms != "r--s" {
			t.Fatalf("read-only mapping has protection %q, want r--s", perms)
		}
		if perms, _ := mapsPerms(s.Bytes()); perms != "rw-s" {
			t.Fatalf("creator's mapping has protection %q, want rw-s", perms)
		}
	})
	if string(s.Bytes()[:9]) != "unchanged" {
		t.Fatalf("a read-only opener changed the segment: %q", s.Bytes()[:9])
	}
}

func TestSegmentBadNames(t *testing.T) {
	long := strings.Repeat("n", maxNameLen+1)
	for _, tc := range []struct {
		name string
		rule string // a piece of the rule's text
	}{
		{"/", "\"/\" alone"},
		{"//", "'/' is allowed only as the first byte"},
		{"a/b", "'/' is allowed only as the first byte"},
		{"/a/b", "'/' is allowed only as the first byte"},
		{"a/", "'/' is allowed only as the first byte"},
		{".", "are not names"},
		{"..", "are not names"},
		{"/..", "are not names"},
		{"a\x00b", "NUL"},
		{"\x00", "NUL"},
		{long, "longer than"},
		{"/" + long, "longer than"},
	} {
		check := func(op string, err error) {
			t.Helper()
			var ne *NameError
			if !errors.As(err, &ne) || !errors.Is(err, ErrInvalidName) {
				t.Errorf("%s(%q): %v, want a *NameError", op, tc.name, err)
				return
			}
			if !strings.Contains(err.Error(), tc.rule) {
				t.Errorf("%s(%q): %q does not name the rule (%q)", op, tc.name, err, tc.rule)
			}
		}
		s, err := Create(tc.name, 4096)
		if err == nil {
			s.Close()
		}
		check("Create", err)
		_, err = Open(tc.name)
		check("Open", err)
		_, _, err = OpenOrCreate(tc.name, 4096)
		check("OpenOrCreate", err)
		check("Remove", Remove(tc.name))
	}
	// The longest allowed name works, with or without its '/'.
	name := testName(t)
	name += strings.Repeat("x", maxNameLen-len(name))
	t.Cleanup(func() { Remove(name) })
	s := mustCreate(t, "/"+name, 4096)
	if s.Name() != name {
		t.Fatalf("Name() = %q, want %q", s.Name(), name)
	}
	// Only Create accepts the empty name.
	if _, err := Open(""); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Open(\"\"): %v, want ErrInvalidName", err)
	}
	if err := Remove(""); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Remove(\"\"): %v, want ErrInvalidName", err)
	}
}

func TestSegmentBadSizes(t *testing.T) {
	for _, size := range []int{0, -1, -4096, math.MinInt, math.MaxInt, maxSize + 1} {
		name := testName(t)
		s, err := Create(name, size)
		if err == nil {
			s.Close()
			t.Fatalf("Create(size %d) succeeded", size)
		}
		if !errors.Is(err, ErrInvalidSize) || !strings.Contains(err.Error(), strconv.Itoa(size)) {
			t.Fatalf("Create(size %d): %v, want ErrInvalidSize naming the size", size, err)
		}
		if _, _, err := OpenOrCreate(name, size); !errors.Is(err, ErrInvalidSize) {
			t.Fatalf("OpenOrCreate(size %d): %v, want ErrInvalidSize", size, err)
		}
		if exists(t, name) {
			t.Fatalf("a refused size %d left a segment", size)
		}
	}
}

// TestSegmentCreateRace starts several processes that create one name at
// once: exactly one wins, the others get fs.ErrExist.
func TestSegmentCreateRace(t *testing.T) {
	raceCreators(t, 4, func(dir string, i int, name string) []string {
		return []string{dir, strconv.Itoa(i), name, ""}
	})
}

// raceCreators runs n seg-create-race children with the arguments args
// gives each and checks that exactly one won and the others got ErrExist.
// It returns the winner's index.
func raceCreators(t *testing.T, n int, args func(dir string, i int, name string) []string) int {
	t.Helper()
	dir := t.TempDir()
	name := testName(t)
	var cs []*child
	for i := range n {
		cs = append(cs, startChild(t, "seg-create-race", args(dir, i, name)...))
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	results := make([]string, n)
	deadline := time.Now().Add(30 * time.Second)
	for i := range n {
		for {
			b, err := os.ReadFile(filepath.Join(dir, "result-"+strconv.Itoa(i)))
			if err == nil {
				results[i] = string(b)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %d never reported", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		c.wait(20 * time.Second)
	}
	winner, wins := -1, 0
	for i, r := range results {
		switch r {
		case "won":
			winner = i
			wins++
		case "exist":
		default:
			t.Errorf("creator %d: %s", i, r)
		}
	}
	if wins != 1 {
		t.Fatalf("%d creators won, want exactly 1: %q", wins, results)
	}
	return winner
}

func TestSegmentOpenOrCreateRace(t *testing.T) {
	const n = 4
	dir := t.TempDir()
	name := testName(t)
	var cs []*child
	for i := range n {
		cs = append(cs, startChild(t, "seg-open-or-create-race", dir, strconv.Itoa(i), name, strconv.Itoa(n)))
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		c.wait(30 * time.Second)
	}
	// Each peer saw all n counted in the segment it had: they shared one.
	created, all := 0, fmt.Sprintf(" 8192 %d", n)
	for i := range n {
		b, err := os.ReadFile(filepath.Join(dir, "result-"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		switch string(b) {
		case "true" + all:
			created++
		case "false" + all:
		default:
			t.Errorf("peer %d: %s, want \"true|false%s\"", i, b, all)
		}
	}
	if created != 1 {
		t.Fatalf("%d peers created the segment, want 1", created)
	}
	if runtime.GOOS == "windows" {
		return // the segment died with the peers' last handle
	}
	s, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	s.SetOwner(true)
	defer s.Close()
	if got := atomic.LoadUint32((*uint32)(unsafe.Pointer(&s.Bytes()[0]))); got != n {
		t.Fatalf("%d peers counted themselves in the segment, want %d: they did not all share one", got, n)
	}
}

func TestSegmentOpenOrCreate(t *testing.T) {
	name := testName(t)
	a, created, err := OpenOrCreate("/"+name, 4096)
	if err != nil || !created || !a.IsOwner() {
		t.Fatalf("first OpenOrCreate: created %v err %v", created, err)
	}
	defer a.Close()
	b, created, err := OpenOrCreate(name, 8192, ReadOnly())
	if err != nil || created || b.IsOwner() || !b.ReadOnly() {
		t.Fatalf("second OpenOrCreate: created %v err %v", created, err)
	}
	defer b.Close()
	if b.Size() != 4096 {
		t.Fatalf("opener sees size %d, want the existing 4096", b.Size())
	}
	if _, _, err := OpenOrCreate(name, 4096, WithLink(filepath.Join(t.TempDir(), "l"))); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("OpenOrCreate with WithLink: %v, want errors.ErrUnsupported", err)
	}
	if _, err := Open(name, WithLink(filepath.Join(t.TempDir(), "l"))); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Open with WithLink: %v, want errors.ErrUnsupported", err)
	}
}

func TestSegmentOwnership(t *testing.T) {
	t.Run("owner close removes, twice is fine", func(t *testing.T) {
		name := testName(t)
		s := mustCreate(t, name, 4096)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if exists(t, name) {
			t.Fatal("owner's Close left the segment")
		}
		if s.Bytes() != nil || s.Size() != 0 {
			t.Fatal("Bytes after Close is not nil")
		}
	})
	t.Run("SetOwner(false) leaves it", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("a Windows mapping cannot outlive its last handle (see the README's platform notes)")
		}
		name := testName(t)
		s := mustCreate(t, name, 4096)
		s.SetOwner(false)
		if s.IsOwner() {
			t.Fatal("IsOwner after SetOwner(false)")
		}
		s.Close()
		if !exists(t, name) {
			t.Fatal("Close after SetOwner(false) removed the segment")
		}
	})
	t.Run("opener takes over", func(t *testing.T) {
		name := testName(t)
		s := mustCreate(t, name, 4096)
		s.SetOwner(false)
		o, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if o.IsOwner() {
			t.Fatal("an opener owns the segment")
		}
		o.Close()
		if !exists(t, name) {
			t.Fatal("an opener's Close removed the segment")
		}
		o, err = Open(name)
		if err != nil {
			t.Fatal(err)
		}
		o.SetOwner(true)
		o.Close()
		if exists(t, name) {
			t.Fatal("Close after SetOwner(true) left the segment")
		}
	})
}

func TestSegmentRandomName(t *testing.T) {
	seen := map[string]bool{}
	for range 4 {
		s, err := Create("", 4096)
		if err != nil {
			t.Fatal(err)
		}
		name := s.Name()
		t.Cleanup(func() { Remove(name) })
		defer s.Close()
		if !strings.HasPrefix(name, randomPrefix) || seen[name] {
			t.Fatalf("random name %q: wrong prefix or repeated", name)
		}
		if _, err := cleanName(name); err != nil || len(name)+1 > 31 {
			t.Fatalf("random name %q is not valid everywhere: %v", name, err)
		}
		seen[name] = true
		if !exists(t, name) {
			t.Fatalf("random segment %q does not exist", name)
		}
	}
}

// smapsRss returns the resident size in bytes of the mapping starting at b.
func smapsRss(t *testing.T, b []byte) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/smaps")
	}
	addr := uintptr(unsafe.Pointer(&b[0]))
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	in := false
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if start, _, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			a, err := strconv.ParseUint(start, 16, 64)
			in = err == nil && uintptr(a) == addr
			continue
		}
		if in && fields[0] == "Rss:" {
			kb, _ := strconv.Atoi(fields[1])
			return kb << 10
		}
	}
	t.Fatalf("mapping at %#x not in /proc/self/smaps", addr)
	return 0
}

func TestSegmentPopulate(t *testing.T) {
	const size = 4 << 20
	name := testName(t)
	lazy := mustCreate(t, name, size)
	if rss := smapsRss(t, lazy.Bytes()); rss >= size {
		t.Fatalf("without Populate the mapping is already resident (%d bytes): the test cannot tell", rss)
	}
	full := mustCreate(t, testName(t), size, Populate())
	if rss := smapsRss(t, full.Bytes()); rss != size {
		t.Fatalf("Create with Populate: %d bytes resident, want %d", rss, size)
	}
	o, err := Open(name, Populate(), ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if rss := smapsRss(t, o.Bytes()); rss != size {
		t.Fatalf("Open with Populate: %d bytes resident, want %d", rss, size)
	}
}

func TestSegmentErrorsDoNotPanic(t *testing.T) {
	// Options that are nil are ignored, not dereferenced.
	name := testName(t)
	s := mustCreate(t, name, 1, nil)
	if s.Size() != 1 {
		t.Fatalf("size %d, want 1", s.Size())
	}
	o, err := Open(name, nil, ReadOnly(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Size() != 1 {
		t.Fatalf("opener sees size %d, want 1", o.Size())
	}
}
