package shm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/owner"
)

// Config describes a managed segment: user data of Size bytes, locks that
// each guard a byte range of it, events, queues, broadcast logs and
// latest-value cells. Create writes the description into a header at the
// start of the segment, so that a process that opens it (OpenManaged,
// OpenManagedLink) finds every one of them by index without any
// configuration of its own.
type Config struct {
	Name   string      // segment name; "" picks a random one
	Link   string      // if set, a link file naming the segment is written here
	Size   int         // bytes of user data
	Mode   fs.FileMode // permissions of the segment and link; 0 means 0600
	Locks  []LockSpec  // locks, by index
	Events []EventKind // events, by index
	Queues []QueueSpec // queues, by index
	Logs   []LogSpec   // broadcast logs, by index
	Cells  []CellSpec  // latest-value cells, by index

	// Init, if set, fills the user data of a new segment before any other
	// process can use it: on Linux before the segment has its name, and
	// elsewhere before the header says it is ready (openers wait for that).
	Init func(data []byte)
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

// AddQueue adds a queue whose ring holds capacity bytes (a power of two)
// and whose messages are at most maxMessage bytes (0: as large as the
// capacity allows, QueueMaxMessage), and returns its index.
func (c *Config) AddQueue(capacity, maxMessage int) int {
	c.Queues = append(c.Queues, QueueSpec{Capacity: capacity, MaxMessage: maxMessage})
	return len(c.Queues) - 1
}

// AddLog adds a broadcast log whose ring holds capacity bytes (a power of
// two) and whose messages are at most maxMessage bytes (0: as large as the
// capacity allows, LogMaxMessage), and returns its index.
func (c *Config) AddLog(capacity, maxMessage int) int {
	c.Logs = append(c.Logs, LogSpec{Capacity: capacity, MaxMessage: maxMessage})
	return len(c.Logs) - 1
}

// AddCell adds a latest-value cell of a value of size bytes and returns its
// index.
func (c *Config) AddCell(size int) int {
	c.Cells = append(c.Cells, CellSpec{Size: size})
	return len(c.Cells) - 1
}

// Managed is a segment with a header that describes its locks, events,
// queues, logs and cells.
// Its methods are safe for concurrent use.
type Managed struct {
	seg  *Segment
	l    layout
	data []byte

	users atomic.Int64 // calls in progress, and mClosed
	stop  atomic.Bool  // Close has begun: waits in progress end

	mu     sync.Mutex
	closed bool
	efds   []*EventFD // opened eventfd events, by event index
	queues []*Queue   // this process's handles of the queues, by index
	logs   []*Log     // of the logs
	cells  []*Cell    // of the cells
	server efdServer  // the creator's eventfd server (Linux)
}

// Create makes a managed segment as described by c (see Config), and
// returns it owned by the caller. Locks must guard non-overlapping ranges
// inside the data. opts may add Populate or Global (Linux/Windows specifics)
// and may give the link (WithLink) or mode (WithMode) instead of c; giving
// a different one in both is an error matching ErrConflict.
func (c Config) Create(opts ...Option) (*Managed, error) {
	name := c.Name
	if err := checkConfig(c.Size, c.Locks, c.Events, c.Queues, c.Logs, c.Cells); err != nil {
		return nil, &Error{Op: "create managed", Name: name, Err: err}
	}
	o := collect(opts)
	if c.Mode != 0 {
		if o.modeSet && o.mode != c.Mode.Perm() {
			o.conflict = append(o.conflict, fmt.Sprintf("Config.Mode %#o and WithMode(%#o)", c.Mode.Perm(), o.mode))
		}
		o.mode = c.Mode.Perm()
	}
	if c.Link != "" {
		if o.link != "" && o.link != c.Link {
			o.conflict = append(o.conflict, fmt.Sprintf("Config.Link %s and WithLink(%s)", quote(c.Link), quote(o.link)))
		}
		o.link = c.Link
	}
	if err := o.conflictErr(); err != nil {
		return nil, &Error{Op: "create managed", Name: name, Err: err}
	}
	link := o.link
	o.link = ""
	l, total := plan(uint64(c.Size), c.Locks, c.Events, c.Queues, c.Logs, c.Cells)
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
		for _, e := range l.queues {
			FormatQueue(b[e.prim:e.prim+uint64(QueueSize(int(e.capacity), int(e.producers)))], int(e.capacity), int(e.maxMsg), int(e.producers))
		}
		for _, e := range l.logs {
			FormatLog(b[e.prim:e.prim+e.size()], int(e.capacity), int(e.maxMsg), int(e.readers))
		}
		for _, e := range l.cells {
			FormatCell(b[e.prim:e.prim+e.len()], int(e.size))
		}
		if c.Init != nil {
			c.Init(b[l.dataOff : l.dataOff+l.dataSize : l.dataOff+l.dataSize])
		}
		atomic.StoreUint32(stateWord(b), stateReady)
	}
	seg, err := create(name, int(total), o)
	if err != nil {
		return nil, err
	}
	b := seg.Bytes()
	m := &Managed{seg: seg, l: l, data: b[l.dataOff : l.dataOff+l.dataSize : l.dataOff+l.dataSize]}
	seg.mu.Lock()
	seg.mng = m
	seg.mu.Unlock()
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
	seg.mu.Lock()
	seg.mng = m
	seg.mu.Unlock()
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

// A Managed's life. Every call that touches the segment registers itself
// (use), so that Close, which may run concurrently, first marks the Managed
// closed (later calls fail with ErrClosed), wakes every lock and event word
// so that waits in progress notice (they end with ErrClosed), waits for the
// calls in progress to leave, and only then unmaps the segment: no call of
// a Managed ever touches unmapped memory, or memory mapped anew at the same
// address. Every such call also turns a memory fault (another process shrank
// the segment's file) into an error matching ErrCorrupt (see "Memory
// faults").

const mClosed = 1 << 40 // in Managed.users: Close has begun

// use registers a call; it fails once Close has begun.
func (m *Managed) use() bool {
	for {
		u := m.users.Load()
		if u&mClosed != 0 {
			return false
		}
		if m.users.CompareAndSwap(u, u+1) {
			return true
		}
	}
}

// done ends a call registered by use.
func (m *Managed) done() { m.users.Add(-1) }

// closedErr is the error of a call made after Close.
func (m *Managed) closedErr(op string) error { return &Error{Op: op, Name: m.seg.name, Err: ErrClosed} }

// Segment returns the underlying segment (for its name, size and owner
// settings).
func (m *Managed) Segment() *Segment { return m.seg }

// Name returns the segment's name.
func (m *Managed) Name() string { return m.seg.name }

// Data returns the user data: all of it, whichever locks guard parts of it.
// Access a guarded range through a Guard instead, while holding its lock.
// After Close it returns nil; a slice obtained before must not be used
// after Close.
func (m *Managed) Data() []byte {
	if m.users.Load()&mClosed != 0 {
		return nil
	}
	return m.data
}

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

// Guard is a held lock on a byte range of a managed segment: Bytes returns
// the range, Unlock releases the lock. A Guard unlocks at most once: a
// second Unlock (an explicit one and a deferred one, say) does nothing, so
// it never releases a lock (or another goroutine's read share) taken since.
// A nil or zero Guard holds nothing.
type Guard struct {
	m        *Managed
	data     []byte
	mu       *Mutex
	rw       *RWMutex
	read     bool
	unlocked atomic.Bool
}

// Bytes returns the guarded bytes: nil once the Guard was unlocked or its
// Managed closed. For a read guard, write nothing to them.
func (g *Guard) Bytes() []byte {
	if g == nil || g.m == nil || g.unlocked.Load() || g.m.users.Load()&mClosed != 0 {
		return nil
	}
	return g.data
}

// Unlock releases the lock, once. Use the guard's bytes no more afterwards.
// After its Managed was closed it does nothing (closing gave the lock up),
// nor when the lock's memory is gone (another process shrank the segment:
// the other calls report that as ErrCorrupt).
func (g *Guard) Unlock() {
	if g == nil || g.m == nil || !g.unlocked.CompareAndSwap(false, true) || !g.m.use() {
		return
	}
	defer g.m.done()
	guarded(func() error {
		switch {
		case g.mu != nil:
			g.mu.Unlock()
		case g.read:
			g.rw.RUnlock()
		default:
			g.rw.Unlock()
		}
		return nil
	})
}

func (m *Managed) prim(off uint64) unsafe.Pointer {
	return unsafe.Pointer(&m.seg.data[off])
}

func (m *Managed) lockAt(op string, i int) (lockEntry, error) {
	if i < 0 || i >= len(m.l.locks) {
		return lockEntry{}, m.rangeErr("lock", i, len(m.l.locks))
	}
	if m.seg.readOnly {
		return lockEntry{}, &Error{Op: op, Name: m.seg.name, Err: fmt.Errorf("%w: segment opened read-only (locking writes to it)", fs.ErrPermission)}
	}
	return m.l.locks[i], nil
}

func (m *Managed) guard(e lockEntry, read bool) *Guard {
	g := &Guard{m: m, data: m.data[e.offset : e.offset+e.size : e.offset+e.size], read: read}
	if e.kind == LockMutex {
		g.mu = (*Mutex)(m.prim(e.prim))
	} else {
		g.rw = (*RWMutex)(m.prim(e.prim))
	}
	return g
}

// lockOp names lock i for errors.
func lockOp(op string, i int) string { return op + " " + strconv.Itoa(i) }

// lockErr wraps the error of a wait for lock g, naming the segment, the
// lock and (for a timeout) the holder.
func (m *Managed) lockErr(op string, i int, g *Guard, err error) error {
	if errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		w := g.mu
		if w == nil {
			w = &g.rw.w
		}
		if h := atomic.LoadUint64(&w.state); h&mHeld != 0 {
			err = fmt.Errorf("%w (held by pid %d)", err, tokenOf(h).PID())
		} else if g.rw != nil && !g.read {
			err = fmt.Errorf("%w (read-locked)", err)
		}
	}
	return &Error{Op: lockOp(op, i), Name: m.seg.name, Err: err}
}

