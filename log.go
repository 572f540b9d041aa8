package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// Log is a broadcast log in shared memory: one writer appends variable-size
// byte messages, and any number of readers, in any processes, each read
// every message in order from a position of their own. The writer never
// waits for readers and never reads their positions: a reader that falls
// more than the log's capacity behind is told how many messages it missed
// (an error matching ErrLost, see LostError) and goes on from the oldest
// message still there. For every reader, messages received plus messages
// reported lost is the number of messages appended while it read.
//
// Get a Log from a managed segment (Config.AddLog, Managed.Log), or lay one
// out in raw shared memory with FormatLog and attach to it with AttachLog.
// A Log value is this process's handle, safe for concurrent use; a
// LogWriter and a LogReader are for one goroutine at a time. Closing the
// Log (or its Managed) ends the waits in progress with ErrClosed, but must
// not run while another goroutine is in one of the short calls (Append,
// Claim, Commit, Copy or Receive of a message that is there, Check): they
// do not register with the handle, which would cost them a good share of
// their time.
//
// Crashes: a reader that dies holds nothing up (its registration, if any,
// is taken over by the next reader that needs it). A writer that dies
// leaves its place to the next one (Log.Writer), which continues the log
// where the dead one's last complete message ends: readers see at most
// the message it was writing reported lost.
//
// # Protocol
//
// Shared words (see docs/FORMAT.md for offsets):
//
//	tail    bytes ever published: a 64-bit position, a multiple of 16,
//	        stored by the writer only, after each record
//	intent  where the record being written ends (tail between two
//	        appends): stored by the writer before it writes a byte of it
//	head    the oldest record still whole; last the newest record (not
//	        padding); newest the newest message's record (not padding nor
//	        an aborted claim): stored by the writer
//	writer  the writer's owner token (0: none)
//	wake    futex word of the readers: bit 0 some may be asleep, bits
//	        1..31 a sequence
//	slots   registered readers: owner token, position, next sequence
//	        number, messages lost (stored by the reader, for shm inspect)
//	ring    capacity (a power of two) bytes of records
//
// A record is a 16-byte header and the payload, padded to 16 bytes, as in
// a Queue: hd (bits 0..39 payload length, bits 40..47 state: 2 message,
// 3 padding to the end of the ring, 4 aborted claim, 5 a message lost with
// a dead writer), then the record's sequence number: the count of messages
// (and lost messages) appended before it (for padding and aborted claims,
// which take no number, the next message's).
//
// Writer, appending a record of size s at tail t (with padding first if
// it would not fit before the end of the ring; a record is at most an
// eighth of the ring, padding and record at most a quarter): end = t + padding + s. The bytes it writes held the
// records at positions [end-capacity, ...): first it moves head past them
// (walking the old records' headers, its own of a lap ago), then stores
// intent = end with a full barrier, loads wake, writes the padding record,
// the payload and the header, stores last, then stores tail = end (a
// release store), and wakes the readers if bit 0 of wake was set.
//
// Reader, at position p < tail: the bytes of positions [p, p+s) are whole
// as long as intent <= p + capacity. It loads the header, checks, then
// trusts the header (and bounds-checks it all the same); a copying read
// (Copy) copies the payload and checks again, after the copy; a reading in
// place (Receive) is checked by Check, after the caller read. A check that
// finds tail - p <= capacity - span, where span = 2 x the largest record
// (the most one append writes: a record, and padding before it), needs no
// intent: an append writes its bytes after the store of the previous
// append's tail, so a reader that saw any of them (and loads tail after
// its reads, with a load-load fence) sees that tail T or a later one, and
// the append ends before T + span, destroying positions before
// T + span - capacity <= p only. So readers keep up without loading
// intent, and its line stays in the writer's cache, where its full
// barrier is cheap; only a reader near the edge, or about to sleep,
// loads it.
// A reader that finds intent > p + capacity was overrun: it goes on from
// head (stored before intent, so never behind intent - capacity), and the
// difference of sequence numbers between what it expected and what it
// finds is the count of messages it lost. Sequence numbers only grow with
// positions, so a record whose number is lower than expected is damage.
//
// Sleeping: a reader at p == tail CASes bit 0 of wake on, then loads tail
// and intent. If tail moved, it reads; if intent > tail, a record is in
// progress, whose writer may have loaded wake before the CAS: the reader
// polls tail, then sleeps at most claimSleep at a time, twice as long
// each time the same record is still in progress, up to 8 x claimSleep
// (a claim held open), or longer once the writer is found dead. Otherwise it sleeps on
// wake: the next append stores intent after the reader's CAS (CASes and
// sequentially consistent stores of different words are totally ordered,
// and the reader loaded intent after its CAS and saw no new record), so
// its load of wake sees bit 0, and it wakes the readers after it
// publishes. The writer's full barrier comes before it writes the record,
// when its store buffer holds little; its store of tail is a release store.
//
// A new writer whose predecessor died with intent > tail writes a record
// of state 5 (and padding, if needed) over [tail, intent), numbered as the
// message that was being written, publishes it and wakes the readers.
//
// Invariants: head <= tail <= intent <= tail + capacity (between appends,
// intent == tail; padding and record together take at most the capacity);
// head >= intent - capacity; positions only grow; a record never wraps;
// the records from head to tail are whole and follow each other.
type Log struct {
	mem  []byte
	ring []byte
	mask uint64
	max  int
	nsl  int    // reader slots
	safe uint64 // a record at most this far behind tail is whole (see whole)

	tail, intent, head, last, writer, lostW *uint64
	newest                                  *uint64
	wake                                    *uint32

	wr       atomic.Pointer[LogWriter] // this process's writer
	errEmpty atomic.Pointer[Error]
	life
	mng *Managed
}

