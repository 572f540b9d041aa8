package shm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSegmentTooLarge asks for more than /dev/shm holds: the error comes at
// create time, says what to do, and leaves nothing behind.
func TestSegmentTooLarge(t *testing.T) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(Dir, &st); err != nil {
		t.Fatal(err)
	}
	capacity := uint64(st.Blocks) * uint64(st.Bsize)
	const size = 1 << 50
	if st.Blocks == 0 || capacity >= size {
		t.Skipf("%s has no size limit below %d bytes: cannot ask for more than it holds", Dir, size)
	}
	name := testName(t)
	s, err := Create(name, size)
	if err == nil {
		s.Close()
		t.Fatalf("Create of %d bytes in a %d-byte %s succeeded", size, capacity, Dir)
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "--shm-size") {
		t.Fatalf("Create of %d bytes: %v, want ENOSPC mentioning --shm-size", size, err)
	}
	if exists(t, name) {
		t.Fatal("a failed Create left the segment")
	}
}

func TestSegmentMode(t *testing.T) {
	old := syscall.Umask(0o077) // must not narrow the mode we ask for
	defer syscall.Umask(old)
	for _, mode := range []fs.FileMode{0, 0o600, 0o640, 0o666, 0o400} {
		name := testName(t)
		var opts []Option
		if mode != 0 {
			opts = append(opts, WithMode(mode))
		}
		mustCreate(t, name, 4096, opts...)
		fi, err := os.Lstat(shmPath(name))
		if err != nil {
			t.Fatal(err)
		}
		want := mode
		if mode == 0 {
			want = 0o600
		}
		if fi.Mode() != want {
			t.Errorf("WithMode(%v): segment has mode %v, want %v", mode, fi.Mode(), want)
		}
	}
}

// TestSegmentNotASegment puts things in /dev/shm that are not segments.
func TestSegmentNotASegment(t *testing.T) {
	for _, tc := range []struct {
		desc string
		make func(path string) error
		want string
	}{
		{"empty file", func(p string) error { return os.WriteFile(p, nil, 0o600) }, "empty"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }, "directory"},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a shared-memory object (a FIFO)"},
		{"symlink", func(p string) error { return os.Symlink("/etc/passwd", p) }, "symbolic link"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			name := testName(t)
			p := shmPath(name)
			if err := tc.make(p); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(p) })
			for _, opts := range [][]Option{nil, {ReadOnly()}} {
				s, err := Open(name, opts...)
				if err == nil {
					s.Close()
					t.Fatalf("Open of a %s succeeded", tc.desc)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Open of a %s: %q does not say %q", tc.desc, err, tc.want)
				}
			}
		})
	}
}

func init() {
	registerChild("seg-permission", childPermission)
}

// childPermission (args: name, expectations) opens the segment read-write
// and read-only and checks each outcome: "perm" for fs.ErrPermission, "ok"
// for success.
func childPermission(args []string) error {
	name := args[0]
	for i, opts := range [][]Option{nil, {ReadOnly()}} {
		s, err := Open(name, opts...)
		got := "ok"
		if err != nil {
			got = err.Error()
			if errors.Is(err, fs.ErrPermission) {
				got = "perm"
			}
		} else {
			s.Close()
		}
		if want := args[1+i]; got != want {
			return fmt.Errorf("open %d as uid %d: got %s, want %s", i, os.Getuid(), got, want)
		}
	}
	return nil
}

// TestSegmentPermission opens segments the caller may not write, or not
// read, from a process of another user: the error matches fs.ErrPermission.
func TestSegmentPermission(t *testing.T) {
	if os.Getuid() != 0 {
		// Without root there is no other user to be; the owner without
		// write permission still shows the read-write refusal.
		name := testName(t)
		mustCreate(t, name, 4096, WithMode(0o400))
		if _, err := Open(name); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("read-write Open of a 0400 segment: %v, want fs.ErrPermission", err)
		}
		r, err := Open(name, ReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		return
	}
	// Root reads everything: run the opener as nobody, from a copy of the
	// test binary that nobody may execute.
	dir, err := os.MkdirTemp("", "shm-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "shm.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, bin} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = 65534
	for _, tc := range []struct {
		mode   fs.FileMode
		rw, ro string
	}{
		{0o600, "perm", "perm"},
		{0o644, "perm", "ok"},
		{0o666, "ok", "ok"},
	} {
		name := testName(t)
		mustCreate(t, name, 4096, WithMode(tc.mode))
		a, _ := json.Marshal([]string{name, tc.rw, tc.ro})
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=seg-permission", childArgsEnv+"="+string(a))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("mode %v: %v\n%s", tc.mode, err, out)
		}
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
