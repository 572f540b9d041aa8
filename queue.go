package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/owner"
)

// Queue is a queue of variable-size byte messages in shared memory: any
// number of producers, in any processes and goroutines, and one consumer at
// a time. Producers claim space in a ring and fill it in place (Claim,
// then Commit or Abort), or copy a message in (Send); the consumer reads
// each message in place (Receive, then Release) or copies it out (Copy).
// A producer waits while the queue is full and the consumer while it is
// empty, with timeout and context forms; nothing is ever dropped. While
// both sides keep up, no call makes a system call.
//
// Get a Queue from a managed segment (Config.AddQueue, Managed.Queue), or
// lay one out in raw shared memory with FormatQueue and attach to it with
// AttachQueue. A Queue value is this process's handle; its methods are safe
// for concurrent use.
//
// Crashes: a producer that dies at any point, in the middle of a claim
// included, holds the queue up for about 20 ms at most: its unfinished
// record is skipped (and counted, see QueueStats) and everything it
// committed before is delivered. A consumer that dies leaves its messages
// that were received but not released to the next consumer, which attaches
// in its place: delivery is at least once, in order, without gaps, and a
// released message is never delivered again.
//
// Messages from one producer (one goroutine that commits each claim before
// its next) arrive in the order it sent them; in general, in the order
// their space was claimed.
//
// # Protocol
//
// Shared words (see docs/FORMAT.md for offsets):
//
//	tail      bytes ever claimed: a 64-bit position (a multiple of 16),
//	          only ever CASed up by producers; bit 0 is the consumer's
//	          sleep mark (the consumer CASes it on at an empty queue, the
//	          next claim's CAS takes it off)
//	head      bytes ever released: stored by the consumer only
//	consumer  the attached consumer's owner token (0: none)
//	cwake     futex word of the consumer: bit 0 it may be asleep, bits
//	          1..31 a sequence
//	pwake     futex word of the producers: bit 0 some may be asleep
//	slots     producer slots, one per claim in progress: the owner token
//	          of the process that holds the slot, and the claim it is
//	          making: start and total (bytes, from tail)
//	ring      capacity (a power of two) bytes of records
//
// A record is a 16-byte header and the payload, padded to 16 bytes:
//
//	hd  bits 0..39 payload length, bits 40..47 state (2 committed,
//	    3 padding, 4 aborted), bits 48..63 the producer's slot
//	hc  the commit word: the record's position XOR a constant tag
//
// A record is written (for this lap: positions only grow) once its commit
// word holds its position; the ring is never cleared, and older bytes at
// that place (an older record's header, or payload) never hold it, short
// of a payload built to.
//
// Producer: takes a slot of its process (its token there), then: load
// tail; if the record would not fit before the end of the ring, the claim
// covers a padding record to the end too; if tail + claim - head exceeds
// the capacity, the queue is full. It stores (start, total) in its slot,
// then CASes tail from start to start+total (when the CAS fails, it clears
// total and tries again from the top): the claim is its. It writes the
// padding record, if any, fills the payload, and commits: hd, then hc,
// so that whoever sees hc sees hd and the payload. A fenced commit (Commit,
// Abort, a Send of more than fastSend bytes) stores hc with a full barrier
// and then loads cwake, and wakes the consumer if bit 0 was set; an
// unfenced one (a short Send) stores hc with release order only, and
// looks at cwake only right after its CAS of tail: if bit 0 was set then,
// it wakes the consumer after its commit if the bit still is (see
// sendIn: the claim that took the mark may never be committed). Either
// wakes the consumer when its CAS took the sleep mark off tail. (Stores that an atomic operation of the producer's
// publishes, its slot's start and hd, are plain stores on 64-bit machines:
// see storeOrdered; storeRelease is the unfenced hc store.)
//
// Consumer: reads at its own position r, from head up to tail, record by
// record: a committed record is returned; padding and aborted records are
// skipped; a record not written yet at r < tail is a claim in progress.
// Some slot's (start, total) covers r then, since a producer stores its
// candidate claim in its slot before the CAS that makes it its own: if a
// live producer's slot covers r the consumer waits (and, after a liveness
// slice, asks again whether it lives); if only dead ones do, it skips to
// the end of the dead claim (the nearest end of a dead slot's claim that
// is the start of what follows: tail, a written record, or another slot's
// claim), counting it. A slot is taken over from a dead process only when
// it holds no claim in the ring (it ends at or before head, or past tail).
// Release stores head past the released record; then, if pwake's bit 0 was
// set, it clears it and wakes every producer.
//
// Sleeping: a consumer about to sleep at r CASes bit 0 of cwake on, then,
// if tail is r (the queue is empty), CASes tail from r to r|1 (the mark),
// looks at its record again, and sleeps on cwake while it is unchanged.
// Three kinds of commit can come, and each wakes it or is seen:
//   - a claim made after the mark: its CAS of tail (which must expect the
//     marked value) takes the mark off, so its producer knows, and wakes
//     the consumer after its commit whatever kind the commit is. CASes of
//     one word are totally ordered: no claim misses the mark.
//   - a fenced commit of an earlier claim: its hc store (a full barrier)
//     comes before its load of cwake; the consumer's CAS of cwake before
//     its second look. Either the consumer sees the commit or the producer
//     sees the bit (Dekker, with sequentially consistent atomics).
//   - an unfenced commit of an earlier claim (a short Send): nothing tells
//     the consumer. Such a claim is in progress only for the time of a
//     short copy, so the consumer (not marked: tail was past r) polls the
//     record claimPolls times, then sleeps at most claimSleep at a time.
//     (A short Send whose CAS of tail came after the consumer set bit 0
//     wakes it, as a fenced commit does: a claim that took the mark but
//     whose producer died would wake nobody, and the messages behind
//     it would wait for the end of the consumer's sleep.)
//
// Why three: a full barrier after the commit word, on every message, waits
// for the payload's cache lines and cost a third of the throughput of
// short messages in the benchmark; the mark rides on the CAS of tail that
// every claim makes anyway. Bounding the consumer's first sleep (so that a
// release store still in flight is seen on waking) was measured too: short
// futex timeouts cost this machine (a virtual one) ~9 µs per sleep, and
// the argument would rest on how fast a store buffer drains, which no
// processor manual bounds.
//
// Producers waiting for room do the same as the first two with pwake and
// head: the consumer's store of head is a full barrier before its load of
// pwake. All sleeps are bounded (liveness checks every 20 ms of waiting).
//
// The consumer looks at the commit word at r before tail: while messages
// come, it never loads tail, and while it spins on an empty queue it
// polls that commit word only (next every spinLook polls), so that tail's
// line stays with the producers that CAS it.
//
// Invariants: head <= r <= tail <= head + capacity; positions only grow;
// a record never wraps (padding fills the end of the ring); the payload of
// a record belongs to its producer from its CAS of tail to its commit, to
// the consumer from the commit to the release, and to nobody after.
type Queue struct {
	mem  []byte // the queue's block: control words, slots, ring
	ring []byte
	mask uint64
	max  int // largest payload
	nsl  int // producer slots

	tail, head, consumer *uint64
	cwake, pwake         *uint32
	skipped, aborted     *uint64

	// This process's producer slots: free ones on a stack, one kept
	// aside for the common case of one producing goroutine.
	fast    atomic.Int32 // a free slot of ours, or -1
	slotsMu sync.Mutex
	free    []int
	owned   []int

	headCache atomic.Uint64 // a recent head, for producers
	cons      atomic.Pointer[Consumer]

	errEmpty, errFull atomic.Pointer[Error] // the Try forms' answers, made once

	life
	mng *Managed // the managed segment it belongs to, if any
}

