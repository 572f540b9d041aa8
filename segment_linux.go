package shm

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
	"golang.org/x/sys/unix"
)

// On Linux a segment is a file in /dev/shm: the same object glibc's
// shm_open("/name") opens, so C and Python peers see the same bytes.

// Dir is where Linux keeps named shared memory.
const Dir = "/dev/shm"

// osSegment remembers which file the segment is, so that an owner's Close
// removes the name only while it still names this segment, and keeps a
// descriptor of it open while it is mapped: on that descriptor this process
// holds its liveness lock (internal/owner), by which other processes tell
// that a lock holder is still there.
type osSegment struct {
	dev, ino uint64
	fd       int
	hasFD    bool
}

func shmPath(name string) string { return Dir + "/" + name }

// osCreate creates the segment so that no other process can ever see it
// half-made: the memory is an unnamed O_TMPFILE in /dev/shm, sized and
// reserved with fallocate, then linked under its name with linkat, which
// fails with EEXIST if the name is taken. A crash before the link leaves
// nothing behind. Where O_TMPFILE cannot be used (old kernels, or no /proc
// to link it through), it falls back to O_CREAT|O_EXCL, and openers may then
// briefly see a zero size (Open reports that as an empty segment).
func osCreate(name string, size int, o *options) ([]byte, osSegment, error) {
	fd, err := unix.Open(Dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(o.mode))
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, osSegment{}, fmt.Errorf("%s: %w (is a tmpfs mounted there?)", Dir, err)
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
			return nil, osSegment{}, err
		}
		return createExcl(name, size, o)
	}
	sys, err := prepare(fd, size, o)
	if err != nil {
		unix.Close(fd)
		return nil, osSegment{}, err
	}
	data, err := mmapFD(fd, size, false, o.populate)
	if err != nil {
		unix.Close(fd)
		return nil, osSegment{}, err
	}
	if err := attachFD(fd, data, &sys); err != nil {
		unix.Munmap(data)
		unix.Close(fd)
		return nil, osSegment{}, err
	}
	if o.init != nil {
		// Nobody can see the memory yet: whatever init writes is there
		// when the name appears.
		o.init(data)
	}
	if err := linkTmp(fd, shmPath(name)); err != nil {
		osClose(data, &sys)
		if errors.Is(err, unix.EEXIST) {
			return nil, osSegment{}, err
		}
		// No way to name the unnamed file: make a named one instead.
		return createExcl(name, size, o)
	}
	o.initDone = o.init != nil
	return data, sys, nil
}

// createExcl is the fallback: create the name exclusively, then size it.
func createExcl(name string, size int, o *options) ([]byte, osSegment, error) {
	fd, err := unix.Open(shmPath(name), unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_CREAT|unix.O_EXCL, uint32(o.mode))
	if err != nil {
		return nil, osSegment{}, err
	}
	sys, err := prepare(fd, size, o)
	if err == nil {
		var data []byte
		data, err = mmapFD(fd, size, false, o.populate)
		if err == nil {
			if err = attachFD(fd, data, &sys); err == nil {
				return data, sys, nil
			}
			unix.Munmap(data)
		}
	}
	unix.Close(fd)
	unix.Unlink(shmPath(name))
	return nil, osSegment{}, err
}

// prepare sets the new file's mode and size, reserving its memory, and
// returns its identity.
func prepare(fd, size int, o *options) (osSegment, error) {
	// The umask applied to the mode given to open; set exactly what was asked.
	if err := unix.Fchmod(fd, uint32(o.mode)); err != nil {
		return osSegment{}, err
	}
	if err := reserve(fd, size); err != nil {
		return osSegment{}, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return osSegment{}, err
	}
	return osSegment{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// reserve sizes the file and allocates its memory now, so that a full
// /dev/shm is an error here rather than a SIGBUS on first touch.
func reserve(fd, size int) error {
	var err error
	for range 100 {
		// tmpfs gives up a large fallocate when a signal arrives (and frees
		// what it had allocated): start again.
		err = unix.Fallocate(fd, 0, 0, int64(size))
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EOPNOTSUPP):
		// Not tmpfs: at least give it its size.
		return unix.Ftruncate(fd, int64(size))
	case errors.Is(err, unix.ENOSPC):
		var sfs unix.Statfs_t
		free := "?"
		if unix.Fstatfs(fd, &sfs) == nil {
			free = strconv.FormatUint(uint64(sfs.Bavail)*uint64(sfs.Bsize), 10)
		}
		return fmt.Errorf("%w: %s has room for %s bytes, not %d (a container may need a larger --shm-size)", err, Dir, free, size)
	case errors.Is(err, unix.EFBIG):
		return fmt.Errorf("%w: %d bytes is larger than %s allows", err, size, Dir)
	}
	return err
}

// linkTmp gives the O_TMPFILE fd a name. AT_EMPTY_PATH needs
// CAP_DAC_READ_SEARCH; the /proc/self/fd route works for everyone.
func linkTmp(fd int, path string) error {
	err := unix.Linkat(fd, "", unix.AT_FDCWD, path, unix.AT_EMPTY_PATH)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return err
	}
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
}

