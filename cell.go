package shm

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// Cell is a latest-value cell in shared memory: a fixed-size value that one
// writer updates and any number of readers, in any processes, read whole
// without locking and without slowing the writer down (a sequence lock over
// two copies of the value). A reader never sees a value half written; a
// writer that dies in the middle of an update leaves the previous value
// readable and its place to the next writer. Readers can wait for the next
// update (Wait).
//
// Load and Store copy bytes; LoadValue and StoreValue copy a typed value
// (a pointer-free type of the cell's size, as View checks).
//
// Get a Cell from a managed segment (Config.AddCell, Managed.Cell), or lay
// one out in raw shared memory with FormatCell and attach with AttachCell.
// A Cell value is this process's handle, safe for concurrent use; a
// CellWriter is for one goroutine at a time. Closing the Cell (or its
// Managed) ends the waits in progress with ErrClosed, but must not run
// while another goroutine is in Store or Load: they do not register with
// the handle, which would cost them a good share of their time.
//
// # Protocol
//
// Shared words (see docs/FORMAT.md for offsets):
//
//	version  stores completed: the current value is in copy version&1
//	writer   the writer's owner token (0: none)
//	wake     futex word of the waiting readers: bit 0 some may sleep
//	seq[k]   copy k's sequence: odd while it is being written
//	value[k] copy k of the value
//
// Writer, storing version v+1: it writes copy k = (v+1)&1, the one readers
// do not read (unless they are a whole store behind): it stores seq[k]
// odd with a full barrier, loads wake, copies the value, stores seq[k]
// even (the next even number), then stores version = v+1, and wakes the
// waiting readers if bit 0 of wake was set. A writer that dies in the
// middle leaves version, and the copy it names, as they were.
//
// Reader: loads version v, then seq[v&1] (odd: the writer has stored twice
// since, and is writing that copy again: retry), copies the value, and
// loads seq[v&1] and version again. If both are unchanged, the copy is
// whole and is version v's: a store into copy v&1 begins only after version
// moved past v. Else it retries. (The check of version is needed: a reader
// that loaded v long ago may find copy v&1 rewritten by store v+2, whole
// and published in that copy but not yet in version, and return it as v,
// and then, from its next load, the older value of v+1.)
//
// Waiting for a version after v: a reader CASes bit 0 of wake on, then
// loads version (moved on: done) and the sequence of the copy the next
// store writes (odd: a store in progress, whose writer may have loaded wake
// before the CAS: poll, then sleep in short slices); otherwise it sleeps on
// wake, and the next store's odd sequence, stored after the CAS, is
// followed by a load of wake that sees the bit (Dekker, with sequentially
// consistent atomics), so that store wakes it.
type Cell struct {
	mem    []byte
	size   int
	stride int // bytes from copy 0 to copy 1

	version, writer *uint64
	wake            *uint32

	wr atomic.Pointer[CellWriter]
	life
	mng *Managed
}

const (
	cellMagic    = "SHMCELL1"
	cellVersion  = 1
	cOffVersion  = 64
	cOffWriter   = 72
	cOffWake     = 128
	cOffCopies   = 192
	cMaxSize     = 1 << 30
	cellSpinHard = 1 << 20 // reads that find a copy changing, in a row, before Load yields
)

// CellSize returns the bytes a cell of a value of size bytes takes in
// shared memory.
func CellSize(size int) int { return cOffCopies + 2*cellStride(size) }

func cellStride(size int) int { return (8 + size + 63) &^ 63 }

func checkCellSpec(size int) error {
	if size <= 0 || size > cMaxSize {
		return fmt.Errorf("%w: cell of %d bytes (1 to 2^30)", ErrInvalidSize, size)
	}
	return nil
}

