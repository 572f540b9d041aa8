package shm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// Config describes a managed segment: user data of Size bytes, locks that
// each guard a byte range of it, and events. Create writes the description
// into a header at the start of the segment, so that a process that opens
// it (OpenManaged, OpenManagedLink) finds every lock and event by index
// without any configuration of its own.
type Config struct {
	Name   string      // segment name; "" picks a random one
	Link   string      // if set, a link file naming the segment is written here
	Size   int         // bytes of user data
	Mode   fs.FileMode // permissions of the segment and link; 0 means 0600
	Locks  []LockSpec  // locks, by index
	Events []EventKind // events, by index
}

// AddLock adds a lock of the given kind that guards data[offset:offset+length]
// and returns its index.
func (c *Config) AddLock(kind LockKind, offset, length int) int {
	c.Locks = append(c.Locks, LockSpec{Kind: kind, Offset: offset, Len: length})
	return len(c.Locks) - 1
}

// AddEvent adds an event of the given kind and returns its index.
func (c *Config) AddEvent(kind EventKind) int {
	c.Events = append(c.Events, kind)
	return len(c.Events) - 1
}

// Managed is a segment with a header that describes its locks and events.
// Its methods are safe for concurrent use.
type Managed struct {
	seg  *Segment
	l    layout
	data []byte

	mu     sync.Mutex
	closed bool
	efds   []*EventFD // opened eventfd events, by event index
	server efdServer  // the creator's eventfd server (Linux)
}

// Create makes a managed segment as described by c (see Config), and
// returns it owned by the caller. Locks must guard non-overlapping ranges
// inside the data. opts may add Populate or Global (Linux/Windows specifics)
// and may give the link (WithLink) or mode (WithMode) instead of c.
func (c Config) Create(opts ...Option) (*Managed, error) {
	name := c.Name
	if err := checkConfig(c.Size, c.Locks, c.Events); err != nil {
		return nil, &Error{Op: "create managed", Name: name, Err: err}
	}
	o := collect(opts)
	if c.Mode != 0 {
		o.mode = c.Mode.Perm()
	}
	if c.Link != "" {
		o.link = c.Link
	}
	link := o.link
	o.link = ""
	l, total := plan(uint64(c.Size), c.Locks, c.Events)
	if err := checkSize("create managed", name, int(total)); err != nil {
		return nil, err
	}
	if link != "" {
		// A stale link is cleared first, a live one fails before we make a
		// segment for nothing (as Create does).
		if err := freeLinkPath(link); err != nil {
			return nil, &Error{Op: "create link", Name: link, Err: err}
		}
	}
	if !eventFDSupported {
		for i, k := range c.Events {
			if k == EventFDAuto || k == EventFDManual {
				return nil, &Error{Op: "create managed", Name: name, Err: fmt.Errorf("event %d: %v: %w (eventfd is Linux only)", i, k, errors.ErrUnsupported)}
			}
		}
	}
	var nonce [8]byte
	rand.Read(nonce[:])
	self := owner.Self()
	// The header is written before the segment can be opened where the
	// system allows it (Linux), so an opener never sees it half-made there;
	// elsewhere the ready state, published last, tells openers to wait.
	o.init = func(b []byte) {
		atomic.StoreUint32(stateWord(b), stateInit)
		l.write(b, self)
		l.writeEventFDSlots(b, self, nonce)
		atomic.StoreUint32(stateWord(b), stateReady)
	}
	seg, err := create(name, int(total), o)
	if err != nil {
		return nil, err
	}
	b := seg.Bytes()
	m := &Managed{seg: seg, l: l, data: b[l.dataOff : l.dataOff+l.dataSize : l.dataOff+l.dataSize]}
	m.efds = make([]*EventFD, len(l.events))
	if err := m.createEventFDs(nonce); err != nil {
		m.Close()
		return nil, &Error{Op: "create managed", Name: seg.name, Err: err}
	}
	if link != "" {
		st, err := writeLink(link, seg.name, o.mode)
		if err != nil {
			m.Close()
			return nil, &Error{Op: "create link", Name: link, Err: err}
		}
		seg.mu.Lock()
		seg.link, seg.linkFile = link, st
		seg.mu.Unlock()
	}
	return m, nil
}

