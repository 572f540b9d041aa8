package shm

import (
	"encoding/binary"
	"fmt"
	"github.com/go-shm/shm/internal/owner"
	"hash/crc32"
	"sort"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// The managed-segment header.
//
// A managed segment starts with a fixed 128-byte header, then a table of
// locks, a table of events, a table of queues, a table of broadcast logs
// and a table of latest-value cells (32 bytes an entry), then
// the primitives the tables point to (each at a 64-byte boundary, so that
// two primitives never share a cache line), then the user data at a 64-byte
// boundary:
//
//	off  size  field
//	  0     8  magic "GOSHM\x00\x00\x01"
//	  8     4  layout version: 3, or 4 if the segment has logs or cells
//	           (a reader of version 3 only refuses it then)
//	 12     4  byte-order tag 0x01020304, written in the creator's order
//	 16     4  word size (8)
//	 20     4  state: 0 empty, 1 initializing, 2 ready (published last)
//	 24     4  header size: bytes from 0 to the end of the last table
//	 28     4  number of locks
//	 32     4  number of events
//	 36     8  creator's owner token (internal/owner: PID in the low 22
//	           bits), as two 4-byte words, low word first
//	 44     4  CRC-32C of bytes [0, header size) with state and checksum as 0
//	 48     8  data offset
//	 56     8  data size
//	 64     4  number of queues
//	 68     4  number of logs (0 in version 3)
//	 72     4  number of cells (0 in version 3)
//	 76    52  0
//	128        lock entries:  kind u32, 0 u32, offset u64, length u64, primitive u64
//	           event entries: kind u32, 0 u32, primitive u64, 0 u64, 0 u64
//	           queue entries: kind u32 (1), 0 u32, primitive u64, capacity u64,
//	                          largest message u32, producer slots u32
//	           log entries:   kind u32 (2), 0 u32, primitive u64, capacity u64,
//	                          largest message u32, reader slots u32
//	           cell entries:  kind u32 (3), 0 u32, primitive u64, value size u64,
//	                          0 u64
//
// Offsets of primitives are from the start of the segment; lock ranges are
// relative to the data. The creator writes everything while the state is 1
// and then stores 2 atomically; an opener waits (bounded) for 2, then checks
// every field: magic, version, byte order, word size, checksum, and that
// every offset and length lies inside the segment, that lock ranges lie
// inside the data and do not overlap, and that primitives do not overlap
// the header, the data or each other. Nothing read from the header is
// trusted before that.

const (
	headerSize     = 128
	entrySize      = 32
	layoutVersion  = 3
	layoutVersion4 = 4 // with logs or cells
	byteOrderTag   = 0x01020304
	wordSize       = 8
	primAlign      = 64
	dataAlign      = 64
	maxLocks       = 4096
	maxEvents      = 4096
	maxQueues      = 4096
	maxLogs        = 4096
	maxCells       = 4096
	stateEmpty     = 0
	stateInit      = 1
	stateReady     = 2
	offState       = 20
	offCreator     = 36
	offChecksum    = 44
	eventFDPrimLen = 32
)

var magic = [8]byte{'G', 'O', 'S', 'H', 'M', 0, 0, 1}

// LockKind says which lock guards a byte range of a managed segment.
type LockKind uint32

const (
	// LockMutex is a Mutex: one holder at a time.
	LockMutex LockKind = 1 + iota
	// LockRW is an RWMutex: many readers or one writer.
	LockRW
)

func (k LockKind) String() string {
	switch k {
	case LockMutex:
		return "mutex"
	case LockRW:
		return "rwlock"
	}
	return "LockKind(" + strconv.FormatUint(uint64(k), 10) + ")"
}

// LockSpec describes one lock of a managed segment: its kind and the byte
// range [Offset, Offset+Len) of the data that it guards.
type LockSpec struct {
	Kind   LockKind
	Offset int
	Len    int
}

func primSize(kind uint32, isLock bool) uint64 {
	if isLock {
		switch LockKind(kind) {
		case LockMutex:
			return uint64(unsafe.Sizeof(Mutex{}))
		case LockRW:
			return uint64(unsafe.Sizeof(RWMutex{}))
		}
		return 0
	}
	switch EventKind(kind) {
	case EventAuto, EventManual, EventBusyAuto, EventBusyManual:
		return 8
	case EventFDAuto, EventFDManual:
		return eventFDPrimLen
	}
	return 0
}

// layout is a parsed, checked header.
type layout struct {
	dataOff, dataSize uint64
	locks             []lockEntry
	events            []eventEntry
	queues            []queueEntry
	logs              []logEntry
	cells             []cellEntry
	creator           owner.Token
}

type lockEntry struct {
	kind         LockKind
	offset, size uint64
	prim         uint64
}

type eventEntry struct {
	kind EventKind
	prim uint64
}

// QueueSpec describes a queue of a managed segment (see Queue).
type QueueSpec struct {
	Capacity   int // bytes of the ring: a power of two from 64 to 2^40
	MaxMessage int // largest message; 0: the most the capacity allows (QueueMaxMessage)
	Producers  int // producer slots: claims in progress at once; 0: 64
}

type queueEntry struct {
	prim      uint64
	capacity  uint64
	maxMsg    uint32
	producers uint32
}

// LogSpec describes a broadcast log of a managed segment (see Log).
type LogSpec struct {
	Capacity   int // bytes of the ring: a power of two from 64 to 2^40
	MaxMessage int // largest message; 0: the most the capacity allows (LogMaxMessage)
	Readers    int // slots for registered readers; 0: 64
}

type logEntry struct {
	prim     uint64
	capacity uint64
	maxMsg   uint32
	readers  uint32
}

func (s LogSpec) norm() LogSpec {
	if s.MaxMessage == 0 {
		s.MaxMessage = LogMaxMessage(s.Capacity)
	}
	if s.Readers == 0 {
		s.Readers = lDefSlots
	}
	return s
}

func (e logEntry) size() uint64 { return uint64(LogSize(int(e.capacity), int(e.readers))) }

// CellSpec describes a latest-value cell of a managed segment (see Cell).
type CellSpec struct {
	Size int // bytes of the value
}

type cellEntry struct {
	prim uint64
	size uint64
}

func (e cellEntry) len() uint64 { return uint64(CellSize(int(e.size))) }

// norm fills the defaults in.
func (s QueueSpec) norm() QueueSpec {
	if s.MaxMessage == 0 {
		s.MaxMessage = QueueMaxMessage(s.Capacity)
	}
	if s.Producers == 0 {
		s.Producers = qDefaultSlots
	}
	return s
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// plan computes the layout for a configuration (already validated) and the
// total segment size.
func plan(dataSize uint64, locks []LockSpec, events []EventKind, queues []QueueSpec, logs []LogSpec, cells []CellSpec) (layout, uint64) {
	l := layout{dataSize: dataSize}
	hdr := uint64(headerSize + entrySize*(len(locks)+len(events)+len(queues)+len(logs)+len(cells)))
	p := alignUp(hdr, primAlign)
	for _, s := range locks {
		l.locks = append(l.locks, lockEntry{kind: s.Kind, offset: uint64(s.Offset), size: uint64(s.Len), prim: p})
		p = alignUp(p+primSize(uint32(s.Kind), true), primAlign)
	}
	for _, k := range events {
		l.events = append(l.events, eventEntry{kind: k, prim: p})
		p = alignUp(p+primSize(uint32(k), false), primAlign)
	}
	for _, s := range queues {
		s = s.norm()
		l.queues = append(l.queues, queueEntry{prim: p, capacity: uint64(s.Capacity), maxMsg: uint32(s.MaxMessage), producers: uint32(s.Producers)})
		p = alignUp(p+uint64(QueueSize(s.Capacity, s.Producers)), primAlign)
	}
	for _, s := range logs {
		s = s.norm()
		e := logEntry{prim: p, capacity: uint64(s.Capacity), maxMsg: uint32(s.MaxMessage), readers: uint32(s.Readers)}
		l.logs = append(l.logs, e)
		p = alignUp(p+e.size(), primAlign)
	}
	for _, s := range cells {
		e := cellEntry{prim: p, size: uint64(s.Size)}
		l.cells = append(l.cells, e)
		p = alignUp(p+e.len(), primAlign)
	}
	l.dataOff = alignUp(p, dataAlign)
	return l, l.dataOff + dataSize
}

// headerLen is the size of the header and tables for l.
func (l *layout) headerLen() uint64 {
	return uint64(headerSize + entrySize*(len(l.locks)+len(l.events)+len(l.queues)+len(l.logs)+len(l.cells)))
}

// write stores l into b (the whole segment) and leaves the state at
// initializing; the caller publishes ready.
func (l *layout) write(b []byte, creator owner.Token) {
	ne := binary.NativeEndian
	copy(b[0:8], magic[:])
	if len(l.logs)+len(l.cells) > 0 {
		ne.PutUint32(b[8:], layoutVersion4)
	} else {
		ne.PutUint32(b[8:], layoutVersion)
	}
	ne.PutUint32(b[12:], byteOrderTag)
	ne.PutUint32(b[16:], wordSize)
	ne.PutUint32(b[24:], uint32(l.headerLen()))
	ne.PutUint32(b[28:], uint32(len(l.locks)))
	ne.PutUint32(b[32:], uint32(len(l.events)))
	putToken(b[offCreator:], creator)
	ne.PutUint64(b[48:], l.dataOff)
	ne.PutUint64(b[56:], l.dataSize)
	ne.PutUint32(b[64:], uint32(len(l.queues)))
	ne.PutUint32(b[68:], uint32(len(l.logs)))
	ne.PutUint32(b[72:], uint32(len(l.cells)))
	off := headerSize
	for _, e := range l.locks {
		ne.PutUint32(b[off:], uint32(e.kind))
		ne.PutUint64(b[off+8:], e.offset)
		ne.PutUint64(b[off+16:], e.size)
		ne.PutUint64(b[off+24:], e.prim)
		off += entrySize
	}
	for _, e := range l.events {
		ne.PutUint32(b[off:], uint32(e.kind))
		ne.PutUint64(b[off+8:], e.prim)
		off += entrySize
	}
	for _, e := range l.queues {
		ne.PutUint32(b[off:], 1)
		ne.PutUint64(b[off+8:], e.prim)
		ne.PutUint64(b[off+16:], e.capacity)
		ne.PutUint32(b[off+24:], e.maxMsg)
		ne.PutUint32(b[off+28:], e.producers)
		off += entrySize
	}
	for _, e := range l.logs {
		ne.PutUint32(b[off:], 2)
		ne.PutUint64(b[off+8:], e.prim)
		ne.PutUint64(b[off+16:], e.capacity)
		ne.PutUint32(b[off+24:], e.maxMsg)
		ne.PutUint32(b[off+28:], e.readers)
		off += entrySize
	}
	for _, e := range l.cells {
		ne.PutUint32(b[off:], 3)
		ne.PutUint64(b[off+8:], e.prim)
		ne.PutUint64(b[off+16:], e.size)
		off += entrySize
	}
	ne.PutUint32(b[offChecksum:], checksum(b[:l.headerLen()]))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the CRC-32C of a header with its state and checksum fields
// taken as zero.
func checksum(h []byte) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, h[:offState])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, h[offState+4:offChecksum])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, h[offChecksum+4:])
}