func (m *Managed) lock(op string, i int, read bool, dl deadline) (g *Guard, err error) {
	e, err := m.lockAt(op, i)
	if err != nil {
		return nil, err
	}
	if !m.use() {
		return nil, m.closedErr(lockOp(op, i))
	}
	defer m.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	dl.stop = &m.stop
	g = m.guard(e, read)
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
	switch {
	case err == nil:
		return g, nil
	case err == ErrOwnerDead:
		return g, m.lockErr(op, i, g, err)
	}
	return nil, m.lockErr(op, i, g, err)
}

// Lock locks lock i for writing (a mutex simply locks) and returns a guard
// over its range. If the lock's previous holder died holding it, Lock
// returns the guard together with an error matching ErrOwnerDead: the lock
// is held, and the data may need repair before MarkConsistent(i). Errors
// name the segment and the lock. A segment opened ReadOnly cannot be locked
// (fs.ErrPermission). After Close, or when the Managed is closed during the
// wait, it returns ErrClosed.
func (m *Managed) Lock(i int) (*Guard, error) { return m.lock("lock", i, false, noDeadline()) }

// LockTimeout is Lock waiting at most d (ErrTimeout after that, naming the
// holder).
func (m *Managed) LockTimeout(i int, d time.Duration) (*Guard, error) {
	return m.lock("lock", i, false, timeoutDeadline(d))
}

