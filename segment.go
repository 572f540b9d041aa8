package shm

import (
	"errors"
	"io/fs"
	"math"
	"sync"
)

// Segment is a named region of shared memory mapped into this process.
//
// Any process on the machine that knows the name (or a link file naming it)
// can open the same region; bytes written by one process through Bytes are
// seen by the others. The process that created a segment is its owner: the
// owner's Close removes the name, so that the segment disappears once every
// process has unmapped it. SetOwner moves that duty (SetOwner(false) leaves
// the segment in place for others; SetOwner(true) on an opener takes it on).
//
// A Segment's methods are safe for concurrent use. The slice returned by
// Bytes must not be used after Close: the memory is unmapped and a later
// access faults (this is the caller's bug, like using a slice of a closed
// mmap'd file).
type Segment struct {
	name     string
	data     []byte
	readOnly bool
	link     string // link file this segment's Create wrote, removed with the name
	orphaned bool   // opened through a link whose creator is dead

	mu     sync.Mutex
	owner  bool
	closed bool
	sys    osSegment
}

// Option configures Create, Open, OpenOrCreate and OpenLink.
type Option func(*options)

type options struct {
	mode     fs.FileMode
	readOnly bool
	link     string
	populate bool
	global   bool
}

func collect(opts []Option) *options {
	o := &options{mode: 0o600}
	for _, f := range opts {
		if f != nil {
			f(o)
		}
	}
	return o
}

// WithMode sets the permission bits of a new segment (and of its link file).
// The default is 0600: only the creating user may open it. The process umask
// does not apply.
func WithMode(mode fs.FileMode) Option {
	return func(o *options) { o.mode = mode.Perm() }
}

// ReadOnly opens a segment without write access: Bytes is then a read-only
// mapping, and writing to it faults. It has no effect on Create.
func ReadOnly() Option {
	return func(o *options) { o.readOnly = true }
}

// WithLink makes Create also write a link file at path that names the new
// segment, so that other processes can find it with OpenLink. The link is
// written atomically (never seen half-written), exclusively (of concurrent
// creators of one path exactly one wins, the others get fs.ErrExist), and is
// removed with the segment by the owner's Close. A stale link (its segment
// gone, or its creator dead) is replaced.
func WithLink(path string) Option {
	return func(o *options) { o.link = path }
}

// Populate pre-faults the whole mapping when it is made (MAP_POPULATE on
// Linux), so that the first touch of each page does not take a page fault.
// Worth it for large segments that will be touched soon anyway.
func Populate() Option {
	return func(o *options) { o.populate = true }
}

// Global makes Windows segments live in the Global\ namespace (visible across
// sessions; needs SeCreateGlobalPrivilege to create) instead of Local\. It
// has no effect on other systems.
func Global() Option {
	return func(o *options) { o.global = true }
}

// Create makes a new segment of size bytes, zero-filled, and maps it.
//
// It fails with an error matching fs.ErrExist if the name is taken. The empty
// name picks a random unused name (see Name). The caller owns the new
// segment. On Linux the memory is reserved up front, so a full /dev/shm is
// reported here (ENOSPC) instead of as a SIGBUS on first touch.
func Create(name string, size int, opts ...Option) (*Segment, error) {
	o := collect(opts)
	if err := checkSize(name, size); err != nil {
		return nil, err
	}
	if o.link != "" {
		return createLinked(name, size, o)
	}
	return create(name, size, o)
}

// create makes the segment without any link file.
func create(name string, size int, o *options) (*Segment, error) {
	if name == "" {
		// Retry on the (astronomically unlikely) collision.
		for range 8 {
			s, err := createNamed(randomName(), size, o)
			if !errors.Is(err, fs.ErrExist) {
				return s, err
			}
		}
		return nil, &Error{Op: "create", Name: "", Err: fs.ErrExist}
	}
	n, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	return createNamed(n, size, o)
}

func createNamed(n string, size int, o *options) (*Segment, error) {
	data, sys, err := osCreate(n, size, o)
	if err != nil {
		return nil, &Error{Op: "create", Name: n, Err: err}
	}
	return &Segment{name: n, data: data, owner: true, sys: sys}, nil
}

