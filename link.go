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
	"syscall"

	"github.com/go-shm/shm/internal/owner"
)

// Link files.
//
// A link file is a small text file on disk that names a segment, so that
// processes agree on a path rather than on a segment name:
//
//	shm-link 2
//	name "<segment name, Go-quoted>"
//	pid <creator pid>
//	owner <creator's owner token, hexadecimal>
//
// It is published in one step that fails if the path exists: on Linux an
// unnamed O_TMPFILE is written and then given the path with linkat(2);
// elsewhere a temporary file beside the path is written and hard-linked
// into place with link(2), then removed. A reader never sees a half-written
// link, of several creators exactly one wins, and (on Linux) a crash leaves
// no temporary file behind. The creator's owner token (internal/owner) lets
// anyone tell a live link from a stale one: on Linux the kernel says
// whether the creator still has the segment open; elsewhere whether the
// process with that PID and start time still runs.
// Replacing or removing a link happens under an exclusive flock on the link
// file, re-checked after the lock is taken, so two processes never replace
// the same stale link twice, and a link is never followed through a symlink.

const (
	linkMagic   = "shm-link 2"
	maxLinkSize = 4096
)

// LinkInfo is what a link file says.
type LinkInfo struct {
	Name string // the segment it names
	PID  int    // the process that created the segment and wrote the link

	creator owner.Token
}

// CreatorAlive reports whether the process that wrote the link is still
// there: on Linux, whether it still has the segment open (the kernel keeps
// that record, so a process in another PID namespace or container, or one
// hidden from /proc, is judged right, and a creator that closed the segment
// counts as gone); elsewhere, whether it still runs. It says false only when
// it is sure (a new process that reused the PID does not count as alive).
func (l LinkInfo) CreatorAlive() bool { return heldBy(l.Name, l.creator) }

func encodeLink(name string, creator owner.Token) []byte {
	return fmt.Appendf(nil, "%s\nname %s\npid %d\nowner %x\n", linkMagic, strconv.Quote(name), creator.PID(), uint64(creator))
}

func parseLink(b []byte) (LinkInfo, error) {
	bad := func(why string) (LinkInfo, error) {
		return LinkInfo{}, fmt.Errorf("%w (%s)", ErrNotLink, why)
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) != 5 || len(lines[4]) != 0 || string(lines[0]) != linkMagic {
		return bad("no " + strconv.Quote(linkMagic) + " header, or not 4 lines")
	}
	var l LinkInfo
	for i, key := range []string{"name ", "pid ", "owner "} {
		line := lines[i+1]
		if !bytes.HasPrefix(line, []byte(key)) {
			return bad("missing " + key[:len(key)-1])
		}
		v := string(line[len(key):])
		switch i {
		case 0:
			uq, err := strconv.Unquote(v)
			if err != nil {
				return bad("name is not quoted")
			}
			n, err := cleanName(uq)
			if err != nil {
				return bad(err.Error())
			}
			l.Name = n
		case 1:
			u, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return bad("bad pid")
			}
			l.PID = int(u)
		case 2:
			u, err := strconv.ParseUint(v, 16, 64)
			if err != nil || u == 0 || u > owner.Mask {
				return bad("bad owner")
			}
			l.creator = owner.Token(u)
		}
	}
	return l, nil
}

// ReadLink reads and checks the link file at path without opening the
// segment it names. It never follows a symbolic link. A path that is not a
// link file (empty, binary, too large, a directory, a FIFO, ...) gives an
// error matching ErrCorrupt.
func ReadLink(path string) (LinkInfo, error) {
	f, err := openLinkFile(path)
	if err != nil {
		return LinkInfo{}, &Error{Op: "read link", Name: path, Err: err}
	}
	defer f.Close()
	l, _, err := readLinkFile(f)
	if err != nil {
		return LinkInfo{}, &Error{Op: "read link", Name: path, Err: err}
	}
	return l, nil
}

// openLinkFile opens path for reading, refusing a symbolic link.
func openLinkFile(path string) (*os.File, error) {
	f, err := openNoFollow(path)
	if errors.Is(err, syscall.ELOOP) {
		err = fmt.Errorf("%w: a symbolic link; link files are never followed", err)
	}
	return f, err
}