// LockContext is Lock waiting until ctx is done (ctx.Err() after that).
func (m *Managed) LockContext(ctx context.Context, i int) (*Guard, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: lockOp("lock", i), Name: m.seg.name, Err: err}
	}
	return m.lock("lock", i, false, ctxDeadline(ctx))
}

// TryLock locks lock i for writing if it is free. It returns false for an
// index out of range, a segment opened ReadOnly, after Close, and on a
// memory fault.
func (m *Managed) TryLock(i int) (*Guard, bool) {
	e, err := m.lockAt("lock", i)
	if err != nil || !m.use() {
		return nil, false
	}
	defer m.done()
	g, err := m.tryLock(e)
	return g, g != nil && err == nil
}

func (m *Managed) tryLock(e lockEntry) (g *Guard, err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	g = m.guard(e, false)
	if g.mu != nil && g.mu.TryLock() || g.rw != nil && g.rw.TryLock() {
		return g, nil
	}
	return nil, nil
}

// RLock locks lock i for reading and returns a read guard over its range.
// On a reader/writer lock, readers in any processes hold it at once; on a
// mutex it is the same as Lock.
func (m *Managed) RLock(i int) (*Guard, error) { return m.lock("read-lock", i, true, noDeadline()) }

// RLockTimeout is RLock waiting at most d.
func (m *Managed) RLockTimeout(i int, d time.Duration) (*Guard, error) {
	return m.lock("read-lock", i, true, timeoutDeadline(d))
}