// hasMagic reports whether b starts like a managed segment.
func hasMagic(b []byte) bool {
	return len(b) >= headerSize && [8]byte(b[:8]) == magic
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// parseLayout checks the header at the start of b (a whole segment, whose
// state the caller found ready) and returns what it describes. It never
// reads outside b and never trusts a number it has not checked.
func parseLayout(b []byte) (layout, error) {
	if !hasMagic(b) {
		return layout{}, ErrNotManaged
	}
	ne := binary.NativeEndian
	if v := ne.Uint32(b[12:]); v != byteOrderTag {
		return layout{}, corrupt("byte-order tag %#x (written by a machine of the other byte order?)", v)
	}
	version := ne.Uint32(b[8:])
	if version != layoutVersion && version != layoutVersion4 {
		return layout{}, corrupt("layout version %d, this package reads %d and %d", version, layoutVersion, layoutVersion4)
	}
	if v := ne.Uint32(b[16:]); v != wordSize {
		return layout{}, corrupt("word size %d, want %d", v, wordSize)
	}
	nl, ne2, nq := ne.Uint32(b[28:]), ne.Uint32(b[32:]), ne.Uint32(b[64:])
	nlog, ncell := ne.Uint32(b[68:]), ne.Uint32(b[72:])
	if nl > maxLocks || ne2 > maxEvents || nq > maxQueues || nlog > maxLogs || ncell > maxCells {
		return layout{}, corrupt("%d locks, %d events, %d queues, %d logs and %d cells (at most %d, %d, %d, %d and %d)", nl, ne2, nq, nlog, ncell, maxLocks, maxEvents, maxQueues, maxLogs, maxCells)
	}
	if version == layoutVersion && nlog+ncell != 0 {
		return layout{}, corrupt("layout version %d with %d logs and %d cells", version, nlog, ncell)
	}
	hl := uint64(ne.Uint32(b[24:]))
	if want := uint64(headerSize + entrySize*(uint64(nl)+uint64(ne2)+uint64(nq)+uint64(nlog)+uint64(ncell))); hl != want {
		return layout{}, corrupt("header size %d, want %d for %d locks, %d events, %d queues, %d logs and %d cells", hl, want, nl, ne2, nq, nlog, ncell)
	}
	size := uint64(len(b))
	if hl > size {
		return layout{}, corrupt("header size %d beyond the segment (%d bytes)", hl, size)
	}
	if got, want := ne.Uint32(b[offChecksum:]), checksum(b[:hl]); got != want {
		return layout{}, corrupt("header checksum %#x, computed %#x", got, want)
	}
	l := layout{
		dataOff:  ne.Uint64(b[48:]),
		dataSize: ne.Uint64(b[56:]),
		creator:  getToken(b[offCreator:]),
	}
	if l.dataOff%dataAlign != 0 || l.dataOff < hl || l.dataOff > size || l.dataSize > size-l.dataOff {
		return layout{}, corrupt("data [%d, +%d) not inside the segment (%d bytes) after the header", l.dataOff, l.dataSize, size)
	}
	var prims []span
	addPrim := func(what string, i int, kind uint32, isLock bool, off uint64) error {
		n := primSize(kind, isLock)
		if n == 0 {
			return corrupt("%s %d: unknown kind %d", what, i, kind)
		}
		if off%8 != 0 || off < hl || off > l.dataOff || n > l.dataOff-off {
			return corrupt("%s %d: primitive at %d not between the header and the data", what, i, off)
		}
		prims = append(prims, span{off, off + n})
		return nil
	}
	off := uint64(headerSize)
	var ranges []span
	for i := 0; i < int(nl); i++ {
		e := lockEntry{
			kind:   LockKind(ne.Uint32(b[off:])),
			offset: ne.Uint64(b[off+8:]),
			size:   ne.Uint64(b[off+16:]),
			prim:   ne.Uint64(b[off+24:]),
		}
		if err := addPrim("lock", i, uint32(e.kind), true, e.prim); err != nil {
			return layout{}, err
		}
		if e.size == 0 || e.offset > l.dataSize || e.size > l.dataSize-e.offset {
			return layout{}, corrupt("lock %d: range [%d, +%d) not inside the data (%d bytes)", i, e.offset, e.size, l.dataSize)
		}
		ranges = append(ranges, span{e.offset, e.offset + e.size})
		l.locks = append(l.locks, e)
		off += entrySize
	}
	for i := 0; i < int(ne2); i++ {
		e := eventEntry{kind: EventKind(ne.Uint32(b[off:])), prim: ne.Uint64(b[off+8:])}
		if err := addPrim("event", i, uint32(e.kind), false, e.prim); err != nil {
			return layout{}, err
		}
		l.events = append(l.events, e)
		off += entrySize
	}
	for i := 0; i < int(nq); i++ {
		e := queueEntry{prim: ne.Uint64(b[off+8:]), capacity: ne.Uint64(b[off+16:]), maxMsg: ne.Uint32(b[off+24:]), producers: ne.Uint32(b[off+28:])}
		if kind := ne.Uint32(b[off:]); kind != 1 {
			return layout{}, corrupt("queue %d: unknown kind %d", i, kind)
		}
		if e.capacity > qMaxCapacity || checkQueueSpec(int(e.capacity), int(e.maxMsg), int(e.producers)) != nil || e.producers == 0 {
			return layout{}, corrupt("queue %d: capacity %d, largest message %d, %d producer slots", i, e.capacity, e.maxMsg, e.producers)
		}
		n := uint64(QueueSize(int(e.capacity), int(e.producers)))
		if e.prim%primAlign != 0 || e.prim < hl || e.prim > l.dataOff || n > l.dataOff-e.prim {
			return layout{}, corrupt("queue %d at %d (%d bytes) not between the header and the data", i, e.prim, n)
		}
		prims = append(prims, span{e.prim, e.prim + n})
		l.queues = append(l.queues, e)
		off += entrySize
	}
	for i := 0; i < int(nlog); i++ {
		e := logEntry{prim: ne.Uint64(b[off+8:]), capacity: ne.Uint64(b[off+16:]), maxMsg: ne.Uint32(b[off+24:]), readers: ne.Uint32(b[off+28:])}
		if kind := ne.Uint32(b[off:]); kind != 2 {
			return layout{}, corrupt("log %d: unknown kind %d", i, kind)
		}
		if e.capacity > qMaxCapacity || checkLogSpec(int(e.capacity), int(e.maxMsg), int(e.readers)) != nil || e.readers == 0 || e.maxMsg == 0 {
			return layout{}, corrupt("log %d: capacity %d, largest message %d, %d reader slots", i, e.capacity, e.maxMsg, e.readers)
		}
		n := e.size()
		if e.prim%primAlign != 0 || e.prim < hl || e.prim > l.dataOff || n > l.dataOff-e.prim {
			return layout{}, corrupt("log %d at %d (%d bytes) not between the header and the data", i, e.prim, n)
		}
		prims = append(prims, span{e.prim, e.prim + n})
		l.logs = append(l.logs, e)
		off += entrySize
	}
	for i := 0; i < int(ncell); i++ {
		e := cellEntry{prim: ne.Uint64(b[off+8:]), size: ne.Uint64(b[off+16:])}
		if kind := ne.Uint32(b[off:]); kind != 3 {
			return layout{}, corrupt("cell %d: unknown kind %d", i, kind)
		}
		if e.size > cMaxSize || checkCellSpec(int(e.size)) != nil {
			return layout{}, corrupt("cell %d: value of %d bytes", i, e.size)
		}
		n := e.len()
		if e.prim%primAlign != 0 || e.prim < hl || e.prim > l.dataOff || n > l.dataOff-e.prim {
			return layout{}, corrupt("cell %d at %d (%d bytes) not between the header and the data", i, e.prim, n)
		}
		prims = append(prims, span{e.prim, e.prim + n})
		l.cells = append(l.cells, e)
		off += entrySize
	}
	if i, j, ok := overlap(prims); ok {
		return layout{}, corrupt("primitives at %d and %d overlap", prims[i].lo, prims[j].lo)
	}
	if i, j, ok := overlap(ranges); ok {
		return layout{}, corrupt("lock ranges [%d, %d) and [%d, %d) overlap", ranges[i].lo, ranges[i].hi, ranges[j].lo, ranges[j].hi)
	}
	return l, nil
}

// span is a half-open range [lo, hi).
type span struct{ lo, hi uint64 }

// overlap reports two overlapping spans, by index.
func overlap(s []span) (int, int, bool) {
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return s[idx[a]].lo < s[idx[b]].lo })
	for k := 1; k < len(idx); k++ {
		if s[idx[k]].lo < s[idx[k-1]].hi {
			return idx[k-1], idx[k], true
		}
	}
	return 0, 0, false
}

