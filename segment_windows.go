package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/go-shm/shm/internal/futex"
)

// On Windows a segment is a named file mapping backed by the paging file
// (CreateFileMappingW with INVALID_HANDLE_VALUE), in the session's Local\
// namespace, or in Global\ with the Global option. Its name lives as long as
// some process holds a handle to it: see osRemove for what Remove does.
//
// Windows rounds a mapping up to whole pages and tells an opener only that
// rounded size. So every mapping this package creates is size+trailerSize
// bytes, and the last trailerSize bytes of the (rounded) view hold a trailer
// the user never sees, since Bytes stops at size:
//
//	[0, size)                 the user's bytes (Bytes), at the start of the
//	                          view, where a raw C or Python peer sees them too
//	[size, R-trailerSize)     rounding slack, zero
//	R-trailerSize + 0         futex.Buckets words: the wait/wake table
//	R-trailerSize + 1024      flags (uint64): flagRemoved once Remove ran
//	R-trailerSize + 1032      size (uint64): the size the creator asked for
//	R-trailerSize + 1040      magic (uint64): trailerMagic, stored last
//
// where R is the size of the view as the system reports it (VirtualQuery).
// The user's bytes come first, rather than after a header, so that a peer
// that knows nothing of the trailer (Python's multiprocessing.shared_memory,
// a C program) sees the same bytes at the same offsets. An opener that
// finds no trailer (a mapping made by such a peer) takes the whole view as
// the segment, as Python does.
//
// The trailer is written just after the mapping is created, so an opener can
// map it before it is there. To tell that moment from a foreign mapping
// without guessing, the creator holds a named event "<name>/init" from before
// it creates the mapping until the trailer is written: an opener that finds
// no trailer while that event exists waits for it to be set.

type osSegment struct {
	h        windows.Handle // the file mapping
	view     uintptr        // start of the mapped view
	r        uintptr        // size of the view, as the system rounded it
	readOnly bool           // the view is read-only
	obj      string         // the mapping's name, with its namespace
}

const (
	trailerSize = futex.Buckets*8 + 24
	// "\x00shmwin2", little-endian. Version 2: the bucket words hold the
	// wake protocol of internal/futex that survives a waker's death (sig),
	// which version 1 processes would not keep; they see no trailer here.
	trailerMagic = 0x32_6e_69_77_6d_68_73_00
	flagRemoved  = 1
	// initWait bounds how long an opener waits for a creator that is
	// writing the trailer (a few microseconds of work).
	initWait = 5 * time.Second
)

type trailer struct {
	buckets [futex.Buckets]uint64
	flags   uint64
	size    uint64
	magic   uint64
}

var _ [trailerSize - unsafe.Sizeof(trailer{})]struct{} // sizes agree
var _ [unsafe.Sizeof(trailer{}) - trailerSize]struct{}

var (
	kernel32             = windows.NewLazySystemDLL("kernel32.dll")
	procOpenFileMappingW = kernel32.NewProc("OpenFileMappingW")
)