// RLockContext is RLock waiting until ctx is done.
func (m *Managed) RLockContext(ctx context.Context, i int) (*Guard, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: lockOp("read-lock", i), Name: m.seg.name, Err: err}
	}
	return m.lock("read-lock", i, true, ctxDeadline(ctx))
}

// MarkConsistent clears lock i's mark that a holder died (see
// Mutex.MarkConsistent). Call it while holding the lock.
func (m *Managed) MarkConsistent(i int) (err error) {
	e, err := m.lockAt("mark consistent", i)
	if err != nil {
		return err
	}
	if !m.use() {
		return m.closedErr(lockOp("mark consistent", i))
	}
	defer m.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	g := m.guard(e, false)
	if g.mu != nil {
		g.mu.MarkConsistent()
	} else {
		g.rw.MarkConsistent()
	}
	return nil
}

// Mutex returns lock i itself, if it is a LockMutex, for use without a
// guard. The Mutex must not be used after Close (its memory is unmapped);
// Mutex called after Close returns ErrClosed.
func (m *Managed) Mutex(i int) (*Mutex, error) {
	e, err := m.lockAt("lock", i)
	if err != nil {
		return nil, err
	}
	if e.kind != LockMutex {
		return nil, &Error{Op: lockOp("lock", i), Name: m.seg.name, Err: fmt.Errorf("%w: lock %d is a %v, not a %v", ErrWrongKind, i, e.kind, LockMutex)}
	}
	if m.users.Load()&mClosed != 0 {
		return nil, m.closedErr(lockOp("lock", i))
	}
	return (*Mutex)(m.prim(e.prim)), nil
}

// RWMutex returns lock i itself, if it is a LockRW, for use without a guard.
// The RWMutex must not be used after Close; RWMutex called after Close
// returns ErrClosed.
func (m *Managed) RWMutex(i int) (*RWMutex, error) {
	e, err := m.lockAt("lock", i)
	if err != nil {
		return nil, err
	}
	if e.kind != LockRW {
		return nil, &Error{Op: lockOp("lock", i), Name: m.seg.name, Err: fmt.Errorf("%w: lock %d is a %v, not a %v", ErrWrongKind, i, e.kind, LockRW)}
	}
	if m.users.Load()&mClosed != 0 {
		return nil, m.closedErr(lockOp("lock", i))
	}
	return (*RWMutex)(m.prim(e.prim)), nil
}

// Event returns event i, bound to m: its calls fail with ErrClosed once m
// is closed (a wait in progress then ends with ErrClosed), and a memory
// fault (another process shrank the segment) is an error matching
// ErrCorrupt, not a crash. For the eventfd kinds it is the *EventFD, whose
// Fd can be given to epoll; for the others an Event of this package's own.
func (m *Managed) Event(i int) (Event, error) {
	if i < 0 || i >= len(m.l.events) {
		return nil, m.rangeErr("event", i, len(m.l.events))
	}
	op := "event " + strconv.Itoa(i)
	if m.seg.readOnly {
		return nil, &Error{Op: op, Name: m.seg.name, Err: fmt.Errorf("%w: segment opened read-only (events write to it)", fs.ErrPermission)}
	}
	e := m.l.events[i]
	switch e.kind {
	case EventAuto, EventManual, EventBusyAuto, EventBusyManual:
		if m.users.Load()&mClosed != 0 {
			return nil, m.closedErr(op)
		}
		return &managedEvent{m: m, i: i, kind: e.kind, p: m.prim(e.prim)}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, m.closedErr(op)
	}
	if m.efds[i] == nil {
		var efd *EventFD
		err := guarded(func() (err error) {
			efd, err = m.openEventFD(i, e)
			return err
		})
		if err != nil {
			return nil, &Error{Op: op, Name: m.seg.name, Err: err}
		}
		m.efds[i] = efd
	}
	return m.efds[i], nil
}

// NumQueues returns how many queues the segment has.
func (m *Managed) NumQueues() int { return len(m.l.queues) }