func stateWord(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[offState])) }

// ReadyTimeout is how long OpenManaged waits for a segment's creator to
// finish writing its header.
var ReadyTimeout = 5 * time.Second

// OpenManaged opens the managed segment name, waiting (up to ReadyTimeout)
// for its creator to finish writing the header if it is still at it. A
// segment that does not carry this package's header gives ErrNotManaged; a
// damaged header, ErrCorrupt; a creator that died or never finished,
// ErrNotReady.
func OpenManaged(name string, opts ...Option) (*Managed, error) {
	seg, err := Open(name, opts...)
	if err != nil {
		return nil, err
	}
	return attach(seg)
}

// OpenManagedLink opens the managed segment named by the link file at path
// (see OpenLink and OpenManaged).
func OpenManagedLink(path string, opts ...Option) (*Managed, error) {
	seg, err := OpenLink(path, opts...)
	if err != nil {
		return nil, err
	}
	return attach(seg)
}

func attach(seg *Segment) (*Managed, error) {
	l, err := faultSafeLayout(seg.Bytes(), ReadyTimeout)
	if err != nil {
		seg.Close()
		return nil, &Error{Op: "open managed", Name: seg.name, Err: err}
	}
	m := &Managed{seg: seg, l: l, data: seg.data[l.dataOff : l.dataOff+l.dataSize : l.dataOff+l.dataSize]}
	m.efds = make([]*EventFD, len(l.events))
	return m, nil
}

// faultSafeLayout is waitLayout for a mapping that another process may
// shrink under us (truncating the file behind it): touching a page past the
// new end faults, which here becomes ErrCorrupt instead of a crash.
func faultSafeLayout(b []byte, timeout time.Duration) (l layout, err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = corrupt("the segment shrank while its header was read (%v)", r)
		}
	}()
	return waitLayout(b, timeout)
}