const (
	logMagic     = "SHMBLOG1"
	logVersion   = 1
	lOffTail     = 64
	lOffIntent   = 128
	lOffHead     = 192
	lOffLast     = 200
	lOffWriter   = 208
	lOffLostW    = 216
	lOffNewest   = 224
	lOffWake     = 256
	lOffSlots    = 320
	lSlotSize    = 64
	lDefSlots    = 64
	lMaxSlots    = 1 << 16
	lMinCapacity = 256

	recLost = 5

	noRecord = ^uint64(0) // last and newest, while nothing was appended
)

// LogSize returns the bytes a log of the given capacity (a power of two,
// the ring's size in bytes) takes in shared memory, with slots for readers
// registered at once (0: the default, 64).
func LogSize(capacity, readers int) int {
	if readers <= 0 {
		readers = lDefSlots
	}
	return lOffSlots + readers*lSlotSize + capacity
}

// LogMaxMessage returns the largest message a log of the given capacity can
// take: a record (16 bytes of header, the payload, padded to 16) may not be
// more than an eighth of the ring, so that one append (a record, and
// padding before it) writes at most a quarter of it, which readers far
// enough from the writer know without asking (see Log, "Reader").
func LogMaxMessage(capacity int) int { return capacity/8 - qRecHeader }

func checkLogSpec(capacity, maxMessage, readers int) error {
	if capacity < lMinCapacity || uint64(capacity) > qMaxCapacity || capacity&(capacity-1) != 0 {
		return fmt.Errorf("%w: log capacity %d (a power of two from %d to 2^40)", ErrInvalidSize, capacity, lMinCapacity)
	}
	if maxMessage < 0 || maxMessage > LogMaxMessage(capacity) {
		return fmt.Errorf("%w: largest message %d (at most %d for a capacity of %d)", ErrInvalidSize, maxMessage, LogMaxMessage(capacity), capacity)
	}
	if readers < 0 || readers > lMaxSlots {
		return fmt.Errorf("%w: %d reader slots (at most %d)", ErrRange, readers, lMaxSlots)
	}
	return nil
}

// FormatLog lays out an empty log in b, which must be 64-byte aligned and
// LogSize(capacity, readers) bytes long at least, and returns it. capacity
// is the ring's size in bytes, a power of two from 64 to 2^40; maxMessage
// the largest payload, at most LogMaxMessage(capacity) (0: that maximum);
// readers the slots for registered readers (0: 64). Only the process that
// creates the memory formats it, before any other attaches (AttachLog).
func FormatLog(b []byte, capacity, maxMessage, readers int) (*Log, error) {
	if err := checkLogSpec(capacity, maxMessage, readers); err != nil {
		return nil, err
	}
	if maxMessage == 0 {
		maxMessage = LogMaxMessage(capacity)
	}
	if readers == 0 {
		readers = lDefSlots
	}
	need := LogSize(capacity, readers)
	if len(b) < need {
		return nil, fmt.Errorf("%w: a log of %d bytes with %d reader slots needs %d bytes, have %d", ErrRange, capacity, readers, need, len(b))
	}
	if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
		return nil, fmt.Errorf("%w: a log must start at a 64-byte boundary", ErrRange)
	}
	clear(b[:lOffSlots+readers*lSlotSize])
	ne := binary.NativeEndian
	ne.PutUint32(b[8:], logVersion)
	ne.PutUint32(b[12:], uint32(log2(uint64(capacity))))
	ne.PutUint32(b[16:], uint32(maxMessage))
	ne.PutUint32(b[20:], uint32(readers))
	ne.PutUint64(b[lOffLast:], noRecord)
	ne.PutUint64(b[lOffNewest:], noRecord)
	copy(b[0:8], logMagic) // last: an attacher checks it
	return AttachLog(b)
}

// AttachLog attaches to a log laid out by FormatLog in b (in this or
// another process). It checks the log's header against b and returns
// ErrCorrupt for anything it does not expect.
func AttachLog(b []byte) (l *Log, err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if len(b) < lOffSlots || string(b[0:8]) != logMagic {
		return nil, fmt.Errorf("%w: not a log (no magic)", ErrCorrupt)
	}
	if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
		return nil, fmt.Errorf("%w: a log must start at a 64-byte boundary", ErrRange)
	}
	ne := binary.NativeEndian
	if v := ne.Uint32(b[8:]); v != logVersion {
		return nil, fmt.Errorf("%w: log version %d, this package reads %d", ErrCorrupt, v, logVersion)
	}
	shift := ne.Uint32(b[12:])
	maxMsg := int(ne.Uint32(b[16:]))
	nsl := int(ne.Uint32(b[20:]))
	if shift < 6 || shift > 40 {
		return nil, fmt.Errorf("%w: log capacity 2^%d", ErrCorrupt, shift)
	}
	capacity := 1 << shift
	if err := checkLogSpec(capacity, maxMsg, nsl); err != nil || nsl == 0 || maxMsg == 0 {
		return nil, fmt.Errorf("%w: log header: capacity %d, largest message %d, %d reader slots", ErrCorrupt, capacity, maxMsg, nsl)
	}
	if uint64(len(b)) < uint64(LogSize(capacity, nsl)) {
		return nil, fmt.Errorf("%w: log of %d bytes does not fit in %d", ErrCorrupt, LogSize(capacity, nsl), len(b))
	}
	l = &Log{mem: b[:LogSize(capacity, nsl)], mask: uint64(capacity - 1), max: maxMsg, nsl: nsl}
	l.safe = uint64(capacity) - 2*align16(qRecHeader+uint64(maxMsg))
	l.ring = l.mem[lOffSlots+nsl*lSlotSize:]
	w64 := func(off int) *uint64 { return (*uint64)(unsafe.Pointer(&b[off])) }
	l.tail, l.intent, l.head, l.last = w64(lOffTail), w64(lOffIntent), w64(lOffHead), w64(lOffLast)
	l.writer, l.lostW, l.newest = w64(lOffWriter), w64(lOffLostW), w64(lOffNewest)
	l.wake = (*uint32)(unsafe.Pointer(&b[lOffWake]))
	return l, nil
}