// FormatCell lays out a cell of size bytes in b (64-byte aligned, at least
// CellSize(size) bytes), its value all zeros, and returns it. Only the
// process that creates the memory formats it, before others attach
// (AttachCell).
func FormatCell(b []byte, size int) (*Cell, error) {
	if err := checkCellSpec(size); err != nil {
		return nil, err
	}
	need := CellSize(size)
	if len(b) < need {
		return nil, fmt.Errorf("%w: a cell of %d bytes needs %d bytes, have %d", ErrRange, size, need, len(b))
	}
	if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
		return nil, fmt.Errorf("%w: a cell must start at a 64-byte boundary", ErrRange)
	}
	clear(b[:need])
	ne := binary.NativeEndian
	ne.PutUint32(b[8:], cellVersion)
	ne.PutUint32(b[12:], uint32(size))
	copy(b[0:8], cellMagic)
	return AttachCell(b)
}

// AttachCell attaches to a cell laid out by FormatCell in b. It checks the
// cell's header against b and returns ErrCorrupt for anything it does not
// expect.
func AttachCell(b []byte) (c *Cell, err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if len(b) < cOffCopies || string(b[0:8]) != cellMagic {
		return nil, fmt.Errorf("%w: not a cell (no magic)", ErrCorrupt)
	}
	if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
		return nil, fmt.Errorf("%w: a cell must start at a 64-byte boundary", ErrRange)
	}
	ne := binary.NativeEndian
	if v := ne.Uint32(b[8:]); v != cellVersion {
		return nil, fmt.Errorf("%w: cell version %d, this package reads %d", ErrCorrupt, v, cellVersion)
	}
	size := int(ne.Uint32(b[12:]))
	if checkCellSpec(size) != nil || len(b) < CellSize(size) {
		return nil, fmt.Errorf("%w: cell of %d bytes in %d", ErrCorrupt, size, len(b))
	}
	c = &Cell{mem: b[:CellSize(size)], size: size, stride: cellStride(size)}
	c.version = (*uint64)(unsafe.Pointer(&b[cOffVersion]))
	c.writer = (*uint64)(unsafe.Pointer(&b[cOffWriter]))
	c.wake = (*uint32)(unsafe.Pointer(&b[cOffWake]))
	return c, nil
}

// Size returns the size of the value in bytes.
func (c *Cell) Size() int { return c.size }

func (c *Cell) seq(k uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&c.mem[cOffCopies+int(k&1)*c.stride]))
}

func (c *Cell) off(k uint64) uint64 { return uint64(cOffCopies + int(k&1)*c.stride + 8) }

func (c *Cell) name() string {
	if c.mng != nil {
		return c.mng.seg.name
	}
	return "cell"
}

func (c *Cell) closedErr(op string) error { return &Error{Op: op, Name: c.name(), Err: ErrClosed} }