func osOpen(name string, o *options) ([]byte, osSegment, error) {
	flags := unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	if o.readOnly {
		flags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	}
	fd, err := unix.Open(shmPath(name), flags, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = fmt.Errorf("%w: %s is a symbolic link; refusing to follow it", err, shmPath(name))
		}
		if errors.Is(err, unix.EACCES) && !o.readOnly {
			if rfd, rerr := unix.Open(shmPath(name), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0); rerr == nil {
				unix.Close(rfd)
				err = fmt.Errorf("%w (you may read it: open it with shm.ReadOnly())", err)
			}
		}
		return nil, osSegment{}, err
	}
	data, sys, err := openFD(fd, o)
	if err != nil {
		unix.Close(fd)
	}
	return data, sys, err
}

// openFD maps the segment file fd for Open and attaches it.
func openFD(fd int, o *options) ([]byte, osSegment, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, osSegment{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, osSegment{}, fmt.Errorf("not a shared-memory object (%s)", fileType(st.Mode))
	}
	if err := o.checkOwner("the segment", st.Uid); err != nil {
		return nil, osSegment{}, err
	}
	if st.Size <= 0 {
		return nil, osSegment{}, fmt.Errorf("%w: segment is empty (size 0)", ErrInvalidSize)
	}
	if uint64(st.Size) > maxSize {
		return nil, osSegment{}, fmt.Errorf("%w: segment size %d is too large to map", ErrInvalidSize, st.Size)
	}
	data, err := mmapFD(fd, int(st.Size), o.readOnly, o.populate)
	if err != nil {
		return nil, osSegment{}, err
	}
	sys := osSegment{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	if err := attachFD(fd, data, &sys); err != nil {
		unix.Munmap(data)
		return nil, osSegment{}, err
	}
	return data, sys, nil
}

// attachFD takes this process's liveness lock on the segment file fd, mapped
// at data, and keeps fd in sys until osClose.
func attachFD(fd int, data []byte, sys *osSegment) error {
	if err := owner.Attach(fd, uintptr(unsafe.Pointer(unsafe.SliceData(data))), uintptr(len(data))); err != nil {
		return fmt.Errorf("take the liveness lock (fcntl F_OFD_SETLK): %w", err)
	}
	sys.fd, sys.hasFD = fd, true
	return nil
}

// segmentOwner returns the user that owns the segment name, and whether it
// exists.
func segmentOwner(name string) (uid uint32, exists bool, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(shmPath(name), &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, false, nil
		}
		return 0, false, err
	}
	return st.Uid, true, nil
}

// heldBy reports whether the process t has the segment name open (holds its
// liveness lock on the segment's file). A segment that does not exist is
// held by nobody; one that cannot be opened is taken to be held.
func heldBy(name string, t owner.Token) bool {
	fd, err := unix.Open(shmPath(name), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return !errors.Is(err, unix.ENOENT)
	}
	defer unix.Close(fd)
	return owner.HeldIn(fd, t)
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}

func mmapFD(fd, size int, readOnly, populate bool) ([]byte, error) {
	prot := unix.PROT_READ | unix.PROT_WRITE
	if readOnly {
		prot = unix.PROT_READ
	}
	flags := unix.MAP_SHARED
	if populate {
		flags |= unix.MAP_POPULATE
	}
	data, err := unix.Mmap(fd, 0, size, prot, flags)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return data, nil
}

func osRemove(name string) error {
	return unix.Unlink(shmPath(name))
}

// osRemoveOwned removes the name if it still names the segment sys. Between
// the check and the unlink another process could swap the name; only a
// remove-and-recreate racing with this very Close can hit that window.
func osRemoveOwned(name string, sys *osSegment) error {
	return unlinkIfSame(name, *sys)
}

func unlinkIfSame(name string, sys osSegment) error {
	var st unix.Stat_t
	if err := unix.Lstat(shmPath(name), &st); err != nil {
		return err
	}
	if uint64(st.Dev) != sys.dev || uint64(st.Ino) != sys.ino {
		return nil // someone else's segment now: not ours to remove
	}
	return unix.Unlink(shmPath(name))
}

func osClose(data []byte, sys *osSegment) error {
	if data == nil {
		return nil
	}
	owner.Detach(uintptr(unsafe.Pointer(unsafe.SliceData(data))))
	err := unix.Munmap(data)
	if sys.hasFD {
		unix.Close(sys.fd)
		sys.hasFD = false
	}
	return err
}
