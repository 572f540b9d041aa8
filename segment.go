package shm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
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
// mmap'd file). Bytes called after Close returns nil.
type Segment struct {
	name     string
	data     []byte // never changes after Create/Open; unmapped by Close
	readOnly bool
	orphaned bool // opened through a link whose creator is dead

	// link is the link file that names this segment: the one Create wrote,
	// or the one OpenLink read. linkFile identifies that file, so that Close
	// removes the link only while it is still that very file.
	link     string
	linkFile fs.FileInfo

	closed atomic.Bool // set under mu; read without it by Bytes

	mu    sync.Mutex
	owner bool
	sys   osSegment

	mng *Managed // the Managed this is the segment of, if any: it closes the segment
}

// Option configures Create, Open, OpenOrCreate and OpenLink. Each option
// says where it applies; elsewhere it is ignored, except WithLink, which is
// an error anywhere but Create.
type Option func(*options)

type options struct {
	mode     fs.FileMode
	readOnly bool
	link     string
	populate bool
	global   bool
	trust    []int // users whose segments and links we use besides ourselves and root
	trustAny bool  // use segments and links whoever owns them

	modeSet  bool     // WithMode was given
	conflict []string // options given twice with different values

	// init, if set, fills a new segment's memory before other processes can
	// open it where the system allows that (Linux: before the name is
	// linked), else right after creation. initDone says osCreate ran it.
	init     func([]byte)
	initDone bool
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

// conflictErr returns an error for options that contradict each other, or
// nil.
func (o *options) conflictErr() error {
	if len(o.conflict) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrConflict, strings.Join(o.conflict, "; "))
}

// WithMode sets the permission bits of a new segment. The default is 0600:
// only the creating user may open it. The process umask does not apply. A
// link file gets the read bits of mode, and is writable only by its creator.
// It applies to Create and to the create half of OpenOrCreate.
func WithMode(mode fs.FileMode) Option {
	return func(o *options) {
		if o.modeSet && o.mode != mode.Perm() {
			o.conflict = append(o.conflict, fmt.Sprintf("WithMode(%#o) and WithMode(%#o)", o.mode, mode.Perm()))
		}
		o.mode, o.modeSet = mode.Perm(), true
	}
}

// ReadOnly opens a segment without write access: Bytes is then a read-only
// mapping (PROT_READ on Unix), and writing to it faults (WriteAt returns an
// error instead). Locks and events write to their memory, waiting included:
// View refuses a type that holds one on a read-only segment, and the
// managed API's locks and events answer fs.ErrPermission there. It applies
// to Open, OpenLink and the open half of OpenOrCreate; Create ignores it.
func ReadOnly() Option {
	return func(o *options) { o.readOnly = true }
}

// WithLink makes Create also write a link file at path that names the new
// segment, so that other processes can find it with OpenLink. The link is
// written atomically (never seen half-written), exclusively (of concurrent
// creators of one path exactly one wins, the others get fs.ErrExist), and is
// removed with the segment by the owner's Close. A stale link (its segment
// gone, or its creator dead) is replaced; a dead creator's segment is removed
// with it. A path that holds anything but a link file is never replaced.
//
// WithLink is for Create only: Open, OpenOrCreate and OpenLink refuse it.
func WithLink(path string) Option {
	return func(o *options) {
		if o.link != "" && o.link != path {
			o.conflict = append(o.conflict, fmt.Sprintf("WithLink(%s) and WithLink(%s)", quote(o.link), quote(path)))
		}
		o.link = path
	}
}

// Populate pre-faults the whole mapping when it is made (MAP_POPULATE on
// Linux), so that the first touch of each page does not take a page fault.
// Worth it for large segments that will be touched soon anyway.
func Populate() Option {
	return func(o *options) { o.populate = true }
}

// withInit sets the hook that fills a new segment's memory before other
// processes can open it where the system allows that.
func withInit(f func([]byte)) Option {
	return func(o *options) { o.init = f }
}

// TrustOwner lets Open, OpenOrCreate, OpenLink and OpenManaged use a
// segment, or a link file, owned by one of the users uids (numeric user
// IDs) as well as by the calling user and root.
//
// By default they refuse, with an error matching fs.ErrPermission that
// names the owner, a segment or link file that belongs to any other user:
// segments live in a directory every user may write (/dev/shm), so another
// user can create a name before you do (squat it) with content of their
// choosing, then shrink or rewrite it under you. Pass TrustOwner for a peer
// that runs as another user on purpose. On Windows users are not numbered:
// TrustOwner is ignored there, and segments and link files of anyone but
// this user, Administrators and LocalSystem need TrustAnyOwner.
func TrustOwner(uids ...int) Option {
	return func(o *options) { o.trust = append(o.trust, uids...) }
}