// Version returns how many stores the cell has seen: a reader can wait for
// the next one (Wait).
func (c *Cell) Version() (v uint64, err error) {
	if c.stop.Load() {
		return 0, c.closedErr("version")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return atomic.LoadUint64(c.version), nil
}

// Load copies the value into dst (at least Size bytes) and returns its
// version. It never returns a value half written.
func (c *Cell) Load(dst []byte) (version uint64, err error) {
	if len(dst) < c.size {
		return 0, &Error{Op: "load", Name: c.name(), Err: fmt.Errorf("%w: the cell has %d bytes, the buffer %d", ErrRange, c.size, len(dst))}
	}
	if c.stop.Load() {
		return 0, c.closedErr("load")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return c.load(unsafe.Pointer(&dst[0]))
}

func (c *Cell) load(dst unsafe.Pointer) (uint64, error) {
	var fence uint32
	d := unsafe.Slice((*byte)(dst), c.size)
	for tries := 0; ; tries++ {
		v := atomic.LoadUint64(c.version)
		p := c.seq(v)
		s1 := atomic.LoadUint64(p)
		if s1&1 == 0 {
			copyFromShared(d, c.mem, c.off(v))
			loadFence(&fence)
			if atomic.LoadUint64(p) == s1 && atomic.LoadUint64(c.version) == v {
				return v, nil
			}
		} else if atomic.LoadUint64(c.version) == v {
			// The copy that version names is being written, and version
			// did not move: only damage does that (a store writes the
			// other copy first, and publishes it).
			if tries > 64 {
				return 0, &Error{Op: "load", Name: c.name(), Err: fmt.Errorf("%w: the current copy's sequence is odd (%d)", ErrCorrupt, s1)}
			}
		}
		if tries&1023 == 1023 {
			runtime.Gosched() // a writer storing without a pause: let others run
		} else {
			spinPause()
		}
	}
}

// LoadValue loads a cell's value as a T: a pointer-free type of the cell's
// size (see View). It returns the value's version.
func LoadValue[T any](c *Cell, v *T) (uint64, error) {
	if err := checkCellType[T](c); err != nil {
		return 0, err
	}
	if c.stop.Load() {
		return 0, c.closedErr("load")
	}
	return c.loadGuarded(unsafe.Pointer(v))
}

func (c *Cell) loadGuarded(p unsafe.Pointer) (v uint64, err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return c.load(p)
}

func checkCellType[T any](c *Cell) error {
	var zero T
	t := reflect.TypeOf(&zero).Elem()
	if err := checkPointerFree(t); err != nil {
		return err
	}
	if int(unsafe.Sizeof(zero)) != c.size {
		return &Error{Op: "cell value", Name: c.name(), Err: fmt.Errorf("%w: %v has %d bytes, the cell %d", ErrRange, t, unsafe.Sizeof(zero), c.size)}
	}
	return nil
}

// Wait waits for a version after v (one Version or Load returned) and
// returns the version it found.
func (c *Cell) Wait(v uint64) (uint64, error) { return c.waitIn(v, noDeadline()) }

// WaitTimeout is Wait waiting at most d (ErrTimeout after that).
func (c *Cell) WaitTimeout(v uint64, d time.Duration) (uint64, error) {
	return c.waitIn(v, timeoutDeadline(d))
}

// WaitContext is Wait waiting until ctx is done (ctx.Err() after that).
func (c *Cell) WaitContext(ctx context.Context, v uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return c.waitIn(v, ctxDeadline(ctx))
}

func (c *Cell) waitIn(v uint64, dl deadline) (cur uint64, err error) {
	if !c.use() {
		return 0, c.closedErr("wait")
	}
	defer c.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	var w *watcher
	defer func() { w.stop() }()
	dl.stop = &c.stop
	spins := spinBudget(unsafe.Pointer(c.wake))
	var watch ownerWatch
	var deadW uint64
	for {
		if cur = atomic.LoadUint64(c.version); cur != v {
			return cur, nil
		}
		if spins > 0 {
			spins--
			if dl.spinDone(spins) {
				spins = 0
			}
			spinPause()
			continue
		}
		if err := dl.expired(); err != nil {
			return cur, &Error{Op: "wait", Name: c.name(), Err: err}
		}
		x := atomic.LoadUint32(c.wake)
		if x&1 == 0 {
			if !atomic.CompareAndSwapUint32(c.wake, x, x|1) {
				continue
			}
			x |= 1
		}
		if cur = atomic.LoadUint64(c.version); cur != v {
			return cur, nil
		}
		slice := eventSlice
		if atomic.LoadUint64(c.seq(v+1))&1 != 0 {
			// A store in progress, whose writer may have loaded wake
			// before the bit was set (or died: then only the next
			// writer's store, which sees the bit, moves on).
			polled := false
			for i := 0; i < claimPolls; i++ {
				spinPause()
				if atomic.LoadUint64(c.version) != v {
					polled = true
					break
				}
			}
			if polled {
				continue
			}
			slice = writerSlice(c.writer, &watch, &deadW, claimSleep, slice)
		}
		if w == nil {
			w = dl.watch(c.wake)
		}
		if err := dl.sleep(c.wake, x, slice); err != nil {
			if cur = atomic.LoadUint64(c.version); cur != v {
				return cur, nil
			}
			return cur, &Error{Op: "wait", Name: c.name(), Err: err}
		}
	}
}

// CellWriter stores into a Cell; a cell has one writer at a time (see
// Cell.Writer). Its methods must not be called concurrently.
type CellWriter struct {
	c      *Cell
	token  uint64
	closed atomic.Bool
}

// Writer makes this process the cell's writer. A cell has one writer at a
// time: while another is attached (another live process's, or this
// process's), Writer returns an error matching ErrInUse; a dead writer's
// place is taken.
func (c *Cell) Writer() (w *CellWriter, err error) {
	if !c.use() {
		return nil, c.closedErr("attach writer")
	}
	defer c.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	self, err := attachOne(c.writer, "attach writer", c.name(), "writer")
	if err != nil {
		return nil, err
	}
	w = &CellWriter{c: c, token: self}
	if !c.wr.CompareAndSwap(nil, w) {
		atomic.CompareAndSwapUint64(c.writer, self, 0)
		return nil, &Error{Op: "attach writer", Name: c.name(), Err: fmt.Errorf("%w: this process's writer is attached", ErrInUse)}
	}
	// A predecessor that died in the middle of a store woke nobody: wake
	// the readers that wait (its odd sequence kept them polling).
	wakeAll(c.wake)
	return w, nil
}

// Close gives the writer's place up.
func (w *CellWriter) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	c := w.c
	if !c.wr.CompareAndSwap(w, nil) || !c.use() {
		return nil
	}
	defer c.done()
	return guarded(func() error {
		atomic.CompareAndSwapUint64(c.writer, w.token, 0)
		return nil
	})
}

// Store stores b (exactly Size bytes) as the cell's new value. It never
// waits for readers.
func (w *CellWriter) Store(b []byte) (err error) {
	c := w.c
	if len(b) != c.size {
		return &Error{Op: "store", Name: c.name(), Err: fmt.Errorf("%w: %d bytes, the cell has %d", ErrRange, len(b), c.size)}
	}
	if w.closed.Load() || c.stop.Load() {
		return c.closedErr("store")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	w.store(b)
	return nil
}

// StoreValue stores v, a T (a pointer-free type of the cell's size), into
// the cell w writes.
func StoreValue[T any](w *CellWriter, v *T) error {
	if err := checkCellType[T](w.c); err != nil {
		return err
	}
	return w.Store(unsafe.Slice((*byte)(unsafe.Pointer(v)), w.c.size))
}

func (w *CellWriter) store(b []byte) {
	c := w.c
	v := atomic.LoadUint64(c.version)
	p := c.seq(v + 1)
	s := atomic.LoadUint64(p)
	atomic.StoreUint64(p, (s+1)|1) // odd (even if a dead writer left it odd): a full barrier, then the load of wake
	wk := atomic.LoadUint32(c.wake)
	copyToShared(c.mem, c.off(v+1), b)
	storeOrdered(p, ((s+1)|1)+1)
	storeRelease(c.version, v+1)
	if wk&1 != 0 {
		wakeAll(c.wake)
	}
}

// CellStats is a snapshot of a cell, for diagnostics (shm inspect).
type CellStats struct {
	Size    int     // bytes of the value
	Version uint64  // stores so far
	Writer  Process // the writer (PID 0: none)
}

// Stats returns a snapshot of the cell.
func (c *Cell) Stats() (st CellStats, err error) {
	if !c.use() {
		return CellStats{}, c.closedErr("cell stats")
	}
	defer c.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	st.Size = c.size
	st.Version = atomic.LoadUint64(c.version)
	st.Writer = holder(unsafe.Pointer(c.writer), owner.Token(atomic.LoadUint64(c.writer)))
	return st, nil
}

// Close detaches this process's handle: its writer gives its place up,
// waits in progress end with ErrClosed, later calls fail with ErrClosed.
func (c *Cell) Close() error {
	if w := c.wr.Load(); w != nil {
		w.Close()
	}
	c.shut(func() { wakeAll(c.wake) })
	return nil
}
