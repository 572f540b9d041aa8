package shm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/go-shm/shm/internal/proc"
)

// Link files.
//
// A link file is a small text file on disk that names a segment, so that
// processes agree on a path rather than on a segment name:
//
//	shm-link 1
//	name <segment name>
//	pid <creator pid>
//	start <creator start tag>
//
// It is written to a temporary name in the same directory and then hard
// linked into place with link(2), which fails if the path exists: a reader
// never sees a half-written link, and of several creators exactly one wins.
// The creator's identity (PID and start-time tag, see internal/proc) lets
// anyone tell a live link from a stale one. Replacing a stale link happens
// under an exclusive lock on the old link file, re-checked after the lock
// is taken, so two processes never replace the same stale link twice.

const (
	linkMagic   = "shm-link 1"
	maxLinkSize = 4096
)

// LinkInfo is what a link file says.
type LinkInfo struct {
	Name    string  // the segment it names
	Creator proc.ID // the process that created the segment and wrote the link
}

// CreatorAlive reports whether the process that wrote the link still runs.
func (l LinkInfo) CreatorAlive() bool { return proc.Alive(l.Creator) }

func (l LinkInfo) encode() []byte {
	return fmt.Appendf(nil, "%s\nname %s\npid %d\nstart %d\n", linkMagic, l.Name, l.Creator.PID, l.Creator.Start)
}

func parseLink(b []byte) (LinkInfo, error) {
	bad := func(why string) (LinkInfo, error) {
		return LinkInfo{}, fmt.Errorf("%w: not a shm link file (%s)", ErrCorrupt, why)
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) != 5 || len(lines[4]) != 0 || string(lines[0]) != linkMagic {
		return bad("bad format")
	}
	var l LinkInfo
	for i, key := range []string{"name ", "pid ", "start "} {
		line := lines[i+1]
		if !bytes.HasPrefix(line, []byte(key)) {
			return bad("missing " + key[:len(key)-1])
		}
		v := string(line[len(key):])
		switch i {
		case 0:
			n, err := cleanName(v)
			if err != nil {
				return bad(err.Error())
			}
			l.Name = n
		case 1, 2:
			u, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return bad("bad " + key[:len(key)-1])
			}
			if i == 1 {
				l.Creator.PID = uint32(u)
			} else {
				l.Creator.Start = uint32(u)
			}
		}
	}
	return l, nil
}

// ReadLink reads and checks the link file at path without opening the
// segment it names. It never follows a symbolic link.
func ReadLink(path string) (LinkInfo, error) {
	f, err := openNoFollow(path)
	if err != nil {
		return LinkInfo{}, &Error{Op: "read link", Name: path, Err: err}
	}
	defer f.Close()
	l, err := readLinkFile(f)
	if err != nil {
		return LinkInfo{}, &Error{Op: "read link", Name: path, Err: err}
	}
	return l, nil
}

func readLinkFile(f *os.File) (LinkInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return LinkInfo{}, err
	}
	if !st.Mode().IsRegular() {
		return LinkInfo{}, fmt.Errorf("%w: not a shm link file (not a regular file: %v)", ErrCorrupt, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxLinkSize+1))
	if err != nil {
		return LinkInfo{}, err
	}
	if len(b) > maxLinkSize {
		return LinkInfo{}, fmt.Errorf("%w: not a shm link file (larger than %d bytes)", ErrCorrupt, maxLinkSize)
	}
	return parseLink(b)
}

// OpenLink opens the segment named by the link file at path.
//
// If the segment is gone, the link is stale and OpenLink fails with an error
// matching fs.ErrNotExist that says so. If the segment exists but the process
// that created it has died, OpenLink still opens it (its data may be what the
// caller wants to recover) and the segment's Orphaned method reports true.
func OpenLink(path string, opts ...Option) (*Segment, error) {
	l, err := ReadLink(path)
	if err != nil {
		return nil, err
	}
	seg, err := Open(l.Name, opts...)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{Op: "open link", Name: path, Err: fmt.Errorf("stale link: segment %q no longer exists: %w", l.Name, fs.ErrNotExist)}
		}
		return nil, &Error{Op: "open link", Name: path, Err: err}
	}
	seg.orphaned = !l.CreatorAlive()
	return seg, nil
}