const (
	queueMagic    = "SHMQUEU1"
	queueVersion  = 1
	qOffTail      = 64
	qOffHead      = 128
	qOffConsumer  = 192
	qOffCwake     = 200
	qOffPwake     = 256
	qOffSkipped   = 320
	qOffAborted   = 328
	qOffSlots     = 384
	qSlotSize     = 64
	qRecHeader    = 16
	qMinCapacity  = 64
	qMaxCapacity  = 1 << 40
	qDefaultSlots = 64
	qMaxSlots     = 1 << 16

	recCommitted = 2
	recPadding   = 3
	recAborted   = 4
)

// QueueSize returns the bytes a queue of the given capacity (a power of
// two, the ring's size in bytes) takes in shared memory, with producers
// slots for claims in progress at once (0: the default, 64).
func QueueSize(capacity, producers int) int {
	if producers <= 0 {
		producers = qDefaultSlots
	}
	return qOffSlots + producers*qSlotSize + capacity
}

// QueueMaxMessage returns the largest message a queue of the given capacity
// can take: a record (16 bytes of header, the payload, padded to 16) may
// not be more than half the ring, so that a claim that must skip the end
// of the ring still fits.
func QueueMaxMessage(capacity int) int { return capacity/2 - qRecHeader }

func align16(n uint64) uint64 { return (n + 15) &^ 15 }

// FormatQueue lays out an empty queue in b, which must be 64-byte aligned
// and QueueSize(capacity, producers) bytes long at least, and returns it.
// capacity is the ring's size in bytes, a power of two from 64 to 2^40;
// maxMessage the largest payload, at most QueueMaxMessage(capacity) (0: that
// maximum). Only the process that creates the memory formats it, before any
// other process attaches (AttachQueue).
func FormatQueue(b []byte, capacity, maxMessage, producers int) (*Queue, error) {
	if err := checkQueueSpec(capacity, maxMessage, producers); err != nil {
		return nil, err
	}
	if maxMessage == 0 {
		maxMessage = QueueMaxMessage(capacity)
	}
	if producers == 0 {
		producers = qDefaultSlots
	}
	need := QueueSize(capacity, producers)
	if len(b) < need {
		return nil, fmt.Errorf("%w: a queue of %d bytes with %d producer slots needs %d bytes, have %d", ErrRange, capacity, producers, need, len(b))
	}
	if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
		return nil, fmt.Errorf("%w: a queue must start at a 64-byte boundary", ErrRange)
	}
	clear(b[:qOffSlots+producers*qSlotSize])
	ne := binary.NativeEndian
	ne.PutUint32(b[8:], queueVersion)
	ne.PutUint32(b[12:], uint32(log2(uint64(capacity))))
	ne.PutUint32(b[16:], uint32(maxMessage))
	ne.PutUint32(b[20:], uint32(producers))
	// A record counts as written only when its commit word holds its
	// position (see written), so a ring of zeros is empty. The memory may
	// have held other data, or a queue (whose first lap's commit words are
	// this lap's): clear every header, the commit words above all.
	ring := b[qOffSlots+producers*qSlotSize : need]
	for i := 0; i < len(ring); i += qRecHeader {
		ne.PutUint64(ring[i:], 0)
		ne.PutUint64(ring[i+8:], 0)
	}
	copy(b[0:8], queueMagic) // last: an attacher checks it
	return AttachQueue(b)
}

func log2(x uint64) int {
	n := 0
	for x > 1 {
		x >>= 1
		n++
	}
	return n
}

func checkQueueSpec(capacity, maxMessage, producers int) error {
	if capacity < qMinCapacity || uint64(capacity) > qMaxCapacity || capacity&(capacity-1) != 0 {
		return fmt.Errorf("%w: queue capacity %d (a power of two from %d to 2^40)", ErrInvalidSize, capacity, qMinCapacity)
	}
	if maxMessage < 0 || maxMessage > QueueMaxMessage(capacity) {
		return fmt.Errorf("%w: largest message %d (at most %d for a capacity of %d)", ErrInvalidSize, maxMessage, QueueMaxMessage(capacity), capacity)
	}
	if producers < 0 || producers > qMaxSlots {
		return fmt.Errorf("%w: %d producer slots (at most %d)", ErrRange, producers, qMaxSlots)
	}
	return nil
}

// AttachQueue attaches to a queue laid out by FormatQueue in b (in this or
// another process). It checks every number of the queue's header against b
// and returns ErrCorrupt for anything it does not expect.
func AttachQueue(b []byte) (q *Queue, err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	if len(b) < qOffSlots || string(b[0:8]) != queueMagic {
		return nil, fmt.Errorf("%w: not a queue (no magic)", ErrCorrupt)
	}
	if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
		return nil, fmt.Errorf("%w: a queue must start at a 64-byte boundary", ErrRange)
	}
	ne := binary.NativeEndian
	if v := ne.Uint32(b[8:]); v != queueVersion {
		return nil, fmt.Errorf("%w: queue version %d, this package reads %d", ErrCorrupt, v, queueVersion)
	}
	shift := ne.Uint32(b[12:])
	maxMsg := int(ne.Uint32(b[16:]))
	nsl := int(ne.Uint32(b[20:]))
	if shift < 6 || shift > 40 {
		return nil, fmt.Errorf("%w: queue capacity 2^%d", ErrCorrupt, shift)
	}
	capacity := 1 << shift
	if err := checkQueueSpec(capacity, maxMsg, nsl); err != nil || nsl == 0 {
		return nil, fmt.Errorf("%w: queue header: capacity %d, largest message %d, %d producer slots", ErrCorrupt, capacity, maxMsg, nsl)
	}
	if uint64(len(b)) < uint64(QueueSize(capacity, nsl)) {
		return nil, fmt.Errorf("%w: queue of %d bytes does not fit in %d", ErrCorrupt, QueueSize(capacity, nsl), len(b))
	}
	q = &Queue{
		mem:  b[:QueueSize(capacity, nsl)],
		mask: uint64(capacity - 1),
		max:  maxMsg,
		nsl:  nsl,
	}
	q.ring = q.mem[qOffSlots+nsl*qSlotSize:]
	q.tail = (*uint64)(unsafe.Pointer(&b[qOffTail]))
	q.head = (*uint64)(unsafe.Pointer(&b[qOffHead]))
	q.consumer = (*uint64)(unsafe.Pointer(&b[qOffConsumer]))
	q.cwake = (*uint32)(unsafe.Pointer(&b[qOffCwake]))
	q.pwake = (*uint32)(unsafe.Pointer(&b[qOffPwake]))
	q.skipped = (*uint64)(unsafe.Pointer(&b[qOffSkipped]))
	q.aborted = (*uint64)(unsafe.Pointer(&b[qOffAborted]))
	q.fast.Store(-1)
	q.headCache.Store(atomic.LoadUint64(q.head))
	return q, nil
}

// Capacity returns the size of the ring in bytes.
func (q *Queue) Capacity() int { return len(q.ring) }

// MaxMessage returns the largest message the queue takes.
func (q *Queue) MaxMessage() int { return q.max }

// queue slot words
func (q *Queue) slotWord(i, w int) *uint64 {
	return (*uint64)(unsafe.Pointer(&q.mem[qOffSlots+i*qSlotSize+8*w]))
}

// The header words of the record at position pos: hd (length, state,
// slot) and hc (the commit word: the position, tagged). Positions are
// multiples of 16; one that is not (a damaged word) is checked for before
// it gets here, and in any case addresses a header inside the ring.
func (q *Queue) hd(pos uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&q.ring[pos&q.mask&^15]))
}
func (q *Queue) hc(pos uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&q.ring[pos&q.mask&^15+8]))
}