func readLinkFile(f *os.File) (LinkInfo, fs.FileInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return LinkInfo{}, nil, err
	}
	if !st.Mode().IsRegular() {
		return LinkInfo{}, nil, fmt.Errorf("%w (not a regular file: %v)", ErrNotLink, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxLinkSize+1))
	if err != nil {
		return LinkInfo{}, nil, err
	}
	if len(b) > maxLinkSize {
		return LinkInfo{}, nil, fmt.Errorf("%w (larger than %d bytes)", ErrNotLink, maxLinkSize)
	}
	l, err := parseLink(b)
	return l, st, err
}

// OpenLink opens the segment named by the link file at path.
//
// If the segment is gone, the link is stale and OpenLink fails with an error
// matching fs.ErrNotExist that says so. If the segment exists but the process
// that created it has died, OpenLink still opens it (its data may be what the
// caller wants to recover) and the segment's Orphaned method reports true.
// The caller does not own the segment; if it takes ownership (SetOwner), its
// Close removes the link file too, if the link still names the segment.
func OpenLink(path string, opts ...Option) (*Segment, error) {
	o := collect(opts)
	if o.link != "" {
		return nil, errLinkOption("open link", path)
	}
	f, err := openLinkFile(path)
	if err != nil {
		return nil, &Error{Op: "open link", Name: path, Err: err}
	}
	defer f.Close()
	l, st, err := readLinkFile(f)
	if err != nil {
		return nil, &Error{Op: "open link", Name: path, Err: err}
	}
	if err := o.checkLinkOwner(f, st); err != nil {
		return nil, &Error{Op: "open link", Name: path, Err: err}
	}
	seg, err := openNamed(l.Name, o)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{Op: "open link", Name: path, Err: fmt.Errorf("stale link: segment %q no longer exists: %w", l.Name, fs.ErrNotExist)}
		}
		return nil, &Error{Op: "open link", Name: path, Err: err}
	}
	seg.orphaned = !l.CreatorAlive()
	seg.link, seg.linkFile = path, st
	return seg, nil
}

// RemoveLink removes the link file at path and the segment it names, if that
// still exists (mappings already open stay valid, as with Remove). It acts
// only on a link that belongs to the caller (or on any link when the caller
// is root), and only if the segment it names belongs to the link's owner
// too: anything else gives an error matching fs.ErrPermission and removes
// nothing, so that a link forged by another user cannot have a segment
// removed. The link is removed first; if that fails, the segment is left
// alone. A path that is not a link file is left alone, with an error.
func RemoveLink(path string) error {
	werr := func(err error) error { return &Error{Op: "remove link", Name: path, Err: err} }
	f, err := openLinkFile(path)
	if err != nil {
		return werr(err)
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return werr(err)
	}
	defer unlockFile(f)
	if same, err := samePath(f, path); err != nil || !same {
		// Removed or replaced while we waited for the lock.
		return werr(fmt.Errorf("%w: the link changed while it was being removed", fs.ErrNotExist))
	}
	l, st, err := readLinkFile(f)
	if err != nil {
		return werr(err)
	}
	if err := mayActOnLink(f, st, l.Name); err != nil {
		return werr(err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return werr(err)
	}
	if err := osRemove(l.Name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Op: "remove", Name: l.Name, Err: err}
	}
	return nil
}

// createLinked creates the segment, then its link file.
func createLinked(name string, size int, o *options) (*Segment, error) {
	werr := func(err error) error { return &Error{Op: "create link", Name: o.link, Err: err} }
	// Clear a stale link first: its dead creator's segment may hold the very
	// name we are about to create. A live link fails here, before we make a
	// segment for nothing.
	if err := freeLinkPath(o.link); err != nil {
		return nil, werr(err)
	}
	seg, err := create(name, size, o)
	if err != nil {
		return nil, err
	}
	st, err := writeLink(o.link, seg.name, o.mode)
	if err != nil {
		seg.Close() // we own it: this removes the name too
		return nil, werr(err)
	}
	seg.link, seg.linkFile = o.link, st
	return seg, nil
}

