package shm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Security between users: another local user squats a name or forges a
// link. The tests run helpers as other users (setpriv, no accounts needed),
// so they need root; elsewhere they skip.

const (
	squatterUID = 65534 // nobody
	victimUID   = 65533
)

func init() {
	// args: name: create the segment, world-writable, with our content,
	// and leave it there.
	registerChild("sec-squat", func(args []string) error {
		seg, err := Create(args[0], 4096, WithMode(0o666))
		if err != nil {
			return err
		}
		copy(seg.Bytes(), "squatter's data")
		seg.SetOwner(false)
		return seg.Close()
	})
	// args: path, content: write a file.
	registerChild("sec-write", func(args []string) error {
		return os.WriteFile(args[0], []byte(args[1]), 0o644)
	})
	// args: name: open read-write a segment we may only read; succeed only
	// if refused with fs.ErrPermission and told about ReadOnly.
	registerChild("sec-open-rw", func(args []string) error {
		seg, err := Open(args[0])
		if err == nil {
			seg.Close()
			return errors.New("opened read-write a segment of mode 0644 of another user")
		}
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "shm.ReadOnly()") {
			return errors.New("error does not suggest ReadOnly: " + err.Error())
		}
		seg, err = Open(args[0], ReadOnly())
		if err != nil {
			return err
		}
		return seg.Close()
	})
	// args: name: OpenOrCreate as the victim; succeed only if refused with
	// fs.ErrPermission.
	registerChild("sec-victim-open", func(args []string) error {
		seg, created, err := OpenOrCreate(args[0], 4096)
		if err == nil {
			seg.SetOwner(false)
			seg.Close()
			return errors.New("OpenOrCreate used another user's segment (created=" + strconv.FormatBool(created) + ")")
		}
		if !errors.Is(err, fs.ErrPermission) {
			return err
		}
		return nil
	})
}

// asUser runs role as uid (and gid uid) and returns its combined output.
func asUser(t *testing.T, bin string, uid int, role string, args ...string) ([]byte, error) {
	t.Helper()
	u := strconv.Itoa(uid)
	return childCmd(bin, []string{"setpriv", "--reuid=" + u, "--regid=" + u, "--clear-groups", "--"}, role, args...).CombinedOutput()
}

// worldDir makes a world-writable sticky directory, like /tmp.
func worldDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "shmtest-world-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSquattedSegmentRefused(t *testing.T) {
	needRoot(t, "setpriv")
	bin := worldBinary(t)
	name := testName(t)
	if out, err := asUser(t, bin, squatterUID, "sec-squat", name); err != nil {
		t.Fatalf("squatter: %v\n%s", err, out)
	}
	// Root, the usual victim (a daemon), and an unprivileged user both
	// refuse it by default.
	if seg, _, err := OpenOrCreate(name, 4096); !errors.Is(err, fs.ErrPermission) {
		if err == nil {
			seg.SetOwner(false)
			seg.Close()
		}
		t.Fatalf("OpenOrCreate of a name squatted by uid %d: %v, want fs.ErrPermission", squatterUID, err)
	} else if !strings.Contains(err.Error(), "TrustOwner(65534)") {
		t.Errorf("the error does not say how to trust the owner: %v", err)
	}
	if _, err := Open(name); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Open of a squatted name: %v, want fs.ErrPermission", err)
	}
	if _, err := OpenManaged(name); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("OpenManaged of a squatted name: %v, want fs.ErrPermission", err)
	}
	if out, err := asUser(t, bin, victimUID, "sec-victim-open", name); err != nil {
		t.Fatalf("victim uid %d: %v\n%s", victimUID, err, out)
	}
	// Trusting the owner lets it through.
	seg, created, err := OpenOrCreate(name, 4096, TrustOwner(squatterUID))
	if err != nil || created {
		t.Fatalf("OpenOrCreate trusting uid %d: created=%v, %v", squatterUID, created, err)
	}
	seg.Close()
	seg, err = Open(name, TrustAnyOwner())
	if err != nil {
		t.Fatalf("Open trusting any owner: %v", err)
	}
	seg.Close()

	// A link file of another user is refused the same way.
	dir := worldDir(t)
	link := filepath.Join(dir, "squat.link")
	if out, err := asUser(t, bin, squatterUID, "sec-write", link, string(encodeLink(name, 1<<22|7))); err != nil {
		t.Fatalf("squatter's link: %v\n%s", err, out)
	}
	if _, err := OpenLink(link); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("OpenLink of another user's link: %v, want fs.ErrPermission", err)
	}
	if seg, err := OpenLink(link, TrustOwner(squatterUID)); err != nil {
		t.Fatalf("OpenLink trusting its owner: %v", err)
	} else {
		seg.Close()
	}
}

func TestForgedLinkRemovesNothing(t *testing.T) {
	needRoot(t, "setpriv")
	bin := worldBinary(t)
	dir := worldDir(t)
	// The victim's segment, and a link forged by another user that names
	// it with a dead creator.
	name := testName(t)
	victim, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	link := filepath.Join(dir, "forged.link")
	forged := string(encodeLink(name, 1<<22|12345))
	if out, err := asUser(t, bin, squatterUID, "sec-write", link, forged); err != nil {
		t.Fatalf("forger: %v\n%s", err, out)
	}
	exists := func() bool { _, err := os.Lstat(Dir + "/" + name); return err == nil }

	// The victim's own Create with that link path must not remove its
	// segment as "stale".
	other := testName(t)
	if s, err := Create(other, 4096, WithLink(link)); err == nil {
		s.Close()
		t.Fatal("Create replaced another user's link")
	} else if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Create over another user's link: %v, want fs.ErrPermission", err)
	}
	if !exists() {
		t.Fatal("Create over a forged link removed the victim's segment")
	}
	// Nor root's RemoveLink.
	if err := RemoveLink(link); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("RemoveLink of a forged link naming another user's segment: %v, want fs.ErrPermission", err)
	}
	if !exists() {
		t.Fatal("RemoveLink of a forged link removed the victim's segment")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("the forged link was removed although its segment was not its owner's: %v", err)
	}

	// A link and segment of the same other user: root may clean them up.
	sq := testName(t)
	if out, err := asUser(t, bin, squatterUID, "sec-squat", sq); err != nil {
		t.Fatalf("squatter: %v\n%s", err, out)
	}
	own := filepath.Join(dir, "own.link")
	if out, err := asUser(t, bin, squatterUID, "sec-write", own, string(encodeLink(sq, 1<<22|1))); err != nil {
		t.Fatalf("squatter's link: %v\n%s", err, out)
	}
	if err := RemoveLink(own); err != nil {
		t.Fatalf("root's RemoveLink of a user's own link and segment: %v", err)
	}
	if _, err := os.Lstat(Dir + "/" + sq); err == nil {
		t.Error("the segment of a removed link is still there")
	}
}

// TestReadWriteOpenSuggestsReadOnly: a read-write open of a segment the
// caller may only read says how to read it.
func TestReadWriteOpenSuggestsReadOnly(t *testing.T) {
	needRoot(t, "setpriv")
	bin := worldBinary(t)
	name := testName(t)
	seg, err := Create(name, 4096, WithMode(0o644))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if out, err := asUser(t, bin, victimUID, "sec-open-rw", name); err != nil {
		t.Fatalf("uid %d: %v\n%s", victimUID, err, out)
	}
}