// waitLayout waits for the header in b to be ready and parses it.
func waitLayout(b []byte, timeout time.Duration) (layout, error) {
	if len(b) < headerSize {
		return layout{}, fmt.Errorf("%w: %d bytes is too small for the header", ErrNotManaged, len(b))
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for sleep := 10 * time.Microsecond; ; {
		st := atomic.LoadUint32(stateWord(b))
		if st == stateReady {
			return parseLayout(b)
		}
		switch {
		case !hasMagic(b):
			if !allZero(b[:headerSize]) || time.Since(start) > zeroHeaderWait {
				// Not being created by us: whatever it is, it is not ours.
				return layout{}, ErrNotManaged
			}
		case st != stateInit:
			return layout{}, corrupt("state %d", st)
		default:
			// The creator fields may not be written yet (then zero).
			if c := headerCreator(b); c != 0 && !owner.Alive(unsafe.Pointer(&b[offCreator]), c) {
				return layout{}, fmt.Errorf("%w: its creator (pid %d) died while writing the header", ErrNotReady, c.PID())
			}
		}
		if time.Now().After(deadline) {
			if !hasMagic(b) {
				return layout{}, fmt.Errorf("%w: no header after %v", ErrNotManaged, timeout)
			}
			return layout{}, fmt.Errorf("%w: header still being written after %v", ErrNotReady, timeout)
		}
		time.Sleep(sleep)
		if sleep < 10*time.Millisecond {
			sleep *= 2
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Segment returns the underlying segment (for its name, size and owner
// settings).
func (m *Managed) Segment() *Segment { return m.seg }

// Name returns the segment's name.
func (m *Managed) Name() string { return m.seg.name }

// Data returns the user data: all of it, whichever locks guard parts of it.
// Access a guarded range through a Guard instead, while holding its lock.
func (m *Managed) Data() []byte { return m.data }

// NumLocks returns how many locks the segment has.
func (m *Managed) NumLocks() int { return len(m.l.locks) }

// NumEvents returns how many events the segment has.
func (m *Managed) NumEvents() int { return len(m.l.events) }

// LockSpec returns the kind and range of lock i.
func (m *Managed) LockSpec(i int) (LockSpec, error) {
	if i < 0 || i >= len(m.l.locks) {
		return LockSpec{}, m.rangeErr("lock", i, len(m.l.locks))
	}
	e := m.l.locks[i]
	return LockSpec{Kind: e.kind, Offset: int(e.offset), Len: int(e.size)}, nil
}

// EventKind returns the kind of event i.
func (m *Managed) EventKind(i int) (EventKind, error) {
	if i < 0 || i >= len(m.l.events) {
		return 0, m.rangeErr("event", i, len(m.l.events))
	}
	return m.l.events[i].kind, nil
}

func (m *Managed) rangeErr(what string, i, n int) error {
	return &Error{Op: what, Name: m.seg.name, Err: fmt.Errorf("%w: %s %d of %d", ErrRange, what, i, n)}
}

// Guard is a held lock on a byte range of a managed segment. Bytes returns
// the range; Unlock releases the lock. The zero Guard holds nothing.
type Guard struct {
	data []byte
	mu   *Mutex
	rw   *RWMutex
	read bool
}

// Bytes returns the guarded bytes. For a read guard, write nothing to them.
func (g Guard) Bytes() []byte { return g.data }

// Unlock releases the lock. Use the guard's bytes no more afterwards.
func (g Guard) Unlock() {
	switch {
	case g.mu != nil:
		g.mu.Unlock()
	case g.rw != nil && g.read:
		g.rw.RUnlock()
	case g.rw != nil:
		g.rw.Unlock()
	}
}

func (m *Managed) prim(off uint64) unsafe.Pointer {
	return unsafe.Pointer(&m.seg.data[off])
}

func (m *Managed) lockAt(i int) (lockEntry, error) {
	if i < 0 || i >= len(m.l.locks) {
		return lockEntry{}, m.rangeErr("lock", i, len(m.l.locks))
	}
	if m.seg.readOnly {
		return lockEntry{}, &Error{Op: "lock", Name: m.seg.name, Err: fmt.Errorf("%w: segment opened read-only", fs.ErrPermission)}
	}
	return m.l.locks[i], nil
}

func (m *Managed) guard(e lockEntry, read bool) Guard {
	g := Guard{data: m.data[e.offset : e.offset+e.size : e.offset+e.size], read: read}
	if e.kind == LockMutex {
		g.mu = (*Mutex)(m.prim(e.prim))
	} else {
		g.rw = (*RWMutex)(m.prim(e.prim))
	}
	return g
}

func (m *Managed) lock(i int, read bool, dl deadline) (Guard, error) {
	e, err := m.lockAt(i)
	if err != nil {
		return Guard{}, err
	}
	g := m.guard(e, read)
	switch {
	case g.mu != nil:
		if !atomic.CompareAndSwapUint64(&g.mu.state, 0, selfWord) {
			err = g.mu.lockSlow(dl, 1)
		}
	case read:
		if !g.rw.tryRLock() {
			err = g.rw.rlockSlow(dl)
		}
	default:
		err = g.rw.lockSlow(dl)
	}
	if err != nil && err != ErrOwnerDead {
		return Guard{}, err
	}
	return g, err
}

// Lock locks lock i for writing (a mutex simply locks) and returns a guard
// over its range. If the lock's previous holder died holding it, Lock
// returns the guard together with ErrOwnerDead: the lock is held, and the
// data may need repair before MarkConsistent(i).
func (m *Managed) Lock(i int) (Guard, error) { return m.lock(i, false, noDeadline()) }

// LockTimeout is Lock waiting at most d (ErrTimeout after that).
func (m *Managed) LockTimeout(i int, d time.Duration) (Guard, error) {
	return m.lock(i, false, timeoutDeadline(d))
}

// LockContext is Lock waiting until ctx is done (ctx.Err() after that).
func (m *Managed) LockContext(ctx context.Context, i int) (Guard, error) {
	if err := ctx.Err(); err != nil {
		return Guard{}, err
	}
	return m.lock(i, false, ctxDeadline(ctx))
}

// TryLock locks lock i for writing if it is free.
func (m *Managed) TryLock(i int) (Guard, bool) {
	e, err := m.lockAt(i)
	if err != nil {
		return Guard{}, false
	}
	g := m.guard(e, false)
	if g.mu != nil && g.mu.TryLock() || g.rw != nil && g.rw.TryLock() {
		return g, true
	}
	return Guard{}, false
}

// RLock locks lock i for reading and returns a read guard over its range.
// On a reader/writer lock, readers in any processes hold it at once; on a
// mutex it is the same as Lock.
func (m *Managed) RLock(i int) (Guard, error) { return m.lock(i, true, noDeadline()) }

// RLockTimeout is RLock waiting at most d.
func (m *Managed) RLockTimeout(i int, d time.Duration) (Guard, error) {
	return m.lock(i, true, timeoutDeadline(d))
}

// RLockContext is RLock waiting until ctx is done.
func (m *Managed) RLockContext(ctx context.Context, i int) (Guard, error) {
	if err := ctx.Err(); err != nil {
		return Guard{}, err
	}
	return m.lock(i, true, ctxDeadline(ctx))
}

// MarkConsistent clears lock i's mark that a holder died (see
// Mutex.MarkConsistent). Call it while holding the lock.
func (m *Managed) MarkConsistent(i int) error {
	e, err := m.lockAt(i)
	if err != nil {
		return err
	}
	g := m.guard(e, false)
	if g.mu != nil {
		g.mu.MarkConsistent()
	} else {
		g.rw.MarkConsistent()
	}
	return nil
}

// Mutex returns lock i itself, if it is a LockMutex, for use without a
// guard.
func (m *Managed) Mutex(i int) (*Mutex, error) {
	e, err := m.lockAt(i)
	if err != nil {
		return nil, err
	}
	if e.kind != LockMutex {
		return nil, &Error{Op: "lock", Name: m.seg.name, Err: fmt.Errorf("%w: lock %d is a %v", ErrRange, i, e.kind)}
	}
	return (*Mutex)(m.prim(e.prim)), nil
}

// RWMutex returns lock i itself, if it is a LockRW, for use without a guard.
func (m *Managed) RWMutex(i int) (*RWMutex, error) {
	e, err := m.lockAt(i)
	if err != nil {
		return nil, err
	}
	if e.kind != LockRW {
		return nil, &Error{Op: "lock", Name: m.seg.name, Err: fmt.Errorf("%w: lock %d is a %v", ErrRange, i, e.kind)}
	}
	return (*RWMutex)(m.prim(e.prim)), nil
}

// Event returns event i. Its dynamic type is *AutoEvent, *ManualEvent,
// *BusyAutoEvent, *BusyManualEvent or *EventFD, by kind.
func (m *Managed) Event(i int) (Event, error) {
	if i < 0 || i >= len(m.l.events) {
		return nil, m.rangeErr("event", i, len(m.l.events))
	}
	if m.seg.readOnly {
		return nil, &Error{Op: "event", Name: m.seg.name, Err: fmt.Errorf("%w: segment opened read-only", fs.ErrPermission)}
	}
	e := m.l.events[i]
	p := m.prim(e.prim)
	switch e.kind {
	case EventAuto:
		return (*AutoEvent)(p), nil
	case EventManual:
		return (*ManualEvent)(p), nil
	case EventBusyAuto:
		return (*BusyAutoEvent)(p), nil
	case EventBusyManual:
		return (*BusyManualEvent)(p), nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, &Error{Op: "event", Name: m.seg.name, Err: ErrClosed}
	}
	if m.efds[i] == nil {
		efd, err := m.openEventFD(i, e)
		if err != nil {
			return nil, &Error{Op: "event", Name: m.seg.name, Err: err}
		}
		m.efds[i] = efd
	}
	return m.efds[i], nil
}

// Close closes the segment's eventfds, stops serving them if this process
// created them, and closes the segment (removing it if the caller owns it).
// The Managed and every Guard, lock and event obtained from it must not be
// used afterwards.
func (m *Managed) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var errs []error
	if m.server != nil {
		errs = append(errs, m.server.Close())
	}
	for _, e := range m.efds {
		if e != nil {
			errs = append(errs, e.close())
		}
	}
	m.mu.Unlock()
	errs = append(errs, m.seg.Close())
	return errors.Join(errs...)
}