// freeLinkPath removes a stale link at path and fails with fs.ErrExist if a
// live link (or anything that is not a link file) is there.
func freeLinkPath(path string) error {
	free, l, err := removeStaleLink(path)
	if err != nil {
		return err
	}
	if !free {
		return fmt.Errorf("%w: a live link is in place (segment %q, creator pid %d)", fs.ErrExist, l.Name, l.PID)
	}
	return nil
}

// writeLink publishes a link file at path naming the segment name and
// returns the file's identity. It fails with fs.ErrExist if path holds a
// live link.
func writeLink(path, name string, mode fs.FileMode) (fs.FileInfo, error) {
	content := encodeLink(name, owner.Self())
	// Readable by whoever may read the segment; writable by its creator only.
	mode = 0o600 | mode&0o044
	for range 16 {
		err := publishLink(path, content, mode)
		if err == nil {
			return os.Lstat(path)
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := freeLinkPath(path); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: link keeps reappearing", fs.ErrExist)
}

// publishLink creates path holding content, atomically and exclusively.
func publishLink(path string, content []byte, mode fs.FileMode) error {
	err := publishTmpfile(path, content, mode)
	if !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	tmp, err := writeTemp(path, content, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	return linkExclusive(tmp, path)
}

// writeTemp writes content to a fresh file beside path and returns its name.
func writeTemp(path string, content []byte, mode fs.FileMode) (string, error) {
	dir := filepath.Dir(path)
	for range 8 {
		// A short name: the link's own name may be as long as the system allows.
		tmp := filepath.Join(dir, "."+randomName()+".shm-link-tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		err = f.Chmod(mode) // the umask narrowed the mode given to open
		if errors.Is(err, errors.ErrUnsupported) {
			err = nil
		}
		if err == nil {
			_, err = f.Write(content)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return "", err
		}
		return tmp, nil
	}
	return "", fmt.Errorf("%w: no free temporary name beside the link", fs.ErrExist)
}

// removeStaleLink removes the link at path if it is stale and reports
// whether the path is now free (or was freed by someone else meanwhile).
// A link whose segment is gone is stale; so is a link whose creator is dead,
// in which case its orphaned segment is removed too. A link whose segment
// exists and whose creator lives is not (free is false, l says what it
// names). Anything at path that is not a link file is someone else's and is
// left alone, with an error matching fs.ErrExist.
func removeStaleLink(path string) (free bool, l LinkInfo, err error) {
	f, err := openLinkFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, l, nil
	}
	if err != nil {
		return false, l, fmt.Errorf("%w: %v (not replacing it)", fs.ErrExist, err)
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return false, l, err
	}
	defer unlockFile(f)
	// Someone may have replaced the link while we waited for the lock.
	if same, err := samePath(f, path); err != nil || !same {
		return err == nil || errors.Is(err, fs.ErrNotExist), l, nil
	}
	l, st, err := readLinkFile(f)
	if err != nil {
		return false, l, fmt.Errorf("%w: %v (not replacing it)", fs.ErrExist, err)
	}
	creatorAlive := l.CreatorAlive()
	segExists := segmentExists(l.Name)
	if creatorAlive && segExists {
		return false, l, nil
	}
	// Stale: remove the link, then the orphan of a dead creator, but only a
	// link of ours whose segment is its owner's, and the segment only once
	// the link is gone.
	if err := mayActOnLink(f, st, l.Name); err != nil {
		return false, l, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, l, err
	}
	if segExists {
		osRemove(l.Name)
	}
	return true, l, nil
}

// removeLinkIfNames removes the link at path if it is still the file st
// (the link this segment was created or opened with) and names the segment
// name: a link replaced by another creator is left alone.
func removeLinkIfNames(path, name string, st fs.FileInfo) error {
	f, err := openLinkFile(path)
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
	l, cur, err := readLinkFile(f)
	if err != nil || l.Name != name || st == nil || !os.SameFile(st, cur) {
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
	s, err := openNamed(name, &options{readOnly: true})
	if err == nil {
		s.Close()
		return true
	}
	return !errors.Is(err, fs.ErrNotExist)
}