// checkConfig validates a configuration before anything is created.
func checkConfig(size int, locks []LockSpec, events []EventKind, queues []QueueSpec, logs []LogSpec, cells []CellSpec) error {
	if len(queues) > maxQueues || len(logs) > maxLogs || len(cells) > maxCells {
		return fmt.Errorf("%w: %d queues, %d logs and %d cells (at most %d, %d and %d)", ErrRange, len(queues), len(logs), len(cells), maxQueues, maxLogs, maxCells)
	}
	for i, s := range logs {
		if err := checkLogSpec(s.Capacity, s.MaxMessage, s.Readers); err != nil {
			return fmt.Errorf("log %d: %w", i, err)
		}
	}
	for i, s := range cells {
		if err := checkCellSpec(s.Size); err != nil {
			return fmt.Errorf("cell %d: %w", i, err)
		}
	}
	for i, q := range queues {
		if err := checkQueueSpec(q.Capacity, q.MaxMessage, q.Producers); err != nil {
			return fmt.Errorf("queue %d: %w", i, err)
		}
	}
	if size <= 0 || uint64(size) > maxSize/2 {
		return fmt.Errorf("%w: data size %d", ErrInvalidSize, size)
	}
	if len(locks) > maxLocks || len(events) > maxEvents {
		return fmt.Errorf("%w: %d locks and %d events (at most %d and %d)", ErrRange, len(locks), len(events), maxLocks, maxEvents)
	}
	var ranges []span
	for i, l := range locks {
		if primSize(uint32(l.Kind), true) == 0 {
			return fmt.Errorf("%w: lock %d: unknown kind %v", ErrWrongKind, i, l.Kind)
		}
		if l.Offset < 0 || l.Len <= 0 || l.Offset > size || l.Len > size-l.Offset {
			return fmt.Errorf("%w: lock %d: range [%d, %d+%d) not inside the data (%d bytes)", ErrRange, i, l.Offset, l.Offset, l.Len, size)
		}
		ranges = append(ranges, span{uint64(l.Offset), uint64(l.Offset + l.Len)})
	}
	if i, j, ok := overlap(ranges); ok {
		return fmt.Errorf("%w: locks %d and %d guard overlapping ranges", ErrRange, i, j)
	}
	for i, k := range events {
		if primSize(uint32(k), false) == 0 {
			return fmt.Errorf("%w: event %d: unknown kind %v", ErrWrongKind, i, k)
		}
	}
	return nil
}