func checkSize(name string, size int) error {
	if size <= 0 || uint64(size) > maxSize {
		return &Error{Op: "create", Name: name, Err: ErrInvalidSize}
	}
	return nil
}

// maxSize bounds a segment's size: the largest a mapping can be on a 64-bit
// system is far below this, and it keeps size arithmetic from overflowing.
const maxSize = math.MaxInt64 >> 1

// Open maps an existing segment. Its size is the size the system reports
// (on Windows, the size its creator asked for). A missing name gives an error
// matching fs.ErrNotExist; a segment the caller may not open gives one
// matching fs.ErrPermission. The caller does not own the segment.
func Open(name string, opts ...Option) (*Segment, error) {
	n, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	o := collect(opts)
	data, sys, err := osOpen(n, o)
	if err != nil {
		return nil, &Error{Op: "open", Name: n, Err: err}
	}
	return &Segment{name: n, data: data, readOnly: o.readOnly, sys: sys}, nil
}

// OpenOrCreate opens the segment name if it exists and creates it with size
// bytes if it does not, without a race: of several processes calling it at
// once, exactly one creates (and gets created == true and ownership), the
// others open what it created, already at its full size. An existing segment
// keeps its own size, which may differ from size.
func OpenOrCreate(name string, size int, opts ...Option) (seg *Segment, created bool, err error) {
	if err := checkSize(name, size); err != nil {
		return nil, false, err
	}
	n, err := cleanName(name)
	if err != nil {
		return nil, false, err
	}
	o := collect(opts)
	o.link = ""
	for range 100 {
		seg, err = createNamed(n, size, o)
		if !errors.Is(err, fs.ErrExist) {
			return seg, err == nil, err
		}
		seg, err = Open(n, opts...)
		if !errors.Is(err, fs.ErrNotExist) {
			return seg, false, err
		}
		// Removed between our create and open: go round again.
	}
	return nil, false, &Error{Op: "open or create", Name: n, Err: errors.New("name keeps appearing and disappearing")}
}

// Remove removes the segment's name. Processes that have it mapped keep
// their mapping, which stays valid until they close it (POSIX semantics; on
// Windows a segment lives while any process has it open, see the README).
func Remove(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if err := osRemove(n); err != nil {
		return &Error{Op: "remove", Name: n, Err: err}
	}
	return nil
}

// Name returns the segment's name, without a leading '/'. A C or Python peer
// passes "/"+Name() to shm_open.
func (s *Segment) Name() string { return s.name }

// Size returns the size of the segment in bytes.
func (s *Segment) Size() int { return len(s.data) }

// Bytes returns the whole mapping; len(Bytes()) == Size(). The slice is valid
// until Close. It is read-only if the segment was opened with ReadOnly.
func (s *Segment) Bytes() []byte { return s.data }

// ReadOnly reports whether the segment was opened without write access.
func (s *Segment) ReadOnly() bool { return s.readOnly }

// IsOwner reports whether Close will remove the segment's name.
func (s *Segment) IsOwner() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner
}

// SetOwner sets whether Close removes the segment's name (and the link file
// that Create wrote for it).
func (s *Segment) SetOwner(owner bool) {
	s.mu.Lock()
	s.owner = owner
	s.mu.Unlock()
}

// Orphaned reports whether the segment was opened through a link file whose
// creator process is no longer alive. The segment itself still exists and its
// data may be worth recovering; see OpenLink.
func (s *Segment) Orphaned() bool { return s.orphaned }

// Close unmaps the segment. If the caller owns it, Close also removes its
// name and its link file. Close is idempotent: later calls return nil.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.owner {
		if s.link != "" {
			if err := removeLinkIfNames(s.link, s.name); err != nil {
				errs = append(errs, err)
			}
		}
		if err := osRemove(s.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, &Error{Op: "remove", Name: s.name, Err: err})
		}
	}
	if err := osClose(s.data, &s.sys); err != nil {
		errs = append(errs, &Error{Op: "close", Name: s.name, Err: err})
	}
	s.data = nil
	return errors.Join(errs...)
}