// Queue returns this process's handle of queue i. It is the same handle
// every time, closed with m.
func (m *Managed) Queue(i int) (*Queue, error) {
	if i < 0 || i >= len(m.l.queues) {
		return nil, m.rangeErr("queue", i, len(m.l.queues))
	}
	op := "queue " + strconv.Itoa(i)
	if m.seg.readOnly {
		return nil, &Error{Op: op, Name: m.seg.name, Err: fmt.Errorf("%w: segment opened read-only (queues write to it)", fs.ErrPermission)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, m.closedErr(op)
	}
	if m.queues == nil {
		m.queues = make([]*Queue, len(m.l.queues))
	}
	if m.queues[i] == nil {
		e := m.l.queues[i]
		q, err := AttachQueue(m.seg.data[e.prim : e.prim+uint64(QueueSize(int(e.capacity), int(e.producers)))])
		if err != nil {
			return nil, &Error{Op: op, Name: m.seg.name, Err: err}
		}
		if q.Capacity() != int(e.capacity) || q.MaxMessage() != int(e.maxMsg) || q.nsl != int(e.producers) {
			return nil, &Error{Op: op, Name: m.seg.name, Err: fmt.Errorf("%w: the queue's own header disagrees with the segment's", ErrCorrupt)}
		}
		q.mng = m
		m.queues[i] = q
	}
	return m.queues[i], nil
}

// QueueStats returns a snapshot of queue i (see Queue.Stats). It works on a
// segment opened ReadOnly too.
func (m *Managed) QueueStats(i int) (QueueStats, error) {
	if i < 0 || i >= len(m.l.queues) {
		return QueueStats{}, m.rangeErr("queue", i, len(m.l.queues))
	}
	if !m.use() {
		return QueueStats{}, m.closedErr("queue stats " + strconv.Itoa(i))
	}
	defer m.done()
	e := m.l.queues[i]
	q, err := AttachQueue(m.seg.data[e.prim : e.prim+uint64(QueueSize(int(e.capacity), int(e.producers)))])
	if err != nil {
		return QueueStats{}, &Error{Op: "queue stats " + strconv.Itoa(i), Name: m.seg.name, Err: err}
	}
	q.mng = m
	return q.Stats()
}

// NumLogs returns how many broadcast logs the segment has.
func (m *Managed) NumLogs() int { return len(m.l.logs) }

// Log returns this process's handle of broadcast log i. It is the same
// handle every time, closed with m. A segment opened ReadOnly has none
// (fs.ErrPermission): readers register and wait in the log's memory.
func (m *Managed) Log(i int) (*Log, error) {
	if i < 0 || i >= len(m.l.logs) {
		return nil, m.rangeErr("log", i, len(m.l.logs))
	}
	op := "log " + strconv.Itoa(i)
	if m.seg.readOnly {
		return nil, &Error{Op: op, Name: m.seg.name, Err: fmt.Errorf("%w: segment opened read-only (logs write to it)", fs.ErrPermission)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, m.closedErr(op)
	}
	if m.logs == nil {
		m.logs = make([]*Log, len(m.l.logs))
	}
	if m.logs[i] == nil {
		l, err := m.attachLog(i)
		if err != nil {
			return nil, &Error{Op: op, Name: m.seg.name, Err: err}
		}
		m.logs[i] = l
	}
	return m.logs[i], nil
}

func (m *Managed) attachLog(i int) (*Log, error) {
	e := m.l.logs[i]
	l, err := AttachLog(m.seg.data[e.prim : e.prim+e.size()])
	if err != nil {
		return nil, err
	}
	if l.Capacity() != int(e.capacity) || l.MaxMessage() != int(e.maxMsg) || l.nsl != int(e.readers) {
		return nil, fmt.Errorf("%w: the log's own header disagrees with the segment's", ErrCorrupt)
	}
	l.mng = m
	return l, nil
}

// LogStats returns a snapshot of log i (see Log.Stats). It works on a
// segment opened ReadOnly too.
func (m *Managed) LogStats(i int) (LogStats, error) {
	if i < 0 || i >= len(m.l.logs) {
		return LogStats{}, m.rangeErr("log", i, len(m.l.logs))
	}
	op := "log stats " + strconv.Itoa(i)
	if !m.use() {
		return LogStats{}, m.closedErr(op)
	}
	defer m.done()
	l, err := m.attachLog(i)
	if err != nil {
		return LogStats{}, &Error{Op: op, Name: m.seg.name, Err: err}
	}
	return l.Stats()
}

// NumCells returns how many latest-value cells the segment has.
func (m *Managed) NumCells() int { return len(m.l.cells) }

// Cell returns this process's handle of cell i. It is the same handle every
// time, closed with m. A segment opened ReadOnly has none (fs.ErrPermission).
func (m *Managed) Cell(i int) (*Cell, error) {
	if i < 0 || i >= len(m.l.cells) {
		return nil, m.rangeErr("cell", i, len(m.l.cells))
	}
	op := "cell " + strconv.Itoa(i)
	if m.seg.readOnly {
		return nil, &Error{Op: op, Name: m.seg.name, Err: fmt.Errorf("%w: segment opened read-only (cells write to it)", fs.ErrPermission)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, m.closedErr(op)
	}
	if m.cells == nil {
		m.cells = make([]*Cell, len(m.l.cells))
	}
	if m.cells[i] == nil {
		c, err := m.attachCell(i)
		if err != nil {
			return nil, &Error{Op: op, Name: m.seg.name, Err: err}
		}
		m.cells[i] = c
	}
	return m.cells[i], nil
}

func (m *Managed) attachCell(i int) (*Cell, error) {
	e := m.l.cells[i]
	c, err := AttachCell(m.seg.data[e.prim : e.prim+e.len()])
	if err != nil {
		return nil, err
	}
	if c.Size() != int(e.size) {
		return nil, fmt.Errorf("%w: the cell's own header disagrees with the segment's", ErrCorrupt)
	}
	c.mng = m
	return c, nil
}

// CellStats returns a snapshot of cell i (see Cell.Stats). It works on a
// segment opened ReadOnly too.
func (m *Managed) CellStats(i int) (CellStats, error) {
	if i < 0 || i >= len(m.l.cells) {
		return CellStats{}, m.rangeErr("cell", i, len(m.l.cells))
	}
	op := "cell stats " + strconv.Itoa(i)
	if !m.use() {
		return CellStats{}, m.closedErr(op)
	}
	defer m.done()
	c, err := m.attachCell(i)
	if err != nil {
		return CellStats{}, &Error{Op: op, Name: m.seg.name, Err: err}
	}
	return c.Stats()
}

// managedEvent is an event of a managed segment, used through its Managed.
type managedEvent struct {
	m    *Managed
	i    int
	kind EventKind
	p    unsafe.Pointer
}

func (e *managedEvent) op() string { return "event " + strconv.Itoa(e.i) }

// call runs f on the event, registered with the Managed and guarded
// against faults.
func (e *managedEvent) call(f func() error) (err error) {
	if !e.m.use() {
		return e.m.closedErr(e.op())
	}
	defer e.m.done()
	if err := guarded(f); err != nil {
		return &Error{Op: e.op(), Name: e.m.seg.name, Err: err}
	}
	return nil
}

// guarded runs f, turning a memory fault into an error matching ErrCorrupt.
func guarded(f func() error) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return f()
}

func (e *managedEvent) Set() error {
	return e.call(func() error {
		switch e.kind {
		case EventAuto:
			return (*AutoEvent)(e.p).Set()
		case EventManual:
			return (*ManualEvent)(e.p).Set()
		case EventBusyAuto:
			return (*BusyAutoEvent)(e.p).Set()
		}
		return (*BusyManualEvent)(e.p).Set()
	})
}

func (e *managedEvent) Reset() error {
	return e.call(func() error {
		switch e.kind {
		case EventAuto:
			return (*AutoEvent)(e.p).Reset()
		case EventManual:
			return (*ManualEvent)(e.p).Reset()
		case EventBusyAuto:
			return (*BusyAutoEvent)(e.p).Reset()
		}
		return (*BusyManualEvent)(e.p).Reset()
	})
}

func (e *managedEvent) wait(dl deadline) error {
	dl.stop = &e.m.stop
	return e.call(func() error {
		switch e.kind {
		case EventAuto:
			if tryTake((*uint32)(e.p)) {
				return nil
			}
			return waitAuto((*uint32)(e.p), dl)
		case EventManual:
			ev := (*ManualEvent)(e.p)
			if ev.IsSet() {
				return nil
			}
			return ev.wait(dl)
		case EventBusyAuto:
			return busyWait((*uint32)(e.p), true, dl)
		}
		return busyWait((*uint32)(e.p), false, dl)
	})
}

func (e *managedEvent) Wait() error { return e.wait(noDeadline()) }

func (e *managedEvent) WaitTimeout(d time.Duration) error { return e.wait(timeoutDeadline(d)) }

func (e *managedEvent) WaitContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return &Error{Op: e.op(), Name: e.m.seg.name, Err: err}
	}
	return e.wait(ctxDeadline(ctx))
}