// objectName is the mapping's name in the system's object namespace.
func objectName(name string, o *options) (string, error) {
	if strings.IndexByte(name, '\\') >= 0 {
		return "", &NameError{Name: name, Rule: `'\' is not allowed in Windows object names`}
	}
	if o.global {
		return `Global\` + name, nil
	}
	return `Local\` + name, nil
}

func osCreate(name string, size int, o *options) ([]byte, osSegment, error) {
	obj, err := objectName(name, o)
	if err != nil {
		return nil, osSegment{}, err
	}
	// The init event, first: see the comment at the top.
	initEv, err := createInitEvent(obj)
	if err != nil {
		return nil, osSegment{}, err
	}
	defer func() {
		windows.SetEvent(initEv)
		windows.CloseHandle(initEv)
	}()
	wname, err := windows.UTF16PtrFromString(obj)
	if err != nil {
		return nil, osSegment{}, err
	}
	total := uint64(size) + trailerSize
	h, err := windows.CreateFileMapping(windows.InvalidHandle, ownedBySelf(), windows.PAGE_READWRITE,
		uint32(total>>32), uint32(total), wname)
	if err != nil {
		if h != 0 { // ERROR_ALREADY_EXISTS comes with a handle to the existing mapping
			windows.CloseHandle(h)
		}
		return nil, osSegment{}, mapError(err)
	}
	view, r, err := mapView(h, false)
	if err != nil {
		windows.CloseHandle(h)
		return nil, osSegment{}, mapError(err)
	}
	if uint64(r) < total {
		windows.UnmapViewOfFile(view)
		windows.CloseHandle(h)
		return nil, osSegment{}, fmt.Errorf("the system mapped %d bytes of %d", r, total)
	}
	t := trailerAt(view, r)
	atomic.StoreUint64(&t.size, uint64(size))
	atomic.StoreUint64(&t.magic, trailerMagic)
	if o.populate {
		touch(view, r)
	}
	futex.Register(view, uintptr(r), &t.buckets, obj, mappingSecurity(h, obj))
	return unsafe.Slice((*byte)(addr(view)), size), osSegment{h: h, view: view, r: r, obj: obj}, nil
}

// ownedBySelf returns security attributes that name the token's default
// owner as the owner of a new mapping, and nothing else: the DACL, group and
// label come from the token as they would without attributes. On Windows
// this is what a mapping gets anyway; Wine leaves an object created without
// a descriptor with no owner at all, which Open would refuse (see
// trust_windows.go). Should the token not say (it always does), the mapping
// is made with the defaults.
func ownedBySelf() *windows.SecurityAttributes {
	sid, err := tokenOwner(windows.GetCurrentProcessToken())
	if err != nil {
		return nil
	}
	sd, err := windows.NewSecurityDescriptor()
	if err != nil || sd.SetOwner(sid, false) != nil {
		return nil
	}
	return &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
}

func createInitEvent(obj string) (windows.Handle, error) {
	n, err := windows.UTF16PtrFromString(obj + "/init")
	if err != nil {
		return 0, err
	}
	h, err := windows.CreateEvent(nil, 1, 0, n)
	if err != nil && !errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
		return 0, mapError(err)
	}
	return h, nil
}

func osOpen(name string, o *options) ([]byte, osSegment, error) {
	obj, err := objectName(name, o)
	if err != nil {
		return nil, osSegment{}, err
	}
	h, err := openMapping(obj, o.readOnly)
	if err != nil {
		return nil, osSegment{}, err
	}
	if err := o.checkMappingOwner(h, obj); err != nil {
		windows.CloseHandle(h)
		return nil, osSegment{}, err
	}
	view, r, err := mapView(h, o.readOnly)
	if err != nil {
		windows.CloseHandle(h)
		return nil, osSegment{}, mapError(err)
	}
	fail := func(err error) ([]byte, osSegment, error) {
		windows.UnmapViewOfFile(view)
		windows.CloseHandle(h)
		return nil, osSegment{}, err
	}
	t, tsize, err := waitTrailer(obj, view, r)
	if err != nil {
		return fail(err)
	}
	size := uint64(r)
	if t != nil {
		if atomic.LoadUint64(&t.flags)&flagRemoved != 0 {
			return fail(fmt.Errorf("%w: segment was removed (it lives on until its last user closes it)", fs.ErrNotExist))
		}
		size = tsize // read once, and checked, by findTrailer
		if !o.readOnly {
			futex.Register(view, uintptr(r), &t.buckets, obj, mappingSecurity(h, obj))
		}
	}
	if size == 0 || size > maxSize {
		return fail(fmt.Errorf("%w: segment size %d", ErrInvalidSize, size))
	}
	if o.populate {
		touch(view, r)
	}
	return unsafe.Slice((*byte)(addr(view)), int(size)), osSegment{h: h, view: view, r: r, readOnly: o.readOnly, obj: obj}, nil
}

func openMapping(obj string, readOnly bool) (windows.Handle, error) {
	access := uint32(windows.FILE_MAP_READ | windows.FILE_MAP_WRITE)
	if readOnly {
		access = windows.FILE_MAP_READ
	}
	h, err := openMappingFor(obj, access)
	if err != nil {
		return 0, mapError(err)
	}
	return h, nil
}

// openMappingFor opens the mapping named obj with the rights access. Errors
// are the system's (windows.Errno).
func openMappingFor(obj string, access uint32) (windows.Handle, error) {
	wname, err := windows.UTF16PtrFromString(obj)
	if err != nil {
		return 0, err
	}
	r, _, e := procOpenFileMappingW.Call(uintptr(access), 0, uintptr(unsafe.Pointer(wname)))
	if r == 0 {
		return 0, e
	}
	return windows.Handle(r), nil
}

// mappingSecurity returns the DACL and integrity label of the mapping h,
// named obj, for the futex events to copy (nil if they cannot be read). The
// creator's handle may read them; an opener's handle has only the map rights
// it asked for, so it opens the mapping again for READ_CONTROL alone (the
// same mapping: the name cannot change hands while h is open).
func mappingSecurity(h windows.Handle, obj string) *windows.SECURITY_DESCRIPTOR {
	const info = windows.DACL_SECURITY_INFORMATION | windows.LABEL_SECURITY_INFORMATION
	if sd, err := windows.GetSecurityInfo(h, windows.SE_KERNEL_OBJECT, info); err == nil {
		return sd
	}
	rc, err := openMappingFor(obj, windows.READ_CONTROL)
	if err != nil {
		return nil
	}
	defer windows.CloseHandle(rc)
	sd, err := windows.GetSecurityInfo(rc, windows.SE_KERNEL_OBJECT, info)
	if err != nil {
		return nil
	}
	return sd
}

// mapView maps the whole mapping and returns its start and size as the
// system rounded it.
func mapView(h windows.Handle, readOnly bool) (view, size uintptr, err error) {
	access := uint32(windows.FILE_MAP_READ | windows.FILE_MAP_WRITE)
	if readOnly {
		access = windows.FILE_MAP_READ
	}
	view, err = windows.MapViewOfFile(h, access, 0, 0, 0)
	if err != nil {
		return 0, 0, err
	}
	var mbi windows.MemoryBasicInformation
	if err := windows.VirtualQuery(view, &mbi, unsafe.Sizeof(mbi)); err != nil {
		windows.UnmapViewOfFile(view)
		return 0, 0, err
	}
	return view, mbi.RegionSize, nil
}

// addr turns the address of mapped memory, which the Go heap never holds
// and the garbage collector never moves, into a pointer.
func addr(a uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&a)) }

// trailerAt returns the trailer of a view of size r (r >= trailerSize).
func trailerAt(view, r uintptr) *trailer {
	return (*trailer)(addr(view + r - trailerSize))
}

// findTrailer returns the view's trailer and the size it records, or nil if
// the view has none (yet). Any process that maps the segment can rewrite the
// trailer at any time, so the size is read once, here, and checked: callers
// use the size returned, never t.size. A trailer (its magic says this
// package wrote it) whose size does not fit the view is an error, returned
// with t, since the segment is not another program's either.
func findTrailer(view, r uintptr) (t *trailer, size uint64, err error) {
	if r < trailerSize {
		return nil, 0, nil
	}
	t = trailerAt(view, r)
	if atomic.LoadUint64(&t.magic) != trailerMagic {
		return nil, 0, nil
	}
	size = atomic.LoadUint64(&t.size)
	// A trailer this package wrote sits in the last page past its size.
	if size == 0 || size > uint64(r-trailerSize) || uint64(r-trailerSize)-size >= 1<<16 {
		return t, 0, fmt.Errorf("%w: the trailer records %d bytes in a view of %d", ErrInvalidSize, size, r)
	}
	return t, size, nil
}

// waitTrailer returns the trailer of a mapping just opened and its size (see
// findTrailer), waiting for a creator that is still writing it, or nil for a
// mapping made by another program.
func waitTrailer(obj string, view, r uintptr) (*trailer, uint64, error) {
	if t, size, err := findTrailer(view, r); t != nil {
		return t, size, err
	}
	n, err := windows.UTF16PtrFromString(obj + "/init")
	if err != nil {
		return nil, 0, err
	}
	deadline := time.Now().Add(initWait)
	for {
		ev, err := windows.OpenEvent(windows.SYNCHRONIZE, false, n)
		if err != nil {
			// No creator is busy with it: the trailer is there now, or
			// never will be (another program's mapping, or a creator that
			// died before writing it).
			return findTrailer(view, r)
		}
		windows.WaitForSingleObject(ev, 50)
		windows.CloseHandle(ev)
		if t, size, err := findTrailer(view, r); t != nil {
			return t, size, err
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("%w: its creator did not finish creating it within %v", ErrNotReady, initWait)
		}
		// Set by a creator that lost the race for the name while the
		// winner is still at work: try again shortly.
		time.Sleep(time.Millisecond)
	}
}

// touch reads one byte of every page so that the whole view is mapped in
// now, not on first use.
func touch(view, r uintptr) {
	const page = 4096
	var sink byte
	for off := uintptr(0); off < r; off += page {
		sink ^= *(*byte)(addr(view + off))
	}
	_ = sink
}

// osRemove cannot delete a Windows mapping's name: the system deletes the
// mapping when the last handle to it closes, and until then the name stays
// taken. What it does instead is mark the segment removed in its trailer, so
// that Open (and OpenLink) no longer find it, as on POSIX, while processes
// that have it mapped keep using it. The difference that remains: Create of
// the same name fails with fs.ErrExist until every process has closed it.
// A mapping made by another program (no trailer) is left alone.
func osRemove(name string) error {
	obj, err := objectName(name, &options{})
	if err != nil {
		return err
	}
	return removeByName(obj)
}

// removeByName marks the mapping named obj removed, through a view of its
// own. Like Open, it waits for a creator that is still writing the trailer:
// a mapping without one yet is not another program's, and leaving it alone
// would report success while the segment stays openable once its creator
// is done.
func removeByName(obj string) error {
	h, err := openMapping(obj, false)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(h)
	view, r, err := mapView(h, false)
	if err != nil {
		return mapError(err)
	}
	defer windows.UnmapViewOfFile(view)
	t, _, err := waitTrailer(obj, view, r)
	if t == nil && err != nil {
		return err // its creator did not finish (ErrNotReady)
	}
	return markRemoved(t) // marked even if its size is bad
}

// osRemoveOwned marks the segment s removed through its own mapping. Unlike
// Remove it needs no lookup by name, which would only find a segment in
// Local\: a Global\ segment's owner marks its own. A read-only view cannot
// take the mark, so then the mapping is opened again for writing, by the
// name s was opened with: as long as s holds its handle, the name cannot
// name another mapping.
func osRemoveOwned(_ string, s *osSegment) error {
	if s.h == 0 {
		return nil
	}
	if s.readOnly {
		return removeByName(s.obj)
	}
	t, _, _ := findTrailer(s.view, s.r)
	return markRemoved(t)
}

// markRemoved sets flagRemoved in t, or reports fs.ErrNotExist if it was
// set already. A mapping without a trailer (t nil: made by another program)
// is left alone.
func markRemoved(t *trailer) error {
	if t == nil {
		return nil
	}
	for {
		f := atomic.LoadUint64(&t.flags)
		if f&flagRemoved != 0 {
			return fmt.Errorf("%w: segment was already removed", fs.ErrNotExist)
		}
		if atomic.CompareAndSwapUint64(&t.flags, f, f|flagRemoved) {
			return nil
		}
	}
}

func osClose(data []byte, s *osSegment) error {
	if s.h == 0 {
		return nil
	}
	futex.Unregister(s.view)
	err := windows.UnmapViewOfFile(s.view)
	if cerr := windows.CloseHandle(s.h); err == nil {
		err = cerr
	}
	s.h, s.view = 0, 0
	return err
}

// mapError names the common failures with the io/fs errors callers test for
// (the system's error stays wrapped for the details).
func mapError(err error) error {
	var errno windows.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case windows.ERROR_ALREADY_EXISTS, windows.ERROR_FILE_EXISTS:
		return fmt.Errorf("%w (%v)", fs.ErrExist, errno)
	case windows.ERROR_FILE_NOT_FOUND, windows.ERROR_PATH_NOT_FOUND:
		return fmt.Errorf("%w (%v)", fs.ErrNotExist, errno)
	case windows.ERROR_ACCESS_DENIED, windows.ERROR_PRIVILEGE_NOT_HELD:
		return fmt.Errorf("%w (%v)", fs.ErrPermission, errno)
	case windows.ERROR_INVALID_HANDLE:
		// The name belongs to another kind of object (an event, a mutex).
		return fmt.Errorf("%w: the name is taken by another kind of object (%v)", fs.ErrExist, errno)
	case windows.ERROR_COMMITMENT_LIMIT, windows.ERROR_NOT_ENOUGH_MEMORY, windows.ERROR_OUTOFMEMORY:
		return fmt.Errorf("%w: the paging file cannot back this size (%v)", ErrInvalidSize, errno)
	}
	return err
}