// Capacity returns the size of the ring in bytes.
func (l *Log) Capacity() int { return len(l.ring) }

// MaxMessage returns the largest message the log takes.
func (l *Log) MaxMessage() int { return l.max }

func (l *Log) hd(pos uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&l.ring[pos&l.mask&^15]))
}
func (l *Log) sq(pos uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&l.ring[pos&l.mask&^15+8]))
}
func (l *Log) slotWord(i, w int) *uint64 {
	return (*uint64)(unsafe.Pointer(&l.mem[lOffSlots+i*lSlotSize+8*w]))
}

func (l *Log) name() string {
	if l.mng != nil {
		return l.mng.seg.name
	}
	return "log"
}

func (l *Log) closedErr(op string) error { return &Error{Op: op, Name: l.name(), Err: ErrClosed} }

// ErrLost is matched by the error a LogReader returns when messages were
// lost to it: overwritten before it read them (it fell more than the log's
// capacity behind), overwritten while it read one in place, or never
// finished by a writer that died. The error is (or wraps) a *LostError,
// which says how many.
var ErrLost = errors.New("shm: messages lost")

// LostError reports messages a LogReader lost. It matches ErrLost.
type LostError struct {
	Count uint64 // how many messages were lost
	Seq   uint64 // the sequence number of the first one
}

func (e *LostError) Error() string {
	return "shm: " + strconv.FormatUint(e.Count, 10) + " message(s) lost from sequence number " + strconv.FormatUint(e.Seq, 10)
}

// Unwrap returns ErrLost.
func (e *LostError) Unwrap() error { return ErrLost }

// A LogWriter appends to a Log; a log has one writer at a time (see
// Log.Writer). Its methods must not be called concurrently.
type LogWriter struct {
	l      *Log
	token  uint64
	pos    uint64 // tail
	seq    uint64 // the next record's sequence number
	oldest uint64 // head
	claim  uint64 // an open claim's record position + 1, or 0
	cn     uint32 // its length
	cwake  bool   // bit 0 of wake was set at the claim
	closed atomic.Bool
}

// Writer makes this process the log's writer. A log has one writer at a
// time: while another is attached (another live process's, or this
// process's), Writer returns an error matching ErrInUse. A dead writer's
// place is taken: the new writer continues after the dead one's last
// complete message, and the message it was writing, if any, is reported
// lost to the readers.
func (l *Log) Writer() (w *LogWriter, err error) {
	if !l.use() {
		return nil, l.closedErr("attach writer")
	}
	defer l.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	self, err := attachOne(l.writer, "attach writer", l.name(), "writer")
	if err != nil {
		return nil, err
	}
	w = &LogWriter{l: l, token: self}
	if err := w.recover(); err != nil {
		atomic.CompareAndSwapUint64(l.writer, self, 0)
		return nil, &Error{Op: "attach writer", Name: l.name(), Err: err}
	}
	if !l.wr.CompareAndSwap(nil, w) {
		atomic.CompareAndSwapUint64(l.writer, self, 0)
		return nil, &Error{Op: "attach writer", Name: l.name(), Err: fmt.Errorf("%w: this process's writer is attached", ErrInUse)}
	}
	return w, nil
}

// recover reads the log's words into the new writer and, if the previous
// writer died in the middle of a record, covers that record with a lost
// one.
func (w *LogWriter) recover() error {
	l := w.l
	capacity := uint64(len(l.ring))
	t := atomic.LoadUint64(l.tail)
	i := atomic.LoadUint64(l.intent)
	h := atomic.LoadUint64(l.head)
	last := atomic.LoadUint64(l.last)
	if t&15 != 0 || i&15 != 0 || h&15 != 0 || i < t || i-t > capacity || h > t || t-h > capacity {
		return fmt.Errorf("%w: log words: tail %d, intent %d, head %d", ErrCorrupt, t, i, h)
	}
	w.pos, w.oldest = t, h
	switch {
	case last == noRecord:
	case last&15 != 0 || last >= i || last < t && t-last > capacity/2 || last >= t && last-t >= capacity:
		return fmt.Errorf("%w: log words: last %d, tail %d, intent %d", ErrCorrupt, last, t, i)
	case last >= t:
		// The previous writer died after it stored last and before tail:
		// the record at last is the one it did not publish, and its
		// number is the next.
		w.seq = atomic.LoadUint64(l.sq(last))
		if hd := atomic.LoadUint64(l.hd(last)); last+align16(qRecHeader+recLen(hd)) == i {
			if st := recState(hd); st == recAborted || st == recLost {
				// Whole (last is stored after the record), and no
				// message to lose: an aborted claim (it takes no
				// number), or a lost record a writer recovering before
				// this one wrote (counted then). Publish it as it is.
				w.seq = numberAfter(hd, w.seq)
				atomic.StoreUint64(l.tail, i)
				w.pos = i
				wakeAll(l.wake)
				return nil
			}
		}
	default:
		// The newest record (not padding): its number, and one more if it
		// took one.
		w.seq = numberAfter(atomic.LoadUint64(l.hd(last)), atomic.LoadUint64(l.sq(last)))
	}
	if i == t {
		// A predecessor that died between its store of tail and its
		// wake-up left readers asleep on a message that is there.
		wakeAll(l.wake)
		return nil
	}
	// The dead writer's record in progress: [t, i), padding first if it
	// crosses the end of the ring.
	idx := t & l.mask
	if idx+(i-t) > capacity {
		storeOrdered(l.hd(t), recHeader(capacity-idx-qRecHeader, recPadding, 0))
		storeOrdered(l.sq(t), w.seq)
		t += capacity - idx
	}
	if i > t {
		storeOrdered(l.hd(t), recHeader(i-t-qRecHeader, recLost, 0))
		storeOrdered(l.sq(t), w.seq)
		storeOrdered(l.last, t)
		storeOrdered(l.newest, t)
		w.seq++
		atomic.AddUint64(l.lostW, 1)
	}
	atomic.StoreUint64(l.tail, i) // a full barrier before the load of wake
	w.pos = i
	wakeAll(l.wake)
	return nil
}