// IsSet reports whether the event is set (false after Close).
func (e *managedEvent) IsSet() bool {
	set := false
	e.call(func() error {
		set = atomic.LoadUint32((*uint32)(e.p))&evSet != 0
		return nil
	})
	return set
}

// Close closes the segment's eventfds, stops serving them if this process
// created them, and closes the segment (removing it if the caller owns it).
// It may run concurrently with other calls: those in progress finish first
// (a wait ends with ErrClosed), and later ones fail with ErrClosed. Locks
// this process holds in the segment are given up (other processes take them
// over as from a dead holder). Locks and events obtained with Mutex and
// RWMutex must not be used afterwards; Guards and Events obtained from m
// turn into no-ops and ErrClosed. Queues, logs and cells: their waits end
// with ErrClosed and later calls fail with it, but their short calls
// (Send, Append, Store, Load, ...) do not register, which would cost them
// a good share of their time: Close must not run while another goroutine
// is in one, as a file's Close must not run during its Read.
func (m *Managed) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.stop.Store(true)
	for _, q := range m.queues {
		if q != nil {
			q.Close()
		}
	}
	for _, l := range m.logs {
		if l != nil {
			l.Close()
		}
	}
	for _, c := range m.cells {
		if c != nil {
			c.Close()
		}
	}
	for {
		u := m.users.Load()
		if m.users.CompareAndSwap(u, u|mClosed) {
			break
		}
	}
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
	// Wake the waits in progress so that they see the Managed closed, and
	// wait for every call in progress to leave before unmapping.
	m.wakeAll()
	for wait := time.Microsecond; m.users.Load()&(mClosed-1) != 0; {
		time.Sleep(wait)
		if wait < time.Millisecond {
			wait *= 2
		}
	}
	guarded(func() error { m.giveUpLocks(); return nil })
	errs = append(errs, m.seg.close())
	return errors.Join(errs...)
}