// createLinked creates the segment, then its link file.
func createLinked(name string, size int, o *options) (*Segment, error) {
	seg, err := create(name, size, o)
	if err != nil {
		return nil, err
	}
	if err := writeLink(o.link, seg.name, o.mode); err != nil {
		seg.Close() // we own it: this removes the name too
		return nil, err
	}
	seg.link = o.link
	return seg, nil
}

// writeLink publishes a link file at path naming the segment name. It fails
// with fs.ErrExist if path holds a live link.
func writeLink(path, name string, mode fs.FileMode) error {
	werr := func(err error) error { return &Error{Op: "link", Name: path, Err: err} }
	content := LinkInfo{Name: name, Creator: proc.Self()}.encode()
	tmp, err := writeTemp(path, content, mode)
	if err != nil {
		return werr(err)
	}
	defer os.Remove(tmp)
	for range 16 {
		err := linkExclusive(tmp, path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return werr(err)
		}
		replaced, err := removeStaleLink(path)
		if err != nil {
			return werr(err)
		}
		if !replaced {
			return werr(fmt.Errorf("%w: a live link is in place", fs.ErrExist))
		}
	}
	return werr(fmt.Errorf("%w: link keeps reappearing", fs.ErrExist))
}

// writeTemp writes content to a fresh file beside path and returns its name.
func writeTemp(path string, content []byte, mode fs.FileMode) (string, error) {
	dir, base := filepath.Split(path)
	for range 8 {
		tmp := filepath.Join(dir, "."+base+"."+randomName()+".tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := f.Chmod(mode); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			// Best effort: the umask may have narrowed mode; it never widens it.
			_ = err
		}
		_, err = f.Write(content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return "", err
		}
		return tmp, nil
	}
	return "", fs.ErrExist
}

// removeStaleLink removes the link at path if it is stale: unreadable as a
// link is not stale (it is someone's file, and we leave it alone), a link
// whose segment is gone is, and so is a link whose creator is dead, in which
// case its orphaned segment is removed too. It reports whether the path is
// now free (or was freed by someone else meanwhile).
func removeStaleLink(path string) (bool, error) {
	f, err := openNoFollow(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return false, err
	}
	defer unlockFile(f)
	// Someone may have replaced the link while we waited for the lock.
	if same, err := samePath(f, path); err != nil || !same {
		return err == nil || errors.Is(err, fs.ErrNotExist), nil
	}
	l, err := readLinkFile(f)
	if err != nil {
		return false, fmt.Errorf("%w: %v (not replacing it)", fs.ErrExist, err)
	}
	creatorAlive := l.CreatorAlive()
	segExists := segmentExists(l.Name)
	if creatorAlive && segExists {
		return false, nil
	}
	if segExists {
		osRemove(l.Name) // the orphan of a dead creator
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// removeLinkIfNames removes the link at path if it still names the segment
// name (a link replaced by another creator is left alone).
func removeLinkIfNames(path, name string) error {
	f, err := openNoFollow(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &Error{Op: "remove link", Name: path, Err: err}
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return &Error{Op: "remove link", Name: path, Err: err}
	}
	defer unlockFile(f)
	if same, err := samePath(f, path); err != nil || !same {
		return nil
	}
	l, err := readLinkFile(f)
	if err != nil || l.Name != name || l.Creator != proc.Self() {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Op: "remove link", Name: path, Err: err}
	}
	return nil
}

// samePath reports whether the open file f is still the file at path.
func samePath(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// segmentExists reports whether a segment of that name exists (whether or
// not we may open it).
func segmentExists(name string) bool {
	s, err := Open(name, ReadOnly())
	if err == nil {
		s.Close()
		return true
	}
	return !errors.Is(err, fs.ErrNotExist)
}