// qTag is mixed into commit words, so that the bytes of an older payload
// at a record's place cannot pass for its commit word unless they hold
// that very value.
const qTag = 0x5348_4d51_5545_5545 // "SHMQUEUE"

func commitWord(pos uint64) uint64 { return pos ^ qTag }

func recHeader(n uint64, state uint64, slot int) uint64 {
	return n | state<<40 | uint64(slot)<<48
}

func recLen(h uint64) uint64   { return h & (1<<40 - 1) }
func recState(h uint64) uint64 { return h >> 40 & 0xff }

// written reports whether the record at pos is written (committed, padding
// or aborted) in this lap: its commit word holds its position.
func (q *Queue) written(pos uint64) bool {
	return atomic.LoadUint64(q.hc(pos)) == commitWord(pos)
}

// tailSleep is tail's bit 0: the consumer sleeps, waiting for a claim at
// tail (see Queue, "Sleeping"). Positions are multiples of 16.
const tailSleep = 1

// loadTail loads tail's position (without the consumer's sleep mark).
func (q *Queue) loadTail() uint64 { return atomic.LoadUint64(q.tail) &^ tailSleep }

// A Queue's life is a life's (see life): its waits register, its short
// calls do not.

// leave ends a call registered by use that touched the shared memory:
// deferred as "defer q.leave(&err, debug.SetPanicOnFault(true))", it
// counts the call out and turns a memory fault into an error.
func (q *Queue) leave(err *error, old bool) {
	q.users.Add(-1)
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		*err = faultError(r)
	}
}

// pollErr returns the error of a Try form that found nothing to do (no
// message, no room): the common answer of a polling loop, so it is made
// once per queue and kind, and polling allocates nothing.
func (q *Queue) pollErr(p *atomic.Pointer[Error], op string, err error) error {
	if e := p.Load(); e != nil {
		return e
	}
	e := &Error{Op: op, Name: q.name(), Err: err}
	p.Store(e)
	return e
}

func (q *Queue) closedErr(op string) error {
	return &Error{Op: op, Name: q.name(), Err: ErrClosed}
}

func (q *Queue) name() string {
	if q.mng != nil {
		return q.mng.seg.name
	}
	return "queue"
}

// Errors of the queue.
var (
	// ErrFull is returned by the Try forms of a producer when the queue has
	// no room for the message.
	ErrFull = errors.New("shm: queue full")
	// ErrEmpty is returned by the Try forms of a consumer when no message
	// is there.
	ErrEmpty = errors.New("shm: queue empty")
	// ErrTooLarge is returned for a message larger than the queue takes.
	ErrTooLarge = errors.New("shm: message too large")
	// ErrInUse is returned when a second consumer tries to attach to a
	// queue whose consumer is alive.
	ErrInUse = errors.New("shm: in use by another process")
)

// Claim is space claimed in a queue for one message: fill Bytes, then
// Commit it (or Abort it). The zero Claim holds nothing.
type Claim struct {
	q    *Queue
	pos  uint64
	n    uint32
	slot int32
	own  bool // the slot is a Producer's, not the pool's
	wake bool // its claim took the consumer's sleep mark off tail: wake it
}

// Bytes returns the space to fill: exactly the length claimed.
func (c Claim) Bytes() []byte {
	if c.q == nil {
		return nil
	}
	off := c.pos&c.q.mask + qRecHeader
	return c.q.ring[off : off+uint64(c.n) : off+uint64(c.n)]
}

// Commit publishes the message. A Claim commits once: a second Commit (or a
// Commit after Abort) returns an error.
func (c Claim) Commit() error { return c.finish(recCommitted) }

// Abort gives the space up: the consumer skips it.
func (c Claim) Abort() error { return c.finish(recAborted) }