// TrustAnyOwner lets Open, OpenOrCreate, OpenLink and OpenManaged use a
// segment or link file whoever owns it (see TrustOwner for what that risks).
func TrustAnyOwner() Option {
	return func(o *options) { o.trustAny = true }
}

// Global makes Windows segments live in the Global\ namespace (visible across
// sessions; needs SeCreateGlobalPrivilege to create) instead of Local\. It
// has no effect on other systems.
func Global() Option {
	return func(o *options) { o.global = true }
}

// Create makes a new segment of size bytes, zero-filled, and maps it
// read-write.
//
// It fails with an error matching fs.ErrExist if the name is taken. The empty
// name picks a random unused name (see Name). The caller owns the new
// segment. On Linux the memory is reserved up front, so a full /dev/shm is
// reported here (ENOSPC) instead of as a SIGBUS on first touch, and no other
// process can see the segment before it has its full size.
func Create(name string, size int, opts ...Option) (*Segment, error) {
	o := collect(opts)
	if err := checkSize("create", name, size); err != nil {
		return nil, err
	}
	if err := o.conflictErr(); err != nil {
		return nil, &Error{Op: "create", Name: name, Err: err}
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
		return nil, &Error{Op: "create", Name: "", Err: fmt.Errorf("%w: no free random name found", fs.ErrExist)}
	}
	n, err := cleanNewName(name)
	if err != nil {
		return nil, err
	}
	return createNamed(n, size, o)
}

func createNamed(n string, size int, o *options) (*Segment, error) {
	o.initDone = false
	data, sys, err := osCreate(n, size, o)
	if err != nil {
		return nil, &Error{Op: "create", Name: n, Err: err}
	}
	if o.init != nil && !o.initDone {
		o.init(data)
	}
	return mapped(&Segment{name: n, data: data, owner: true, sys: sys}), nil
}

func checkSize(op, name string, size int) error {
	if size <= 0 || uint64(size) > maxSize {
		return &Error{Op: op, Name: name, Err: fmt.Errorf("%w: %d bytes (must be 1 to %d)", ErrInvalidSize, size, uint64(maxSize))}
	}
	return nil
}

// maxSize bounds a segment's size: no system maps more than this (half the
// address space of a 64-bit machine), and it keeps size arithmetic from
// overflowing. The system usually refuses far smaller sizes, with ENOSPC or
// ENOMEM.
const maxSize = math.MaxInt >> 1

// Open maps an existing segment. Its size is the size the system reports
// (on Windows, the size its creator asked for). A missing name gives an error
// matching fs.ErrNotExist; a segment the caller may not open (or may not open
// for writing, without ReadOnly) gives one matching fs.ErrPermission. The
// caller does not own the segment.
func Open(name string, opts ...Option) (*Segment, error) {
	n, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	o := collect(opts)
	if o.link != "" {
		return nil, errLinkOption("open", n)
	}
	return openNamed(n, o)
}

func openNamed(n string, o *options) (*Segment, error) {
	data, sys, err := osOpen(n, o)
	if err != nil {
		return nil, &Error{Op: "open", Name: n, Err: err}
	}
	return mapped(&Segment{name: n, data: data, readOnly: o.readOnly, sys: sys}), nil
}

func errLinkOption(op, name string) error {
	return &Error{Op: op, Name: name, Err: fmt.Errorf("%w: WithLink applies to Create only", errors.ErrUnsupported)}
}

// OpenOrCreate opens the segment name if it exists and creates it with size
// bytes if it does not, without a race: of several processes calling it at
// once, exactly one creates (and gets created == true and ownership), the
// others open what it created, already at its full size. An existing segment
// keeps its own size, which may differ from size. The creator's mapping is
// always read-write; ReadOnly applies to the openers.
//
// Peers that start in any order should all call OpenOrCreate, and the one
// that created should stay until the others have opened (or call
// SetOwner(false)): if the owner closes first, the name is removed and a
// late peer creates a fresh segment.
func OpenOrCreate(name string, size int, opts ...Option) (seg *Segment, created bool, err error) {
	if err := checkSize("open or create", name, size); err != nil {
		return nil, false, err
	}
	n, err := cleanNewName(name)
	if err != nil {
		return nil, false, err
	}
	o := collect(opts)
	if o.link != "" {
		return nil, false, errLinkOption("open or create", n)
	}
	if err := o.conflictErr(); err != nil {
		return nil, false, &Error{Op: "open or create", Name: n, Err: err}
	}
	for range 100 {
		seg, err = createNamed(n, size, o)
		if !errors.Is(err, fs.ErrExist) {
			return seg, err == nil, err
		}
		seg, err = openNamed(n, o)
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
// A missing name gives an error matching fs.ErrNotExist.
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

// Size returns the size of the segment in bytes (0 after Close).
func (s *Segment) Size() int { return len(s.Bytes()) }

// Bytes returns the whole mapping; len(Bytes()) == Size(). The slice is valid
// until Close, and Bytes returns nil after Close. It is read-only if the
// segment was opened with ReadOnly: writing to it then faults.
func (s *Segment) Bytes() []byte {
	if s.closed.Load() {
		return nil
	}
	return s.data
}

// ReadOnly reports whether the segment was opened without write access.
func (s *Segment) ReadOnly() bool { return s.readOnly }

// IsOwner reports whether Close will remove the segment's name (false once
// it is closed).
func (s *Segment) IsOwner() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner && !s.closed.Load()
}

// LinkPath returns the path of the link file that names the segment: the
// one Create wrote (WithLink) or OpenLink opened it through; "" if none
// (the model crate's get_flink_path).
func (s *Segment) LinkPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.link
}