// The eventfd primitive in the segment (32 bytes; see eventfd.go):
//
//	0  int32   the eventfd's number in the creator (for diagnostics)
//	4  [8]byte creator's owner token, as two 4-byte words, low word first
//	16 [8]byte nonce naming the creator's socket
const (
	efdOffFD      = 0
	efdOffCreator = 4
	efdOffNonce   = 16
)

// writeEventFDSlots records in every eventfd primitive who serves it and
// under which nonce.
func (l *layout) writeEventFDSlots(b []byte, creator owner.Token, nonce [8]byte) {
	ne := binary.NativeEndian
	for _, e := range l.events {
		if e.kind != EventFDAuto && e.kind != EventFDManual {
			continue
		}
		p := b[e.prim : e.prim+eventFDPrimLen]
		ne.PutUint32(p[efdOffFD:], ^uint32(0))
		putToken(p[efdOffCreator:], creator)
		copy(p[efdOffNonce:], nonce[:])
	}
}

// headerCreator reads the creator recorded in a header that may still be
// being written (atomically: the creator may be writing it now).
// A token not written yet reads as 0.
func headerCreator(b []byte) owner.Token {
	lo := atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[offCreator])))
	if lo == 0 {
		return 0
	}
	hi := atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[offCreator+4])))
	return owner.Token(uint64(hi)<<32|uint64(lo)) & owner.Mask
}

// putToken stores t in b[0:8] as two native 4-byte words, low word first
// in memory (the offsets that hold tokens are 4-byte aligned). The high word
// is stored first: a reader that finds the low word (never 0 in a token)
// finds the high word too.
func putToken(b []byte, t owner.Token) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[4])), uint32(t>>32))
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[0])), uint32(t))
}

// getToken reads a token stored by putToken.
func getToken(b []byte) owner.Token {
	ne := binary.NativeEndian
	return owner.Token(uint64(ne.Uint32(b[4:]))<<32|uint64(ne.Uint32(b[0:]))) & owner.Mask
}