func (c Claim) finish(state uint64) (err error) {
	q := c.q
	if q == nil {
		return fmt.Errorf("%w: the zero Claim", ErrRange)
	}
	if q.stop.Load() {
		return q.closedErr("commit") // given up by Close; the memory may be gone
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	// Committed (or aborted) already: its commit word says so until the
	// consumer releases it; after that, head is past it, and its place
	// may hold another lap's record.
	if q.written(c.pos) || atomic.LoadUint64(q.head) > c.pos {
		return c.finishedErr()
	}
	return c.publish(state, true, true)
}

// publish commits (or aborts) a claim known to be neither yet, for a
// caller that guards it.
//
// A fenced commit stores the commit word with a full barrier, an unfenced
// one (a Send of at most fastSend bytes) with release order only (see
// Queue, "Sleeping"). After it, the consumer is woken if the claim took
// its mark off tail, else, if look is set (always for a fenced commit),
// if bit 0 of cwake says it may sleep.
func (c Claim) publish(state uint64, fenced, look bool) error {
	q := c.q
	// The length, state and slot first, then the commit word: whoever
	// sees the commit word (an atomic load) sees them, and the payload.
	storeOrdered(q.hd(c.pos), recHeader(uint64(c.n), state, int(c.slot)))
	if fenced {
		atomic.StoreUint64(q.hc(c.pos), commitWord(c.pos))
	} else {
		storeRelease(q.hc(c.pos), commitWord(c.pos))
	}
	if state == recAborted {
		atomic.AddUint64(q.aborted, 1)
	}
	if !c.own {
		q.putSlot(int(c.slot))
	}
	if c.wake {
		q.wakeMarked()
	} else if look {
		q.wakeConsumer()
	}
	return nil
}

func (c Claim) finishedErr() error {
	return &Error{Op: "commit", Name: c.q.name(), Err: fmt.Errorf("%w: the claim at %d is committed or aborted already", ErrRange, c.pos)}
}

// fastSend is the largest Send whose commit is unfenced: its claim is
// in progress for the time of a short copy only.
const fastSend = 4 << 10

// wakeConsumer wakes the consumer if it may be asleep (bit 0 of cwake).
func (q *Queue) wakeConsumer() {
	if w := atomic.LoadUint32(q.cwake); w&1 != 0 {
		wake(q.cwake, w)
	}
}

// wakeMarked wakes the consumer, asleep (or about to be) on cwake: a
// producer whose claim took the consumer's mark off tail calls it after
// its commit. (Out of line, so that the fast paths stay small.)
//
//go:noinline
func (q *Queue) wakeMarked() { wakeAll(q.cwake) }

// wakeProducers wakes the producers waiting for room, if any may be.
func (q *Queue) wakeProducers() {
	if w := atomic.LoadUint32(q.pwake); w&1 != 0 {
		wake(q.pwake, w)
	}
}

// wake wakes the sleepers on a queue's futex word, which held w (bit 0
// set: some may sleep): it clears the bit and counts a wake-up in the
// sequence, and the one who does wakes them all. (Out of line, so that
// the checks above inline into the fast paths.)
func wake(word *uint32, w uint32) {
	if atomic.CompareAndSwapUint32(word, w, (w+2)&^1) {
		futex.Wake(word, futex.All)
	}
}

// Claim claims space for a message of n bytes, waiting as long as the
// queue is full.
func (q *Queue) Claim(n int) (Claim, error) { return q.claimIn(n, nil, false, slotPool) }

// ClaimTimeout is Claim waiting at most d (ErrTimeout after that).
func (q *Queue) ClaimTimeout(n int, d time.Duration) (Claim, error) {
	dl := timeoutDeadline(d)
	return q.claimIn(n, &dl, false, slotPool)
}

// ClaimContext is Claim waiting until ctx is done (ctx.Err() after that).
func (q *Queue) ClaimContext(ctx context.Context, n int) (Claim, error) {
	if err := ctx.Err(); err != nil {
		return Claim{}, err
	}
	dl := ctxDeadline(ctx)
	return q.claimIn(n, &dl, false, slotPool)
}

// TryClaim is Claim that does not wait: ErrFull when there is no room.
func (q *Queue) TryClaim(n int) (Claim, error) { return q.claimIn(n, nil, true, slotPool) }

// Send copies b into the queue as one message, waiting as long as the
// queue is full.
func (q *Queue) Send(b []byte) error { return q.sendIn(b, nil, false, slotPool) }

// SendTimeout is Send waiting at most d.
func (q *Queue) SendTimeout(b []byte, d time.Duration) error {
	dl := timeoutDeadline(d)
	return q.sendIn(b, &dl, false, slotPool)
}

// SendContext is Send waiting until ctx is done.
func (q *Queue) SendContext(ctx context.Context, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl := ctxDeadline(ctx)
	return q.sendIn(b, &dl, false, slotPool)
}

// TrySend is Send that does not wait: ErrFull when there is no room.
func (q *Queue) TrySend(b []byte) error { return q.sendIn(b, nil, true, slotPool) }

// sendIn claims, fills and commits in one guarded call, in slot own (a
// Producer's, or slotPool: one of the pool's), waiting until dl (nil: no
// deadline) while the queue is full.
func (q *Queue) sendIn(b []byte, dl *deadline, try bool, own int) (err error) {
	if err := q.checkClaim(len(b), own); err != nil {
		return err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	pos, slot, wake, err := q.claimUnguarded(len(b), dl, try, own)
	if err != nil {
		return err
	}
	fenced := len(b) > fastSend
	// The consumer may sleep (bit 0 of cwake) and no mark told us: an
	// earlier claim took it, and its producer is to wake the consumer
	// after its commit. That producer may die (or its Queue be closed)
	// before it commits, and then nobody would wake the consumer before
	// the end of its sleep slice (20 ms): only then would it start to
	// look into the dead claim, and this message, behind it, would be
	// held up twice as long as a dead claim may. So a short Send that
	// finds bit 0 set after its CAS of tail (an atomic operation: the
	// load comes after it) wakes the consumer after its commit, if the
	// bit is still set then. (A fenced commit looks at cwake anyway.)
	// The word is written only by a consumer going to sleep and by its
	// wakers: while the consumer keeps up, the load hits the cache.
	look := fenced || !wake && atomic.LoadUint32(q.cwake)&1 != 0
	c := Claim{q: q, pos: pos, n: uint32(len(b)), slot: int32(slot), own: own >= 0, wake: wake}
	copy(c.Bytes(), b)
	return c.publish(recCommitted, fenced, look)
}

// checkClaim checks a claim of n bytes in slot own before it touches the
// queue.
func (q *Queue) checkClaim(n, own int) error {
	if n < 0 || n > q.max || own < slotPool || q.stop.Load() {
		return q.claimErr(n)
	}
	return nil
}

func (q *Queue) claimErr(n int) error {
	if n < 0 || n > q.max {
		return &Error{Op: "claim", Name: q.name(), Err: fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, n, q.max)}
	}
	return q.closedErr("claim") // the queue, or the Producer (slotClosed)
}

// The slot of a claim that is not a Producer's: slotPool, one from the
// queue's pool; slotClosed, a closed Producer's (an error).
const (
	slotPool   = -1
	slotClosed = -2
)

// claimIn claims in slot own (a Producer's, or slotPool: one of the
// pool's), waiting until dl (nil: no deadline) while the queue is full.
// (The deadline goes by pointer, so that the untimed forms, which pass
// nil, inline, and the Claim comes back through fewer calls.)
func (q *Queue) claimIn(n int, dl *deadline, try bool, own int) (Claim, error) {
	pos, slot, wake, err := q.claimGuarded(n, dl, try, own)
	if err != nil {
		return Claim{}, err
	}
	return Claim{q: q, pos: pos, n: uint32(n), slot: int32(slot), own: own >= 0, wake: wake}, nil
}

// claimGuarded is claimIn's guarded part: it returns the claim's position
// and slot, and whether its commit must wake the consumer. (Scalars rather than a Claim, which a function with a defer
// would return through memory, at some cost.)
func (q *Queue) claimGuarded(n int, dl *deadline, try bool, own int) (pos uint64, slot int, wake bool, err error) {
	if err := q.checkClaim(n, own); err != nil {
		return 0, 0, false, err
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	return q.claimUnguarded(n, dl, try, own)
}

// claimUnguarded is claimGuarded after its checks, for a caller that
// guards it.
func (q *Queue) claimUnguarded(n int, dl *deadline, try bool, own int) (pos uint64, slot int, wake bool, err error) {
	var none deadline
	if dl == nil {
		dl = &none
	}
	slot = own
	if own < 0 {
		var full error
		if try {
			full = ErrFull
		}
		if slot, err = q.getSlot(*dl, full); err != nil {
			return 0, 0, false, err
		}
	}

	need := align16(qRecHeader + uint64(n))
	capacity := uint64(len(q.ring))
	start, total, rec := uint64(0), uint64(0), uint64(0)
	for {
		raw := atomic.LoadUint64(q.tail)
		t := raw &^ tailSleep
		if t&15 != 0 {
			q.giveUp(slot, own)
			return 0, 0, false, &Error{Op: "claim", Name: q.name(), Err: fmt.Errorf("%w: tail %d is not a record boundary", ErrCorrupt, t)}
		}
		toEnd := capacity - t&q.mask
		total, rec = need, t
		if need > toEnd {
			total, rec = toEnd+need, t+toEnd
		}
		// (t+total < t: a damaged tail near 2^64, which the check
		// below finds more than the capacity beyond head.)
		if t+total-q.headCache.Load() > capacity || t+total < t {
			h := atomic.LoadUint64(q.head)
			q.headCache.Store(h)
			if h > t {
				// Our tail is old: others claimed and the consumer released
				// since. Look again, unless head is beyond tail as it is now.
				if t2 := q.loadTail(); h > t2 {
					q.giveUp(slot, own)
					return 0, 0, false, &Error{Op: "claim", Name: q.name(), Err: fmt.Errorf("%w: head %d beyond tail %d", ErrCorrupt, h, t2)}
				}
				continue
			}
			if t-h > capacity {
				// Never so for a true tail and head (head is loaded after
				// t, and tail never gets more than capacity past head).
				q.giveUp(slot, own)
				return 0, 0, false, &Error{Op: "claim", Name: q.name(), Err: fmt.Errorf("%w: tail %d more than the capacity beyond head %d", ErrCorrupt, t, h)}
			}
			if t+total-h > capacity {
				if try {
					q.giveUp(slot, own)
					return 0, 0, false, q.pollErr(&q.errFull, "claim", ErrFull)
				}
				if err := q.waitRoom(t, total, dl); err != nil {
					q.giveUp(slot, own)
					return 0, 0, false, &Error{Op: "claim", Name: q.name(), Err: err}
				}
				continue
			}
		}
		// The candidate claim goes in the slot before the CAS that makes it
		// ours: whoever finds its space unwritten finds whose it is.
		storeOrdered(q.slotWord(slot, 1), t)
		if tw := q.slotWord(slot, 2); atomic.LoadUint64(tw) != total {
			atomic.StoreUint64(tw, total)
		}
		if atomic.CompareAndSwapUint64(q.tail, raw, t+total) {
			start = t
			wake = raw&tailSleep != 0
			break
		}
		// Not ours: take the candidate back at once. Left there, it would
		// cover the claim of the producer that won (a live producer's
		// candidate over a dead one's claim: the consumer would wait for
		// the live one, which may be waiting for room itself).
		atomic.StoreUint64(q.slotWord(slot, 2), 0)
	}
	if rec != start {
		atomic.StoreUint64(q.hd(start), recHeader(rec-start-qRecHeader, recPadding, slot))
		storeRelease(q.hc(start), commitWord(start))
	}
	return rec, slot, wake, nil
}

// giveUp returns a slot of the pool that a failed claim took.
func (q *Queue) giveUp(slot, own int) {
	if own < 0 {
		q.putSlot(slot)
	}
}

// waitRoom waits until a claim of total bytes at tail t may fit (or tail
// moved): head advanced, or the deadline passed.
func (q *Queue) waitRoom(t, total uint64, dl *deadline) error {
	if !q.use() {
		return ErrClosed
	}
	defer q.done()
	capacity := uint64(len(q.ring))
	spins := spinBudget(unsafe.Pointer(q.pwake))
	for i := 0; i < spins && !dl.spinDone(i); i++ {
		if q.loadTail() != t || t+total-atomic.LoadUint64(q.head) <= capacity {
			spinWon(unsafe.Pointer(q.pwake))
			return nil
		}
		spinPause()
	}
	spinLost(unsafe.Pointer(q.pwake), spins > 0)
	dl.stop = &q.stop
	w := dl.watch(q.pwake)
	defer w.stop()
	for {
		v := atomic.LoadUint32(q.pwake)
		if v&1 == 0 && !atomic.CompareAndSwapUint32(q.pwake, v, v|1) {
			continue
		}
		v |= 1
		if q.loadTail() != t || t+total-atomic.LoadUint64(q.head) <= capacity {
			return nil
		}
		if err := dl.sleep(q.pwake, v, eventSlice); err != nil {
			return err
		}
	}
}

// getSlot returns a producer slot of this process, free for a claim. When
// every slot is taken it waits, registered with the queue (Close ends the
// wait with ErrClosed and waits for it), for one to be given back: by
// another goroutine of this process, or in the table; or, if full is not
// nil, it fails at once with full.
func (q *Queue) getSlot(dl deadline, full error) (_ int, err error) {
	if i, ok := q.freeSlot(); ok {
		return i, nil
	}
	// Take a slot in the segment: a free one, else one whose process died
	// and left no claim in the ring (its last claim was consumed, or what
	// the slot holds is a candidate that never became a claim).
	self := uint64(owner.Self())
	registered := false
	defer func() {
		if registered {
			q.done()
		}
	}()
	for {
		for i := 0; i < q.nsl; i++ {
			tok := q.slotWord(i, 0)
			if atomic.CompareAndSwapUint64(tok, 0, self) {
				q.took(i)
				return i, nil
			}
		}
		head, tail := atomic.LoadUint64(q.head), q.loadTail()
		for i := 0; i < q.nsl; i++ {
			tok := q.slotWord(i, 0)
			v := atomic.LoadUint64(tok)
			if v == 0 || v == self {
				continue
			}
			total := atomic.LoadUint64(q.slotWord(i, 2))
			end := atomic.LoadUint64(q.slotWord(i, 1)) + total
			if total != 0 && end > head && end <= tail {
				continue // maybe a claim in the ring, not consumed yet
			}
			if owner.Alive(unsafe.Pointer(tok), owner.Token(v)) {
				continue
			}
			// Dead, so it makes no claim any more: a candidate that ends
			// past tail now never became one (tail only grows).
			if total != 0 && end > head && end <= q.loadTail() {
				continue
			}
			if atomic.CompareAndSwapUint64(tok, v, self) {
				q.took(i)
				return i, nil
			}
		}
		if full != nil {
			return 0, &Error{Op: "claim", Name: q.name(), Err: fmt.Errorf("%w: every producer slot (%d) is in use", full, q.nsl)}
		}
		if !registered {
			if !q.use() {
				return 0, q.closedErr("claim")
			}
			registered = true
		}
		if q.stop.Load() {
			return 0, q.closedErr("claim")
		}
		if err := dl.expired(); err != nil {
			return 0, &Error{Op: "claim", Name: q.name(), Err: fmt.Errorf("%w: every producer slot (%d) is in use", err, q.nsl)}
		}
		time.Sleep(time.Millisecond)
		if i, ok := q.freeSlot(); ok {
			return i, nil
		}
	}
}

// freeSlot takes a free slot of this process's, if it has one.
func (q *Queue) freeSlot() (int, bool) {
	if i := q.fast.Swap(-1); i >= 0 {
		return int(i), true
	}
	q.slotsMu.Lock()
	defer q.slotsMu.Unlock()
	if n := len(q.free); n > 0 {
		i := q.free[n-1]
		q.free = q.free[:n-1]
		return i, true
	}
	return 0, false
}

// took makes slot i, just taken in the table, this process's. What the
// slot says about a claim is the previous holder's, and would be taken for
// this live process's: it is cleared first.
func (q *Queue) took(i int) {
	atomic.StoreUint64(q.slotWord(i, 2), 0)
	q.slotsMu.Lock()
	q.owned = append(q.owned, i)
	q.slotsMu.Unlock()
}

// putSlot gives back a slot whose claim is finished.
func (q *Queue) putSlot(i int) {
	if q.fast.CompareAndSwap(-1, int32(i)) {
		return
	}
	q.slotsMu.Lock()
	q.free = append(q.free, i)
	q.slotsMu.Unlock()
}

// Producer is a producer of a Queue for one goroutine at a time: it keeps
// a producer slot of its own, so that its claims take none from the
// queue's pool (the fastest way to send). Its methods are the Queue's;
// they must not be called concurrently, and a claim must be committed or
// aborted before the next.
type Producer struct {
	q    *Queue
	slot int
}

// Producer returns a producer for one goroutine (see Producer). Close it
// to give its slot back. When every producer slot of the queue is held by
// live processes it fails at once with an error matching ErrInUse.
func (q *Queue) Producer() (*Producer, error) {
	if q.stop.Load() {
		return nil, q.closedErr("producer")
	}
	slot, err := q.getSlot(noDeadline(), ErrInUse)
	if err != nil {
		return nil, err
	}
	return &Producer{q: q, slot: slot}, nil
}

// Close gives the producer's slot back to the queue.
func (p *Producer) Close() error {
	if p.slot >= 0 {
		p.q.putSlot(p.slot)
		p.slot = slotClosed
	}
	return nil
}

// The Producer's methods claim in its slot (slotClosed once closed).

// Claim is Queue.Claim.
func (p *Producer) Claim(n int) (Claim, error) { return p.q.claimIn(n, nil, false, p.slot) }

// ClaimTimeout is Queue.ClaimTimeout.
func (p *Producer) ClaimTimeout(n int, d time.Duration) (Claim, error) {
	dl := timeoutDeadline(d)
	return p.q.claimIn(n, &dl, false, p.slot)
}

// ClaimContext is Queue.ClaimContext.
func (p *Producer) ClaimContext(ctx context.Context, n int) (Claim, error) {
	if err := ctx.Err(); err != nil {
		return Claim{}, err
	}
	dl := ctxDeadline(ctx)
	return p.q.claimIn(n, &dl, false, p.slot)
}

// TryClaim is Queue.TryClaim.
func (p *Producer) TryClaim(n int) (Claim, error) { return p.q.claimIn(n, nil, true, p.slot) }

// Send is Queue.Send.
func (p *Producer) Send(b []byte) error { return p.q.sendIn(b, nil, false, p.slot) }

// SendTimeout is Queue.SendTimeout.
func (p *Producer) SendTimeout(b []byte, d time.Duration) error {
	dl := timeoutDeadline(d)
	return p.q.sendIn(b, &dl, false, p.slot)
}

// SendContext is Queue.SendContext.
func (p *Producer) SendContext(ctx context.Context, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl := ctxDeadline(ctx)
	return p.q.sendIn(b, &dl, false, p.slot)
}

// TrySend is Queue.TrySend.
func (p *Producer) TrySend(b []byte) error { return p.q.sendIn(b, nil, true, p.slot) }

// Consumer is the consumer side of a Queue, attached with Queue.Consumer.
// Its methods must not be called concurrently (one consumer, one reader).
type Consumer struct {
	q        *Queue
	read     uint64 // next record to read
	released uint64 // head as this consumer last stored it
	taken    uint64 // the end of the last message received (past released: messages are held)
	tail     uint64 // tail as this consumer last loaded it (see next)
	token    uint64
	watch    ownerWatch
	pend     uint64 // the unwritten record next has been waiting for, polls times
	polls    int
}

// Message is a message received from a queue, in place: Bytes is valid
// until it is released.
type Message struct {
	q   *Queue
	pos uint64
	n   uint32
}

// Bytes returns the message. Do not write to it, nor use it after its
// Release.
func (m Message) Bytes() []byte {
	if m.q == nil {
		return nil
	}
	off := m.pos&m.q.mask + qRecHeader
	return m.q.ring[off : off+uint64(m.n) : off+uint64(m.n)]
}

// end is the position after the message.
func (m Message) end() uint64 { return m.pos + align16(qRecHeader+uint64(m.n)) }

// Consumer attaches this process as the queue's consumer. A queue has one
// consumer at a time: while another consumer is attached (another
// process's that is alive, or this process's, through this handle or
// another of the same queue), Consumer returns an error matching ErrInUse;
// a dead one's place is taken, and its messages received but not released
// are delivered again.
func (q *Queue) Consumer() (c *Consumer, err error) {
	if !q.use() {
		return nil, q.closedErr("attach consumer")
	}
	defer q.leave(&err, debug.SetPanicOnFault(true))
	// This process's consumer (this handle's, or another handle's of the
	// same queue: the segment opened twice, which a handle cannot see) is
	// attached until closed.
	self, err := attachOne(q.consumer, "attach consumer", q.name(), "consumer")
	if err != nil {
		return nil, err
	}
	h := atomic.LoadUint64(q.head)
	c = &Consumer{q: q, read: h, released: h, taken: h, tail: h, token: self}
	if !q.cons.CompareAndSwap(nil, c) {
		return nil, &Error{Op: "attach consumer", Name: q.name(), Err: fmt.Errorf("%w: this process's consumer is attached", ErrInUse)}
	}
	return c, nil
}

// Close detaches the consumer; another may attach. Messages received and
// not released are delivered again to the next consumer.
func (c *Consumer) Close() error {
	q := c.q
	if !q.cons.CompareAndSwap(c, nil) {
		return nil
	}
	if !q.use() {
		return nil
	}
	defer q.done()
	return guarded(func() error {
		atomic.CompareAndSwapUint64(q.consumer, c.token, 0)
		return nil
	})
}

// Receive returns the next message, waiting as long as the queue is empty.
func (c *Consumer) Receive() (Message, error) { return c.receive(nil, false) }

// ReceiveTimeout is Receive waiting at most d (ErrTimeout after that).
func (c *Consumer) ReceiveTimeout(d time.Duration) (Message, error) {
	dl := timeoutDeadline(d)
	return c.receive(&dl, false)
}

// ReceiveContext is Receive waiting until ctx is done.
func (c *Consumer) ReceiveContext(ctx context.Context) (Message, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, err
	}
	dl := ctxDeadline(ctx)
	return c.receive(&dl, false)
}

// TryReceive is Receive that does not wait: ErrEmpty when no message is
// ready.
func (c *Consumer) TryReceive() (Message, error) { return c.receive(nil, true) }

// Release releases m and every message received before it: their space
// goes back to the producers, and their Bytes must not be used any more.
// Releasing a message not received, or released already, is an error, and
// so is a Release by a consumer closed since (the next consumer gets its
// messages again).
func (c *Consumer) Release(m Message) (err error) {
	q := c.q
	if m.q != q {
		return &Error{Op: "release", Name: q.name(), Err: fmt.Errorf("%w: not a message of this queue", ErrRange)}
	}
	if q.cons.Load() != c {
		return &Error{Op: "release", Name: q.name(), Err: fmt.Errorf("%w: consumer detached", ErrClosed)}
	}
	end := m.end()
	if end > c.read || end <= c.released {
		what := "not received"
		if end <= c.released {
			what = "released already"
		}
		return &Error{Op: "release", Name: q.name(), Err: fmt.Errorf("%w: message at %d %s", ErrRange, m.pos, what)}
	}
	if q.stop.Load() {
		return q.closedErr("release")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	c.releaseTo(end)
	return nil
}

// releaseTo is Release after its checks: end is the released message's.
func (c *Consumer) releaseTo(end uint64) {
	if end == c.taken {
		// Every message received is released: what the consumer skipped
		// since the last one (padding, aborted or dead claims) goes too.
		end = c.read
	}
	c.released = end
	atomic.StoreUint64(c.q.head, end)
	c.q.wakeProducers()
}

// Copy receives the next message into buf, waiting as long as the queue is
// empty, and releases it: it returns the message's length. A message longer
// than buf is not taken: the error matches ErrTooLarge and says its length.
func (c *Consumer) Copy(buf []byte) (int, error) { return c.copyInto(buf, nil, false) }

// CopyTimeout is Copy waiting at most d.
func (c *Consumer) CopyTimeout(buf []byte, d time.Duration) (int, error) {
	dl := timeoutDeadline(d)
	return c.copyInto(buf, &dl, false)
}

// CopyContext is Copy waiting until ctx is done.
func (c *Consumer) CopyContext(ctx context.Context, buf []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl := ctxDeadline(ctx)
	return c.copyInto(buf, &dl, false)
}

// TryCopy is Copy that does not wait: ErrEmpty when no message is ready.
func (c *Consumer) TryCopy(buf []byte) (int, error) { return c.copyInto(buf, nil, true) }

func (c *Consumer) copyInto(buf []byte, dl *deadline, try bool) (int, error) {
	taken := c.taken
	m, err := c.receive(dl, try)
	if err != nil {
		return 0, err
	}
	if int(m.n) > len(buf) {
		c.read, c.taken = m.pos, taken // not taken: it stays the next message
		return int(m.n), &Error{Op: "receive", Name: c.q.name(), Err: fmt.Errorf("%w: the message has %d bytes, the buffer %d", ErrTooLarge, m.n, len(buf))}
	}
	return c.copyOut(buf, m)
}

// copyOut copies m, just received, into buf and releases it.
func (c *Consumer) copyOut(buf []byte, m Message) (n int, err error) {
	if c.q.stop.Load() {
		return 0, c.q.closedErr("release")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	n = copy(buf, m.Bytes())
	c.releaseTo(m.end())
	return n, nil
}

// receive waits until dl (nil: no deadline); see claimIn.
func (c *Consumer) receive(dl *deadline, try bool) (Message, error) {
	pos, n, err := c.receiveGuarded(dl, try)
	if err != nil {
		return Message{}, err
	}
	return Message{q: c.q, pos: pos, n: n}, nil
}

// receiveGuarded is receive's guarded part: it returns the message's
// position and length (see claimGuarded).
func (c *Consumer) receiveGuarded(dl *deadline, try bool) (pos uint64, n uint32, err error) {
	q := c.q
	if q.cons.Load() != c {
		return 0, 0, &Error{Op: "receive", Name: q.name(), Err: fmt.Errorf("%w: consumer detached", ErrClosed)}
	}
	if q.stop.Load() {
		return 0, 0, q.closedErr("receive")
	}
	defer catchFault(&err, debug.SetPanicOnFault(true))
	m, wait, err := c.next(false)
	switch {
	case err != nil:
		return 0, 0, &Error{Op: "receive", Name: q.name(), Err: err}
	case !wait:
		return m.pos, m.n, nil
	case try:
		return 0, 0, q.pollErr(&q.errEmpty, "receive", ErrEmpty)
	}
	d := noDeadline()
	if dl != nil {
		d = *dl
	}
	m, err = c.wait(d)
	return m.pos, m.n, err
}

// wait is receive when no message is ready: it spins, then sleeps on
// cwake. It registers with the queue, so that Close ends it and waits for it.
func (c *Consumer) wait(dl deadline) (Message, error) {
	q := c.q
	if !q.use() {
		return Message{}, q.closedErr("receive")
	}
	defer q.done()
	var w *watcher
	defer func() { w.stop() }()
	spins := -1
	for {
		m, wait, err := c.next(false)
		if err != nil {
			return Message{}, &Error{Op: "receive", Name: q.name(), Err: err}
		}
		if !wait {
			return m, nil
		}
		// Spin, then sleep on cwake.
		if spins < 0 {
			spins = spinBudget(unsafe.Pointer(q.cwake))
		}
		if spins > 0 {
			// Between two calls of next, poll only the commit word of the
			// record to read: the line the next message is written to.
			// Tail, which the producers CAS, stays in their caches.
			for k := 0; k < spinLook && spins > 0; k++ {
				spins--
				if dl.spinDone(spins) {
					spins = 0
				}
				spinPause()
				if q.written(c.read) {
					break
				}
			}
			continue
		}
		dl.stop = &q.stop
		// Bit 0 of cwake on first (a fenced commit from now on wakes the
		// consumer), then tail: a wake-up after the bit is set changes
		// cwake, and ends the sleep below.
		v := atomic.LoadUint32(q.cwake)
		if v&1 == 0 {
			if !atomic.CompareAndSwapUint32(q.cwake, v, v|1) {
				continue
			}
			v |= 1
		}
		r := c.read
		t := atomic.LoadUint64(q.tail)
		marked := t == r|tailSleep // left there by a consumer that died asleep
		if t == r {
			// Empty: mark tail. The claim that takes the mark off (every
			// claim CASes tail) wakes the consumer after its commit.
			if !atomic.CompareAndSwapUint64(q.tail, r, r|tailSleep) {
				continue // a claim came: look at it
			}
			marked = true
		}
		// Look again, and into a claim in progress, whose producer may be
		// dead.
		if m, wait, err := c.next(true); err != nil || !wait {
			if marked {
				atomic.CompareAndSwapUint64(q.tail, r|tailSleep, r)
			}
			if err != nil {
				return Message{}, &Error{Op: "receive", Name: q.name(), Err: err}
			}
			return m, nil
		}
		if w == nil {
			w = dl.watch(q.cwake)
		}
		slice := eventSlice // nothing to check: the queue is empty
		if c.watch.who != 0 {
			slice = c.watch.left(time.Now()) // a producer to check on
		}
		if !marked {
			// A claim in progress at r, made before any mark: a fenced
			// commit of it will wake the consumer (bit 0 of cwake), an
			// unfenced one (a short Send) will not. A live producer makes
			// those within moments unless it was descheduled: poll a
			// little, then sleep in short slices.
			if c.pollClaim(r) {
				continue
			}
			slice = min(slice, claimSleep)
		}
		err = dl.sleep(q.cwake, v, slice)
		if marked {
			// Take the mark back unless a claim did: a mark left there
			// would cost the next commit a system call.
			atomic.CompareAndSwapUint64(q.tail, r|tailSleep, r)
		}
		if err != nil {
			// A last look: a message that came in the meantime is taken.
			if m, wait, err2 := c.next(false); err2 == nil && !wait {
				return m, nil
			}
			return Message{}, &Error{Op: "receive", Name: q.name(), Err: err}
		}
	}
}

// next looks at the record at the consumer's position, skipping what is
// not a message: it returns the next message, or wait if there is none to
// return now.
//
// It looks at the record's commit word first: a written record is read
// without loading tail, the word the producers CAS, so that a consumer
// keeping up with its producers does not pull tail's line on every message
// (a committed record ends at most a capacity past head: that is what is
// checked; a damaged length that still passes is found on the next call,
// where read is past tail). Tail is loaded for a record not written yet,
// and then only when the consumer reaches the tail it loaded last (tail
// only grows). A record not written yet at r < tail is looked into (gap:
// is its producer dead?) at once if scan is set, else only after next has
// found it unwritten gapPolls times: a live producer commits within a few
// polls, and the look reads every producer slot, lines the producers
// write.
func (c *Consumer) next(scan bool) (m Message, wait bool, err error) {
	q := c.q
	capacity := uint64(len(q.ring))
	for {
		pos := c.read
		if pos&15 != 0 || pos-c.released > capacity {
			return Message{}, false, fmt.Errorf("%w: head %d, read %d", ErrCorrupt, c.released, pos)
		}
		if !q.written(pos) {
			tail := c.tail
			if pos >= tail {
				tail = q.loadTail()
				c.tail = tail
				if pos == tail {
					return Message{}, true, nil
				}
			}
			if tail < pos || tail-c.released > capacity {
				return Message{}, false, fmt.Errorf("%w: tail %d, head %d, read %d", ErrCorrupt, tail, c.released, pos)
			}
			if !scan && c.postpone(pos) {
				return Message{}, true, nil
			}
			tail = q.loadTail()
			c.tail = tail
			skip, wait := c.gap(pos, tail)
			if wait {
				return Message{}, true, nil
			}
			c.skipTo(skip)
			atomic.AddUint64(q.skipped, 1)
			continue
		}
		h := atomic.LoadUint64(q.hd(pos)) // written before the commit word
		n := recLen(h)
		size := align16(qRecHeader + n)
		idx := pos & q.mask
		switch st := recState(h); st {
		case recCommitted, recAborted:
			if n > uint64(q.max) || idx+size > capacity || !c.within(pos+size) {
				return Message{}, false, fmt.Errorf("%w: record at %d of length %d", ErrCorrupt, pos, n)
			}
			if st == recAborted {
				c.skipTo(pos + size)
				continue
			}
			c.read = pos + size
			c.taken = c.read
			c.watch.who = 0
			return Message{q: q, pos: pos, n: uint32(n)}, false, nil
		case recPadding:
			if idx+qRecHeader+n != capacity || !c.within(pos+capacity-idx) {
				return Message{}, false, fmt.Errorf("%w: padding at %d of length %d", ErrCorrupt, pos, n)
			}
			c.skipTo(pos + capacity - idx)
		default:
			return Message{}, false, fmt.Errorf("%w: record at %d in state %d", ErrCorrupt, pos, recState(h))
		}
	}
}

// pollClaim polls the commit word at r for a while (a claim in progress
// there) and reports whether the record was written.
func (c *Consumer) pollClaim(r uint64) bool {
	for i := 0; i < claimPolls; i++ {
		spinPause()
		if c.q.written(r) {
			return true
		}
	}
	return false
}

// claimPolls is how many times a consumer about to sleep polls a claim in
// progress at its position, and claimSleep how long it then sleeps at most
// before it looks again: that claim's commit does not wake it.
const (
	claimPolls = 256
	claimSleep = time.Millisecond
)

// spinLook is how many polls of a commit word a spinning consumer makes
// between two calls of next.
const spinLook = 64

// gapPolls is how many times next finds a record unwritten before it looks
// into it (see next).
const gapPolls = 128

// postpone counts a poll that found the record at pos unwritten and
// reports whether it is too early to look into it.
func (c *Consumer) postpone(pos uint64) bool {
	if c.pend != pos {
		c.pend, c.polls = pos, 0
	}
	c.polls++
	return c.polls <= gapPolls
}

// within reports whether a record ending at end may be one: it ends at
// most a capacity past head (as tail does).
func (c *Consumer) within(end uint64) bool {
	return end-c.released <= uint64(len(c.q.ring))
}

// skipTo moves the consumer past records that are not messages; when no
// message is held (all received ones released) their space is released at
// once, else with the last message held (Release).
func (c *Consumer) skipTo(pos uint64) {
	c.read = pos
	c.watch.who = 0
	if c.taken <= c.released { // no message held
		c.releaseTo(pos)
	}
}

// gap decides about a position between the consumer and tail whose record
// is not committed yet: wait (a live producer is filling it, or about to
// write its padding), or skip to the end of a dead producer's claim.
func (c *Consumer) gap(pos, tail uint64) (skip uint64, wait bool) {
	q := c.q
	now := time.Now()
	covered, who := false, uint64(0)
	for i := 0; i < q.nsl; i++ {
		tok := atomic.LoadUint64(q.slotWord(i, 0))
		if tok == 0 {
			continue
		}
		start := atomic.LoadUint64(q.slotWord(i, 1))
		total := atomic.LoadUint64(q.slotWord(i, 2))
		if pos >= start && pos < start+total {
			covered = true
			who ^= tok + start
		}
	}
	if !covered {
		// Nobody's claim covers it (yet: a producer between storing its
		// start and its total). For a whole liveness slice, it is the claim
		// of a process that died after its slot was taken over: skip to
		// the next record that can be told.
		if !c.watch.due(^pos, now) {
			return 0, true
		}
		return c.nextStart(pos, tail), false
	}
	if !c.watch.due(who^pos, now) {
		return 0, true
	}
	// The same claims have covered pos for a liveness slice: are their
	// producers alive? A live one's claim is waited for.
	for i := 0; i < q.nsl; i++ {
		tok := atomic.LoadUint64(q.slotWord(i, 0))
		if tok == 0 {
			continue
		}
		start := atomic.LoadUint64(q.slotWord(i, 1))
		total := atomic.LoadUint64(q.slotWord(i, 2))
		if pos >= start && pos < start+total && owner.Alive(unsafe.Pointer(q.slotWord(i, 0)), owner.Token(tok)) {
			return 0, true
		}
	}
	// Only dead claims cover pos. A dead producer's slot may hold a claim
	// it made, or a candidate it never made its own (killed before its CAS,
	// or after a failed one): the claim ends where what follows starts
	// (tail, a written record, or another slot's claim). A candidate may
	// end on such a place too, further on, past records that are not its
	// own; no place inside the claim is one. So the claim's end is the
	// nearest of them.
	best := uint64(0)
	for i := 0; i < q.nsl; i++ {
		tok := atomic.LoadUint64(q.slotWord(i, 0))
		start := atomic.LoadUint64(q.slotWord(i, 1))
		e := start + atomic.LoadUint64(q.slotWord(i, 2))
		if tok != 0 && pos >= start && pos < e && e&15 == 0 && (best == 0 || e < best) &&
			(e == tail || e < tail && (q.written(e) || q.slotStarts(e))) {
			best = e
		}
	}
	if best != 0 {
		return best, false
	}
	return c.nextStart(pos, tail), false
}

// slotStarts reports whether some producer's claim starts at pos.
func (q *Queue) slotStarts(pos uint64) bool {
	for i := 0; i < q.nsl; i++ {
		if atomic.LoadUint64(q.slotWord(i, 0)) != 0 && atomic.LoadUint64(q.slotWord(i, 1)) == pos {
			return true
		}
	}
	return false
}

// nextStart finds, after pos, the start of the next record that can be
// told (a committed header of its position's lap, or a producer's claim),
// or tail.
func (c *Consumer) nextStart(pos, tail uint64) uint64 {
	q := c.q
	for p := pos + qRecHeader; p < tail; p += qRecHeader {
		if q.written(p) || q.slotStarts(p) {
			return p
		}
	}
	return tail
}

// QueueStats is a snapshot of a queue, for diagnostics (shm inspect).
type QueueStats struct {
	Capacity   int     // ring size in bytes
	MaxMessage int     // largest message
	Head, Tail uint64  // bytes released and claimed, ever
	InFlight   int     // bytes claimed and not released (Tail - Head)
	Messages   int     // committed messages not released
	Skipped    uint64  // records of dead producers skipped
	Aborted    uint64  // records aborted
	Consumer   Process // the attached consumer
	Producers  []Process
}

// Stats returns a snapshot of the queue (it reads the shared words without
// taking part).
func (q *Queue) Stats() (st QueueStats, err error) {
	if !q.use() {
		return QueueStats{}, q.closedErr("queue stats")
	}
	defer q.leave(&err, debug.SetPanicOnFault(true))
	st = QueueStats{
		Capacity:   len(q.ring),
		MaxMessage: q.max,
		Head:       atomic.LoadUint64(q.head),
		Tail:       q.loadTail(),
		Skipped:    atomic.LoadUint64(q.skipped),
		Aborted:    atomic.LoadUint64(q.aborted),
	}
	if st.Tail >= st.Head && st.Tail-st.Head <= uint64(len(q.ring)) {
		st.InFlight = int(st.Tail - st.Head)
		for p := st.Head; p < st.Tail; {
			if p&15 != 0 || !q.written(p) {
				break
			}
			h := atomic.LoadUint64(q.hd(p))
			n := recLen(h)
			size := align16(qRecHeader + n)
			if recState(h) == recPadding {
				size = uint64(len(q.ring)) - p&q.mask
			}
			if recState(h) == recCommitted {
				st.Messages++
			}
			if size == 0 || size > uint64(len(q.ring)) {
				break
			}
			p += size
		}
	}
	if v := atomic.LoadUint64(q.consumer); v != 0 {
		st.Consumer = holder(unsafe.Pointer(q.consumer), owner.Token(v))
	}
	for i := 0; i < q.nsl; i++ {
		if v := atomic.LoadUint64(q.slotWord(i, 0)); v != 0 {
			seen := false
			for _, p := range st.Producers {
				seen = seen || p.PID == owner.Token(v).PID()
			}
			if !seen {
				st.Producers = append(st.Producers, holder(unsafe.Pointer(q.slotWord(i, 0)), owner.Token(v)))
			}
		}
	}
	return st, nil
}

// Close detaches this process's handle: its consumer, if attached, and its
// producer slots go back to the queue. Calls in progress finish first.
// Claims not committed are given up (the consumer skips them; their Commit
// fails with ErrClosed), and Producers stop working. A Queue of a managed
// segment is closed with it.
func (q *Queue) Close() error {
	if !q.shut(func() {
		futex.Wake(q.cwake, futex.All)
		futex.Wake(q.pwake, futex.All)
	}) {
		return nil
	}
	return guarded(func() error {
		if c := q.cons.Swap(nil); c != nil {
			atomic.CompareAndSwapUint64(q.consumer, c.token, 0)
		}
		// Every slot goes back, those of claims in progress and of
		// Producers too: none of them can be used any more, and one left
		// with this process's token would be waited for as long as the
		// process lives (it may open the segment again).
		self := uint64(owner.Self())
		q.slotsMu.Lock()
		defer q.slotsMu.Unlock()
		q.fast.Store(-1)
		q.free = nil
		for _, i := range q.owned {
			atomic.CompareAndSwapUint64(q.slotWord(i, 0), self, 0)
		}
		q.owned = nil
		return nil
	})
}