// giveUpLocks releases, as a dying holder would leave them, the locks this
// process still holds in the segment (Guards not unlocked): write locks
// are released marked inconsistent, so that the next holder hears of it
// (ErrOwnerDead), read shares are dropped. Without it a process that
// reopened the segment would hold them again, with nothing left to
// release them.
func (m *Managed) giveUpLocks() {
	giveUp := func(mu *Mutex) {
		for {
			old := atomic.LoadUint64(&mu.state)
			if old&mOwnerMask != selfWord {
				return
			}
			if atomic.CompareAndSwapUint64(&mu.state, old, mInconsistent) {
				if old&(mWaiters|mReaders) != 0 {
					futex.Wake(lowHalf(&mu.state), futex.All)
				}
				return
			}
		}
	}
	for _, e := range m.l.locks {
		p := m.prim(e.prim)
		if e.kind == LockMutex {
			giveUp((*Mutex)(p))
			continue
		}
		rw := (*RWMutex)(p)
		giveUp(&rw.w)
		for i := range rw.slots {
			s := &rw.slots[i]
			if v := atomic.LoadUint64(s); v&rCountMask != 0 && v&^rCountMask == readerID {
				if rw.freeSlot(i, v) && atomic.LoadUint64(&rw.w.state)&mHeld != 0 {
					rw.wakeWriter()
				}
			}
		}
	}
}

// wakeAll wakes every sleeper on the words of the segment's locks and
// events.
func (m *Managed) wakeAll() {
	defer func() { recover() }() // a shrunk segment: its sleepers see the stop flag within a slice
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	for _, e := range m.l.locks {
		p := m.prim(e.prim)
		futex.Wake(lowHalf((*uint64)(p)), futex.All)
		if e.kind == LockRW {
			futex.Wake(&(*RWMutex)(p).drain, futex.All)
		}
	}
	for _, e := range m.l.events {
		if e.kind == EventAuto || e.kind == EventManual {
			futex.Wake((*uint32)(m.prim(e.prim)), futex.All)
		}
	}
}