// ReadAt copies len(p) bytes of the segment from offset off into p
// (io.ReaderAt). Past the end it copies what there is and returns io.EOF.
// A segment closed, or shrunk by another process, gives an error instead
// of a fault.
func (s *Segment) ReadAt(p []byte, off int64) (n int, err error) {
	b := s.Bytes()
	if b == nil {
		return 0, &Error{Op: "read", Name: s.name, Err: ErrClosed}
	}
	if off < 0 {
		return 0, &Error{Op: "read", Name: s.name, Err: fmt.Errorf("%w: offset %d", ErrRange, off)}
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	n = copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt copies p into the segment at offset off (io.WriterAt). A write
// that does not fit writes nothing and returns an error matching ErrRange;
// on a segment opened ReadOnly it returns one matching fs.ErrPermission
// (rather than faulting as a write through Bytes would). A segment closed,
// or shrunk by another process, gives an error instead of a fault.
func (s *Segment) WriteAt(p []byte, off int64) (n int, err error) {
	b := s.Bytes()
	switch {
	case b == nil:
		return 0, &Error{Op: "write", Name: s.name, Err: ErrClosed}
	case s.readOnly:
		return 0, &Error{Op: "write", Name: s.name, Err: fmt.Errorf("%w: segment opened read-only", fs.ErrPermission)}
	case off < 0 || off > int64(len(b)) || int64(len(p)) > int64(len(b))-off:
		return 0, &Error{Op: "write", Name: s.name, Err: fmt.Errorf("%w: %d bytes at offset %d of %d", ErrRange, len(p), off, len(b))}
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return copy(b[off:], p), nil
}

// SetOwner sets whether Close removes the segment's name (and the link file
// that Create wrote for it, or that OpenLink opened it through, if that link
// still names it).
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
// name and its link file, unless another segment has taken the name (or
// another link the path) meanwhile: those are left alone. Close is
// idempotent: later calls return nil. The Segment of a Managed is closed
// by closing the Managed, which Close then does.
func (s *Segment) Close() error {
	s.mu.Lock()
	m := s.mng
	s.mu.Unlock()
	if m != nil {
		return m.Close()
	}
	return s.close()
}

func (s *Segment) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	s.closed.Store(true)
	var errs []error
	if s.owner {
		if s.link != "" {
			if err := removeLinkIfNames(s.link, s.name, s.linkFile); err != nil {
				errs = append(errs, err)
			}
		}
		if err := osRemoveOwned(s.name, &s.sys); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, &Error{Op: "remove", Name: s.name, Err: err})
		}
	}
	unmapped(s)
	if err := osClose(s.data, &s.sys); err != nil {
		errs = append(errs, &Error{Op: "close", Name: s.name, Err: err})
	}
	return errors.Join(errs...)
}

// The mappings this process made, so that View can tell a read-only one.
var mappings struct {
	sync.Mutex
	list []*Segment
}

func mapped(s *Segment) *Segment {
	mappings.Lock()
	mappings.list = append(mappings.list, s)
	mappings.Unlock()
	return s
}

func unmapped(s *Segment) {
	mappings.Lock()
	defer mappings.Unlock()
	for i, m := range mappings.list {
		if m == s {
			mappings.list = append(mappings.list[:i:i], mappings.list[i+1:]...)
			return
		}
	}
}

// readOnlyAt reports whether addr lies in a mapping of a segment this
// process opened ReadOnly.
func readOnlyAt(addr uintptr) bool {
	mappings.Lock()
	defer mappings.Unlock()
	for _, m := range mappings.list {
		if len(m.data) == 0 {
			continue
		}
		base := uintptr(unsafe.Pointer(&m.data[0]))
		if addr >= base && addr-base < uintptr(len(m.data)) {
			return m.readOnly
		}
	}
	return false
}