// Close gives the writer's place up: another writer may attach.
func (w *LogWriter) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	l := w.l
	if !l.wr.CompareAndSwap(w, nil) || !l.use() {
		return nil
	}
	defer l.done()
	return guarded(func() error {
		if w.claim != 0 {
			w.finish(recAborted)
		}
		atomic.CompareAndSwapUint64(l.writer, w.token, 0)
		return nil
	})
}

// Seq returns the sequence number the next message will have: the count
// of messages (and messages lost with dead writers) appended so far.
func (w *LogWriter) Seq() uint64 { return w.seq }

// Append appends b to the log as one message. It never waits: readers that
// are behind lose the oldest messages.
func (w *LogWriter) Append(b []byte) (err error) {
	if len(b) > w.l.max {
		return w.tooLarge(len(b))
	}
	if err := w.check("append"); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	start, wk := w.begin(uint64(len(b)))
	copyToShared(w.l.ring, start&w.l.mask+qRecHeader, b)
	w.publish(start, uint64(len(b)), recCommitted, wk)
	return nil
}

func (w *LogWriter) tooLarge(n int) error {
	return &Error{Op: "append", Name: w.l.name(), Err: fmt.Errorf("%w: %d bytes, the log takes at most %d", ErrTooLarge, n, w.l.max)}
}

func (w *LogWriter) check(op string) error {
	l := w.l
	if w.closed.Load() || l.stop.Load() {
		return l.closedErr(op)
	}
	if w.claim != 0 {
		return &Error{Op: op, Name: l.name(), Err: fmt.Errorf("%w: a claim is open (Commit or Abort it first)", ErrInUse)}
	}
	return nil
}

// Claim claims space for a message of n bytes and returns it, to be filled
// in place and then published by Commit (or given up by Abort). One claim
// is open at a time; Append fails while it is.
func (w *LogWriter) Claim(n int) (b []byte, err error) {
	if n < 0 || n > w.l.max {
		return nil, w.tooLarge(n)
	}
	if err := w.check("claim"); err != nil {
		return nil, err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	start, wk := w.begin(uint64(n))
	w.claim, w.cn, w.cwake = start+1, uint32(n), wk
	off := start&w.l.mask + qRecHeader
	return w.l.ring[off : off+uint64(n) : off+uint64(n)], nil
}

// Commit publishes the open claim.
func (w *LogWriter) Commit() error { return w.end("commit", recCommitted) }

// Abort gives the open claim up: readers skip it, and it takes no
// sequence number.
func (w *LogWriter) Abort() error { return w.end("abort", recAborted) }

func (w *LogWriter) end(op string, state uint64) (err error) {
	l := w.l
	if w.closed.Load() || l.stop.Load() {
		return l.closedErr(op)
	}
	if w.claim == 0 {
		return &Error{Op: op, Name: l.name(), Err: fmt.Errorf("%w: no claim is open", ErrRange)}
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	w.finish(state)
	return nil
}

func (w *LogWriter) finish(state uint64) {
	start, n, wk := w.claim-1, uint64(w.cn), w.cwake
	w.claim = 0
	w.publish(start, n, state, wk)
}

// begin starts a record of n bytes at the writer's position: it writes
// the padding record if one is needed, moves head past the records the new
// one overwrites, and stores intent. It returns where the record starts
// and whether readers may sleep (bit 0 of wake, loaded after intent).
func (w *LogWriter) begin(n uint64) (start uint64, wk bool) {
	l := w.l
	capacity := uint64(len(l.ring))
	a := w.pos
	size := align16(qRecHeader + n)
	idx := a & l.mask
	start = a
	if idx+size > capacity {
		start = a + capacity - idx
	}
	end := start + size
	if end > capacity {
		w.advance(end-capacity, a)
	}
	atomic.StoreUint64(l.intent, end) // a full barrier, then the load of wake
	wk = atomic.LoadUint32(l.wake)&1 != 0
	if start != a {
		storeOrdered(l.hd(a), recHeader(capacity-idx-qRecHeader, recPadding, 0))
		storeOrdered(l.sq(a), w.seq)
	}
	return start, wk
}

// advance moves head to the first record at or after lo, walking the
// records from head (a lap old, written by this writer or its
// predecessors). A header that does not parse (damage) ends the walk at
// the writer's position a: every older record is given up.
func (w *LogWriter) advance(lo, a uint64) {
	l := w.l
	capacity := uint64(len(l.ring))
	o := w.oldest
	for o < lo {
		if o >= a {
			o = a
			break
		}
		h := atomic.LoadUint64(l.hd(o))
		idx := o & l.mask
		var size uint64
		switch recState(h) {
		case recCommitted, recAborted, recLost:
			size = align16(qRecHeader + recLen(h))
		case recPadding:
			size = capacity - idx
			if recLen(h) != size-qRecHeader {
				size = 0
			}
		}
		if size == 0 || idx+size > capacity || o+size > a {
			o = a
			break
		}
		o += size
	}
	if o != w.oldest {
		w.oldest = o
		storeOrdered(l.head, o)
	}
}

// publish writes the record's header and publishes it: last, then tail.
func (w *LogWriter) publish(start, n, state uint64, wk bool) {
	l := w.l
	storeOrdered(l.sq(start), w.seq)
	storeOrdered(l.hd(start), recHeader(n, state, 0))
	end := start + align16(qRecHeader+n)
	storeOrdered(l.last, start)
	if state != recAborted {
		storeOrdered(l.newest, start)
		w.seq++
	}
	storeRelease(l.tail, end)
	w.pos = end
	if wk {
		wakeAll(l.wake) // bit 0 of wake was set at begin
	}
}

// numberAfter returns the sequence number of the message after a record
// with header h and number n: n+1 after a message (or a lost one), n after
// an aborted claim, which carries the next message's number.
func numberAfter(h, n uint64) uint64 {
	if st := recState(h); st == recCommitted || st == recLost {
		return n + 1
	}
	return n
}

// LogStart says where a new LogReader starts reading.
type LogStart int

const (
	// LogOldest starts at the oldest message still in the log (or, if a
	// writer appending flat out into a small ring overwrites it again and
	// again while the reader starts, at the newest).
	LogOldest LogStart = iota
	// LogNewest starts at the newest message (the last one appended), or
	// at the next one if the log is empty.
	LogNewest
	// LogNext starts at the next message appended.
	LogNext
)

// A LogReader reads a Log from a position of its own, kept in its process.
// Its methods must not be called concurrently; use one reader per
// goroutine.
type LogReader struct {
	l    *Log
	pos  uint64 // the next record
	seq  uint64 // the next message's sequence number
	tail uint64 // the tail loaded last
	slot int    // the registration slot, or -1

	received, lost uint64
	errLost        LostError // the last loss, as an error without allocating
	lostErr        Error
	fence          uint32
	watch          ownerWatch
	deadW          uint64        // a writer found dead while its record was in progress
	busyAt         uint64        // the intent of a record found in progress, and
	busySlice      time.Duration // how long to sleep while it stays so
	cur            uint64        // the position of the last message returned, plus one
	curLost        bool          // Check found it overwritten
	closed         bool
}

// LogMessage is a message read in place by LogReader.Receive.
type LogMessage struct {
	r   *LogReader
	pos uint64
	n   uint32
	seq uint64
}

// Bytes returns the message, in the log's ring. Do not write to it. The
// writer may overwrite it at any time once the reader is more than the
// capacity behind: check what you read with LogReader.Check.
func (m LogMessage) Bytes() []byte {
	if m.r == nil {
		return nil
	}
	off := m.pos&m.r.l.mask + qRecHeader
	return m.r.l.ring[off : off+uint64(m.n) : off+uint64(m.n)]
}

// Seq returns the message's sequence number (0 for the first message of
// the log).
func (m LogMessage) Seq() uint64 { return m.seq }

// Reader returns a new reader of the log starting at from. The reader
// registers in a free slot of the log (shown by shm inspect with its lag)
// if there is one, and reads unregistered if not. Close it when done.
func (l *Log) Reader(from LogStart) (r *LogReader, err error) {
	if !l.use() {
		return nil, l.closedErr("attach reader")
	}
	defer l.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if from < LogOldest || from > LogNext {
		return nil, &Error{Op: "attach reader", Name: l.name(), Err: fmt.Errorf("%w: LogStart(%d)", ErrRange, from)}
	}
	r = &LogReader{l: l, slot: -1}
	r.pos, r.seq, err = l.start(from)
	if err != nil {
		return nil, &Error{Op: "attach reader", Name: l.name(), Err: err}
	}
	r.tail = r.pos
	self := uint64(owner.Self())
	for i := 0; i < l.nsl; i++ {
		p := l.slotWord(i, 0)
		v := atomic.LoadUint64(p)
		if v != 0 && (v == self || owner.Alive(unsafe.Pointer(p), owner.Token(v))) {
			continue
		}
		if atomic.CompareAndSwapUint64(p, v, self) {
			r.slot = i
			atomic.StoreUint64(l.slotWord(i, 1), r.pos)
			atomic.StoreUint64(l.slotWord(i, 2), 0)
			atomic.StoreUint64(l.slotWord(i, 3), 0)
			break
		}
	}
	return r, nil
}

// start returns where a new reader starts (a record's position) and the
// sequence number of the first message there, so that it counts its losses
// from its start. A record read here is checked whole after its words were
// read, as a reader's are.
//
// LogNewest starts at the newest message's record, LogNext at the end of
// the newest record (it may not be published yet: the reader waits there),
// LogOldest at head. Each but LogOldest is a record the writer will not
// overwrite for most of a lap; head is the record it overwrites next, so a
// writer appending flat out into a small ring may overwrite it again and
// again while it is read: after some tries, LogOldest starts as LogNewest.
func (l *Log) start(from LogStart) (pos, seq uint64, err error) {
	capacity := uint64(len(l.ring))
	var fence uint32
	whole := func(p uint64) bool {
		loadFence(&fence)
		return atomic.LoadUint64(l.intent)-p <= capacity
	}
	if from == LogOldest {
		for tries := 0; tries < 64; tries++ {
			h := atomic.LoadUint64(l.head)
			if h&15 != 0 {
				return 0, 0, fmt.Errorf("%w: head %d", ErrCorrupt, h)
			}
			if h == atomic.LoadUint64(l.tail) {
				break // nothing there: the next message
			}
			// A record's number: padding and aborted records carry the
			// next message's.
			seq = atomic.LoadUint64(l.sq(h))
			if whole(h) {
				return h, seq, nil
			}
		}
		from = LogNewest
	}
	if from == LogNewest {
		for tries := 0; tries < 64; tries++ {
			nw := atomic.LoadUint64(l.newest)
			if nw == noRecord || nw&15 != 0 {
				break
			}
			seq = atomic.LoadUint64(l.sq(nw))
			if whole(nw) {
				return nw, seq, nil
			}
			// A lap of aborted claims since: start after the newest record.
		}
	}
	for tries := 0; ; tries++ {
		last := atomic.LoadUint64(l.last)
		if last == noRecord {
			if t := atomic.LoadUint64(l.tail); atomic.LoadUint64(l.last) == noRecord {
				return t, 0, nil // nothing appended yet (or padding only)
			}
			continue
		}
		h := atomic.LoadUint64(l.hd(last))
		seq = atomic.LoadUint64(l.sq(last))
		if !whole(last) {
			if tries > 1000 {
				return 0, 0, fmt.Errorf("%w: the newest record (at %d) is not whole", ErrCorrupt, last)
			}
			continue // written over since we loaded last: a newer one is there
		}
		size := align16(qRecHeader + recLen(h))
		if last&15 != 0 || last&l.mask+size > capacity || recLen(h) > uint64(l.max) {
			return 0, 0, fmt.Errorf("%w: the newest record, at %d: %#x", ErrCorrupt, last, h)
		}
		return last + size, numberAfter(h, seq), nil
	}
}

// Registered reports whether the reader has a slot in the log (and so
// shows in shm inspect).
func (r *LogReader) Registered() bool { return r.slot >= 0 }

// Received returns how many messages the reader received (in place, less
// those Check found overwritten, or copied).
func (r *LogReader) Received() uint64 { return r.received }

// Lost returns how many messages the reader was told it lost.
func (r *LogReader) Lost() uint64 { return r.lost }

// Close ends the reader and frees its registration slot.
func (r *LogReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	l := r.l
	if r.slot < 0 || !l.use() {
		return nil
	}
	defer l.done()
	return guarded(func() error {
		atomic.CompareAndSwapUint64(l.slotWord(r.slot, 0), uint64(owner.Self()), 0)
		return nil
	})
}

// Receive returns the next message, in place, waiting as long as there is
// none. Read it, then call Check: the writer does not wait for readers,
// and may have overwritten it meanwhile. An error matching ErrLost (a
// *LostError) says how many messages were lost before the next one, which
// the next call returns.
func (r *LogReader) Receive() (LogMessage, error) { return r.receive(nil, false) }

// ReceiveTimeout is Receive waiting at most d (ErrTimeout after that).
func (r *LogReader) ReceiveTimeout(d time.Duration) (LogMessage, error) {
	dl := timeoutDeadline(d)
	return r.receive(&dl, false)
}

// ReceiveContext is Receive waiting until ctx is done (ctx.Err() after
// that).
func (r *LogReader) ReceiveContext(ctx context.Context) (LogMessage, error) {
	if err := ctx.Err(); err != nil {
		return LogMessage{}, err
	}
	dl := ctxDeadline(ctx)
	return r.receive(&dl, false)
}

// TryReceive is Receive that does not wait: ErrEmpty when the reader has
// read everything.
func (r *LogReader) TryReceive() (LogMessage, error) { return r.receive(nil, true) }

// Check reports whether m, the last message Receive returned, was still
// whole when Check was called, so that whatever was read from m.Bytes()
// before is the message: nil if so, else an error matching ErrLost (the
// message counts as lost, once however many times it is checked; discard
// what was read). Check of another message is an error matching ErrRange.
func (r *LogReader) Check(m LogMessage) (err error) {
	if m.r != r || m.pos+1 != r.cur {
		return &Error{Op: "check", Name: r.l.name(), Err: fmt.Errorf("%w: not the last message this reader received", ErrRange)}
	}
	if r.curLost {
		// Checked before, and counted lost then: the same answer, counted
		// once.
		return &Error{Op: "check", Name: r.l.name(), Err: &LostError{Count: 1, Seq: m.seq}}
	}
	if r.l.stop.Load() {
		return r.l.closedErr("check")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if r.whole(m.pos) {
		return nil
	}
	r.curLost = true
	r.received--
	return r.lostError("check", 1, m.seq)
}

// whole reports whether the record at pos was not overwritten: every read
// of it before the call saw its bytes. A record at most safe behind tail
// is (see Log, "Reader"): the reader need not load intent, whose line then
// stays with the writer.
func (r *LogReader) whole(pos uint64) bool {
	loadFence(&r.fence)
	if atomic.LoadUint64(r.l.tail)-pos <= r.l.safe {
		return true
	}
	return atomic.LoadUint64(r.l.intent)-pos <= uint64(len(r.l.ring))
}

// lostError counts n lost messages from seq and returns the error that
// says so. It reuses the reader's error values: the error returned before
// is overwritten by the next loss.
func (r *LogReader) lostError(op string, n, seq uint64) error {
	r.lost += n
	if r.slot >= 0 {
		atomic.StoreUint64(r.l.slotWord(r.slot, 3), r.lost)
	}
	r.errLost = LostError{Count: n, Seq: seq}
	r.lostErr = Error{Op: op, Name: r.l.name(), Err: &r.errLost}
	return &r.lostErr
}

// Copy receives the next message into buf, waiting as long as there is
// none, and returns its length. It never returns a message the writer
// overwrote while it copied: that one is reported lost. A message longer
// than buf is not received: Copy returns its length and an error matching
// ErrTooLarge, and the next call returns it again.
func (r *LogReader) Copy(buf []byte) (int, error) { return r.copyInto(buf, nil, false) }

// CopyTimeout is Copy waiting at most d.
func (r *LogReader) CopyTimeout(buf []byte, d time.Duration) (int, error) {
	dl := timeoutDeadline(d)
	return r.copyInto(buf, &dl, false)
}

// CopyContext is Copy waiting until ctx is done.
func (r *LogReader) CopyContext(ctx context.Context, buf []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl := ctxDeadline(ctx)
	return r.copyInto(buf, &dl, false)
}

// TryCopy is Copy that does not wait: ErrEmpty when there is no message.
func (r *LogReader) TryCopy(buf []byte) (int, error) { return r.copyInto(buf, nil, true) }

// copyInto is Copy: one guarded call that receives, copies and checks.
func (r *LogReader) copyInto(buf []byte, dl *deadline, try bool) (n int, err error) {
	l := r.l
	if r.closed || l.stop.Load() {
		return 0, l.closedErr("receive")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	pos, seq, cur, curLost := r.pos, r.seq, r.cur, r.curLost
	mpos, mn, mseq, err := r.receiveIn(dl, try)
	if err != nil {
		return 0, err
	}
	if int(mn) > len(buf) {
		r.pos, r.seq, r.received = pos, seq, r.received-1
		r.cur, r.curLost = cur, curLost
		r.report()
		return int(mn), &Error{Op: "receive", Name: l.name(), Err: fmt.Errorf("%w: the message has %d bytes, the buffer %d", ErrTooLarge, mn, len(buf))}
	}
	copyFromShared(buf[:mn], l.ring, mpos&l.mask+qRecHeader)
	if !r.whole(mpos) {
		r.received--
		return 0, r.lostError("receive", 1, mseq)
	}
	return int(mn), nil
}

func (r *LogReader) receive(dl *deadline, try bool) (LogMessage, error) {
	pos, n, seq, err := r.receiveGuarded(dl, try)
	if err != nil {
		return LogMessage{}, err
	}
	return LogMessage{r: r, pos: pos, n: n, seq: seq}, nil
}

func (r *LogReader) receiveGuarded(dl *deadline, try bool) (pos uint64, n uint32, seq uint64, err error) {
	l := r.l
	if r.closed || l.stop.Load() {
		return 0, 0, 0, l.closedErr("receive")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return r.receiveIn(dl, try)
}

// receiveIn is receive's work, for a guarded caller.
func (r *LogReader) receiveIn(dl *deadline, try bool) (pos uint64, n uint32, seq uint64, err error) {
	l := r.l
	pos, n, seq, wait, err := r.next()
	switch {
	case err != nil:
		return 0, 0, 0, err
	case !wait:
		return pos, n, seq, nil
	case try:
		if e := l.errEmpty.Load(); e != nil {
			return 0, 0, 0, e
		}
		e := &Error{Op: "receive", Name: l.name(), Err: ErrEmpty}
		l.errEmpty.Store(e)
		return 0, 0, 0, e
	}
	d := noDeadline()
	if dl != nil {
		d = *dl
	}
	return r.wait(d)
}

func (r *LogReader) corrupt(format string, args ...any) error {
	return &Error{Op: "receive", Name: r.l.name(), Err: fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)}
}

// report stores the reader's position in its slot, for shm inspect.
func (r *LogReader) report() {
	if r.slot >= 0 {
		storeOrdered(r.l.slotWord(r.slot, 1), r.pos)
		storeOrdered(r.l.slotWord(r.slot, 2), r.seq)
	}
}

// next reads the record at the reader's position, skipping what is not a
// message: it returns the next message, or an error (a loss, damage), or
// wait if the reader has read everything.
func (r *LogReader) next() (pos uint64, n uint32, seq uint64, wait bool, err error) {
	l := r.l
	capacity := uint64(len(l.ring))
	for {
		p := r.pos
		if p >= r.tail {
			t := atomic.LoadUint64(l.tail)
			if t == p {
				return 0, 0, 0, true, nil
			}
			if t < p && p <= atomic.LoadUint64(l.intent) && p-t <= uint64(len(l.ring)) {
				// A reader that starts at the end of a record stored but
				// not yet published: it waits for tail.
				return 0, 0, 0, true, nil
			}
			if t < p || t&15 != 0 {
				return 0, 0, 0, false, r.corrupt("tail %d, reader at %d", t, p)
			}
			r.tail = t
		}
		hd := atomic.LoadUint64(l.hd(p))
		sq := atomic.LoadUint64(l.sq(p))
		if !r.whole(p) {
			// Overrun (before or while the header was read): go on from
			// the oldest record still whole.
			h := atomic.LoadUint64(l.head)
			if h <= p || h > atomic.LoadUint64(l.tail) || h&15 != 0 {
				return 0, 0, 0, false, r.corrupt("head %d, reader at %d", h, p)
			}
			r.pos = h
			continue
		}
		ln := recLen(hd)
		size := align16(qRecHeader + ln)
		idx := p & l.mask
		st := recState(hd)
		switch st {
		case recPadding:
			size = capacity - idx
			if ln != size-qRecHeader {
				return 0, 0, 0, false, r.corrupt("padding at %d of length %d", p, ln)
			}
		case recCommitted, recAborted, recLost:
			if (st == recCommitted && ln > uint64(l.max)) || idx+size > capacity {
				return 0, 0, 0, false, r.corrupt("record at %d of length %d", p, ln)
			}
		default:
			return 0, 0, 0, false, r.corrupt("record at %d in state %d", p, st)
		}
		if size > r.tail-p {
			return 0, 0, 0, false, r.corrupt("record at %d of %d bytes beyond tail %d", p, size, r.tail)
		}
		if st == recPadding || st == recAborted {
			r.pos = p + size
			continue
		}

		switch {
		case sq < r.seq:
			return 0, 0, 0, false, r.corrupt("record at %d numbered %d, %d expected", p, sq, r.seq)
		case sq > r.seq:
			first := r.seq
			r.seq = sq
			r.report()
			return 0, 0, 0, false, r.lostError("receive", sq-first, first)
		}
		r.seq++
		r.pos = p + size
		if st == recLost {
			r.report()
			return 0, 0, 0, false, r.lostError("receive", 1, sq)
		}
		r.received++
		r.cur, r.curLost = p+1, false
		r.report()
		return p, uint32(ln), sq, false, nil
	}
}

// wait is receive when the reader has read everything: it spins on tail,
// then sleeps on wake (see Log, "Sleeping").
func (r *LogReader) wait(dl deadline) (pos uint64, n uint32, seq uint64, err error) {
	l := r.l
	if !l.use() {
		return 0, 0, 0, l.closedErr("receive")
	}
	defer l.done()
	var wt *watcher
	defer func() { wt.stop() }()
	spins := -1
	for {
		pos, n, seq, wait, err := r.next()
		if err != nil || !wait {
			return pos, n, seq, err
		}
		if spins < 0 {
			spins = spinBudget(unsafe.Pointer(l.wake))
		}
		if spins > 0 {
			for k := 0; k < spinLook && spins > 0; k++ {
				spins--
				if dl.spinDone(spins) {
					spins = 0
				}
				spinPause()
				if atomic.LoadUint64(l.tail) != r.pos {
					break
				}
			}
			continue
		}
		dl.stop = &l.stop
		v := atomic.LoadUint32(l.wake)
		if v&1 == 0 {
			if !atomic.CompareAndSwapUint32(l.wake, v, v|1) {
				continue
			}
			v |= 1
		}
		t := atomic.LoadUint64(l.tail)
		i := atomic.LoadUint64(l.intent)
		if t > r.pos {
			continue
		}
		if wt == nil {
			wt = dl.watch(l.wake)
		}
		slice := eventSlice
		if i != t {
			// A record in progress, whose writer may have loaded wake
			// before the bit was set (or the reader starts past tail, at
			// the end of one not yet published): poll, then sleep in short
			// slices, or in long ones once the writer is found dead (only
			// the next writer, which wakes the readers, can go on). A record
			// still in progress after a first slice is a claim held open
			// (or a writer descheduled): the slices double, up to
			// 8 x claimSleep, and the polling is not done again.
			if r.busyAt != i {
				r.busyAt, r.busySlice = i, claimSleep
				if r.pollTail(t) {
					continue
				}
			} else {
				r.busySlice = min(2*r.busySlice, 8*claimSleep)
			}
			slice = writerSlice(l.writer, &r.watch, &r.deadW, r.busySlice, slice)
		}
		if err := dl.sleep(l.wake, v, slice); err != nil {
			if pos, n, seq, wait, err2 := r.next(); err2 != nil || !wait {
				return pos, n, seq, err2
			}
			return 0, 0, 0, &Error{Op: "receive", Name: l.name(), Err: err}
		}
	}
}

// pollTail polls tail for a while (a record in progress) and reports
// whether it moved past t.
func (r *LogReader) pollTail(t uint64) bool {
	for i := 0; i < claimPolls; i++ {
		spinPause()
		if atomic.LoadUint64(r.l.tail) != t {
			return true
		}
	}
	return false
}

// messages returns how many messages were appended (the next one's
// number), counted as a new writer counts them (see recover): from the
// newest record, plus one if it is a message and published (a record at
// last >= tail is being published, or its writer died doing so).
func (l *Log) messages() uint64 {
	capacity := uint64(len(l.ring))
	var fence uint32
	for tries := 0; tries < 64; tries++ {
		last := atomic.LoadUint64(l.last)
		if last == noRecord || last&15 != 0 {
			return 0
		}
		n := atomic.LoadUint64(l.sq(last))
		h := atomic.LoadUint64(l.hd(last))
		loadFence(&fence)
		if atomic.LoadUint64(l.intent)-last > capacity {
			continue // written over since: a newer record is last
		}
		if last < atomic.LoadUint64(l.tail) {
			n = numberAfter(h, n)
		}
		return n
	}
	return 0
}

// LogStats is a snapshot of a log, for diagnostics (shm inspect).
type LogStats struct {
	Capacity   int
	MaxMessage int
	Tail       uint64         // bytes ever published
	Head       uint64         // position of the oldest record still whole
	Messages   uint64         // messages appended (the next sequence number)
	WriterLost uint64         // messages lost with dead writers
	Writer     Process        // the writer (PID 0: none)
	Readers    []LogReaderLag // registered readers
}

// LogReaderLag is a registered reader of a log, as LogStats shows it.
type LogReaderLag struct {
	Process Process // the reader's process
	Lag     uint64  // bytes between the reader's position and tail
	Behind  uint64  // messages appended that it has not read yet
	Lost    uint64  // messages it was told it lost
}

// Stats returns a snapshot of the log (it reads the shared words without
// stopping anybody, so the numbers may be a moment apart).
func (l *Log) Stats() (st LogStats, err error) {
	if !l.use() {
		return LogStats{}, l.closedErr("log stats")
	}
	defer l.done()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	st.Capacity, st.MaxMessage = len(l.ring), l.max
	st.Tail = atomic.LoadUint64(l.tail)
	st.Head = atomic.LoadUint64(l.head)
	st.Messages = l.messages()
	st.WriterLost = atomic.LoadUint64(l.lostW)
	st.Writer = holder(unsafe.Pointer(l.writer), owner.Token(atomic.LoadUint64(l.writer)))
	for i := 0; i < l.nsl; i++ {
		p := l.slotWord(i, 0)
		v := owner.Token(atomic.LoadUint64(p))
		if v == 0 {
			continue
		}
		pos := atomic.LoadUint64(l.slotWord(i, 1))
		seq := atomic.LoadUint64(l.slotWord(i, 2))
		rl := LogReaderLag{Process: holder(unsafe.Pointer(p), v), Lost: atomic.LoadUint64(l.slotWord(i, 3))}
		if pos <= st.Tail {
			rl.Lag = st.Tail - pos
		}
		if seq <= st.Messages {
			rl.Behind = st.Messages - seq
		}
		st.Readers = append(st.Readers, rl)
	}
	return st, nil
}

// Close detaches this process's handle: its writer, if attached, gives its
// place up, waits in progress end with ErrClosed, and later calls fail
// with ErrClosed.
func (l *Log) Close() error {
	if w := l.wr.Load(); w != nil {
		w.Close()
	}
	l.shut(func() { wakeAll(l.wake) })
	return nil
}
