package futex

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf16"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Windows has no wait on an address that crosses processes: WaitOnAddress
// only sees wake-ups from its own process. So a sleeper sleeps on a named
// kernel event instead, and the bookkeeping that makes this safe lives in
// the shared mapping itself, in a table of Buckets 64-bit words that the
// segment layer reserves in every mapping it creates and hands over with
// Register.
//
// The shared words. Each bucket word holds:
//
//	bits  0..22  waiters: sleepers registered on any word hashed to the bucket
//	bit   23     denied:  a waker was refused access to one of the bucket's
//	                      events (sticky; see "Security" below)
//	bits 24..43  gen:     the bucket's wake generation, modulo 2^20
//	bits 44..63  sig:     the oldest generation not yet known to be signalled
//
// (gen and sig share one word with waiters so that one CAS bumps gen and
// reads sig, and the table keeps its size: 23 bits of waiters are more
// threads than a system runs.) The event a sleeper of generation g waits on
// is the manual-reset event named "<mapping name>/futex/<bucket>/<g>" ('/'
// never occurs in a segment name, so it cannot clash with a mapping). An
// event is only ever set, never reset: once generation g has been signalled,
// its event stays signalled until the last handle to it closes and the
// kernel deletes it. A new mapping's words are zero: no waiters, gen = sig =
// 0.
//
// Wait(addr, val):
//
//	W1 add 1 to waiters, learning the current gen g     (atomic add)
//	W2 if *addr != val: remove ourselves, return         (atomic load)
//	W3 create-or-open the event for (bucket, g)          (CreateEventExW)
//	W4 if gen != g: remove ourselves, return             (atomic load)
//	W5 sleep on the event, at most timeout and at most
//	   the backstop (deniedSlice if denied is set)       (WaitForSingleObject)
//	W6 remove ourselves (subtract 1 from waiters)
//
// Wake(addr), called after the caller changed *addr:
//
//	K1 if waiters == 0: return (no system call)          (atomic load)
//	K2 gen++ (from g' to g'+1), reading sig s             (CAS)
//	K3 for every generation h from s to g': open the event
//	   for (bucket, h) if it exists, set it, close it
//	K4 sig = g'+1, unless sig is already there or past it (CAS)
//
// Invariants, with generations compared modulo 2^20 as distances back from
// the current gen (a legal state has sig at most a few steps behind gen:
// one step per waker between K2 and K4, alive or dead):
//
//	I1 sig never passes gen, and both only move forward.
//	I2 every generation h before sig has been signalled (K3 ran for h, after
//	   the bump that ended h) by a waker that then reached K4.
//	I3 a sleeper counted in waiters keeps the event of its generation open
//	   (the kernel keeps it) from W3 to W6.
//
// No lost wake-up: say a sleeper passed W2, so its load of *addr came before
// the waker's store, and W1 before that: K1 sees waiters >= 1. If a Wake
// bumped gen past the sleeper's g before W4, W4 sees it and returns. If not,
// the event for g existed (W3) before that bump (K2), so the bumping waker's
// K3, whose range s..g' contains g' = g (I1), finds it and sets it, and W5
// returns at once or is released. All atomics are sequentially consistent and
// the kernel object calls are ordered with them by program order in each
// thread, which is all the argument uses.
//
// No stranded sleeper when a waker dies: a process can die (killed, or
// os.Exit in another goroutine) at any point of a Wake. Dying before K2
// changes nothing shared. Dying after K2 but before its K4 leaves sig at or
// before g', so by I1 and I2 the next Wake of the bucket that completes, by
// any process, has g' in its range s..g'' and sets that event again: any
// signal of generation h comes after the bump that ended h, so by I3 it
// reaches every sleeper of h still asleep. (Without sig, as this protocol
// once was, each Wake set only its own generation's event, and the sleepers
// of a dead waker's generation slept until their timeout, for ever if they
// had none, however many times the word was woken later.) The other ways
// considered: a sleeper that also waits on the next generation's event only
// survives one death in a row, and a sleeper that re-checks after a bounded
// sleep turns every untimed wait into a slow poll; sig costs nothing on the
// common path (range of one generation, one more CAS).
//
// Security: the events are created with the mapping's own discretionary
// access (its DACL, read by the segment layer, each section right turned
// into the matching event right: map-write gives EVENT_MODIFY_STATE and
// SYNCHRONIZE, map-read gives SYNCHRONIZE) and its integrity label (or
// Medium, for a mapping without one, when the sleeper runs above Medium).
// So whoever may open the segment for writing may also set its events,
// whoever created them: without this an elevated sleeper's event got its
// token's default DACL (Administrators and SYSTEM only) and a High label,
// and a non-elevated waker of the same user could not open it; the failed
// OpenEvent was ignored and the wake lost. If a waker is refused anyway (the
// mapping's DACL changed after the event was made, an event made by another
// program with that name), it sets denied: from then on the bucket's
// sleepers sleep at most deniedSlice at a time, and sleepers already asleep
// are reached by the backstop, which bounds every sleep on an event (a
// spurious wake-up for the caller, once a second at most). So a refused wake
// arrives late, never not at all. Any other failure to open an existing
// event (out of handles) is reached by the backstop too. The backstop is
// not what reaches the sleepers of a dead waker: sig does, with the next
// Wake (the tests take the backstop away to show it).
//
// What this gives up, compared with futex(2), is precision, never safety:
// every Wake releases all the sleepers of the bucket (any n, and sleepers on
// other words that share the bucket), who see a spurious wake-up, re-check
// and sleep again; Wake's count is how many were registered, an upper bound.
// A process killed between W1 and W6 leaves its count behind, which only
// costs later Wakes an OpenEvent that finds nothing. A generation counter of
// 20 bits means a sleeper preempted between W1 and W4 for exactly a multiple
// of 2^20 wakes of its bucket would sleep until the next one (or the
// backstop): at a
// microsecond or more per wake (a system call each) that is a second of wakes
// while the sleeper stays stopped inside one system call (W3).
//
// A word outside any registered mapping (process-private memory, a mapping
// from another library, a read-only view) falls back to WaitOnAddress, which
// wakes at once within the process, with the sleep capped at pollInterval so
// that a change made by another process is noticed that late at worst.

// Buckets is the number of bucket words the segment layer reserves for a
// mapping (Buckets*8 bytes, 8-byte aligned).
const Buckets = 128

// pollInterval caps one sleep of the fallback for unregistered memory.
const pollInterval = time.Millisecond

// deniedSlice caps one sleep on an event of a bucket whose denied bit is
// set (a waker was refused access to one of its events).
const deniedSlice = 10 * time.Millisecond

// backstop caps every sleep on an event: the sleeper then returns, a
// spurious wake-up, and its caller re-checks. It only matters for a wake
// that could not reach its event (see "Security" above); wakes that can are
// delivered by the protocol. A variable so that tests can take it away.
var backstop atomic.Int64

func init() { backstop.Store(int64(time.Second)) }

// The fields of a bucket word (see the comment at the top).
const (
	waitersMask = 1<<23 - 1
	deniedBit   = 1 << 23
	genShift    = 24
	sigShift    = 44
	genMask     = 1<<20 - 1
	// maxLag bounds how many generations one Wake sets: more wakers than
	// that between K2 and K4 at once (alive or dead) cannot happen short
	// of a corrupted word, whose range must not cost a million calls.
	maxLag = 1 << 12
)

func genOf(w uint64) uint32 { return uint32(w>>genShift) & genMask }
func sigOf(w uint64) uint32 { return uint32(w>>sigShift) & genMask }

func withGen(w uint64, g uint32) uint64 {
	return w&^(genMask<<genShift) | uint64(g&genMask)<<genShift
}

func withSig(w uint64, g uint32) uint64 {
	return w&^(genMask<<sigShift) | uint64(g&genMask)<<sigShift
}

// behind returns how many generations h is behind g (modulo 2^20).
func behind(g, h uint32) uint32 { return (g - h) & genMask }

type region struct {
	base, end uintptr
	buckets   *[Buckets]uint64
	prefix    []uint16 // "<the mapping's object name>/futex/", in UTF-16
	// sas are the security attributes to create events with, strongest
	// first: the mapping's access and label, its access alone, and the
	// default (nil), each tried if the system refuses the one before.
	sas []*windows.SecurityAttributes
}

var (
	regionsMu sync.Mutex
	regions   atomic.Pointer[[]*region] // copy on write; read without a lock
)

// Register makes Wait and Wake serve the words in [base, base+size) with
// named events: buckets is the table reserved in that mapping (shared by
// every process that maps it) and name the mapping's object name, the same
// in every process ("Local\\x" or "Global\\x"). A read-only mapping is not
// registered (its sleepers could not count themselves). sd is the mapping's
// security descriptor, with its DACL and label (nil if it could not be
// read): the events get the same access (see "Security" above).
func Register(base, size uintptr, buckets *[Buckets]uint64, name string, sd *windows.SECURITY_DESCRIPTOR) {
	sas := eventSecurity(sd) // before the lock: it makes system calls
	regionsMu.Lock()
	defer regionsMu.Unlock()
	var old []*region
	if p := regions.Load(); p != nil {
		old = *p
	}
	rs := make([]*region, 0, len(old)+1)
	rs = append(rs, old...)
	prefix := utf16.Encode([]rune(name + "/futex/"))
	rs = append(rs, &region{base: base, end: base + size, buckets: buckets, prefix: prefix, sas: sas})
	regions.Store(&rs)
}

// Unregister forgets the mapping at base, before it is unmapped.
func Unregister(base uintptr) {
	regionsMu.Lock()
	defer regionsMu.Unlock()
	p := regions.Load()
	if p == nil {
		return
	}
	rs := make([]*region, 0, len(*p))
	for _, r := range *p {
		if r.base != base {
			rs = append(rs, r)
		}
	}
	regions.Store(&rs)
}

func lookup(addr *uint32) *region {
	p := regions.Load()
	if p == nil {
		return nil
	}
	a := uintptr(unsafe.Pointer(addr))
	for _, r := range *p {
		if a >= r.base && a < r.end {
			return r
		}
	}
	return nil
}

// bucket picks the bucket word for addr: the same in every process, since
// it depends only on the offset inside the mapping.
func (r *region) bucket(addr *uint32) (uint32, *uint64) {
	off := uint64(uintptr(unsafe.Pointer(addr))-r.base) >> 2
	b := uint32(((off * 0x9e3779b97f4a7c15) >> 32) % Buckets)
	return b, &r.buckets[b]
}

// nameBuf holds an event's name, in UTF-16 with a NUL at the end: long
// enough for any segment name (at most 255 bytes, and no more UTF-16 units
// than UTF-8 bytes) with its namespace and the suffix. Wait and Wake build
// the name in one on their stack, so that they allocate nothing.
type nameBuf [300]uint16

// eventName returns the NUL-terminated name of the event for generation gen
// of bucket b, in buf if it fits.
func (r *region) eventName(buf *nameBuf, b, gen uint32) *uint16 {
	s := buf[:0]
	if len(r.prefix)+2*10+2 > len(buf) {
		s = nil // a name longer than segment names can be: allocate
	}
	s = append(s, r.prefix...)
	s = appendUint(s, b)
	s = append(s, '/')
	s = appendUint(s, gen)
	s = append(s, 0)
	return &s[0]
}

// appendUint appends the decimal digits of v.
func appendUint(s []uint16, v uint32) []uint16 {
	var d [10]uint16
	i := len(d)
	for {
		i--
		d[i] = '0' + uint16(v%10)
		if v /= 10; v == 0 {
			break
		}
	}
	return append(s, d[i:]...)
}

// Wait sleeps while *addr == val, for at most timeout (Forever: no limit).
// It returns nil when woken, when *addr != val, or spuriously, ErrTimeout
// when the timeout passed, and another error only when the system refused to
// wait. The sleep is a blocking system call for the Go scheduler, so other
// goroutines keep running.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	r := lookup(addr)
	if r == nil {
		return waitLocal(addr, val, timeout)
	}
	b, w := r.bucket(addr)
	g := genOf(atomic.AddUint64(w, 1))    // W1
	defer atomic.AddUint64(w, ^uint64(0)) // W6
	if atomic.LoadUint32(addr) != val {   // W2
		return nil
	}
	key := eventKey{r, b, g}
	h, err := events.acquire(key) // W3
	if err != nil {
		// No event to sleep on (out of handles, or refused access): poll.
		return sleepPoll(timeout)
	}
	defer events.release(key)
	cur := atomic.LoadUint64(w)
	if genOf(cur) != g { // W4
		return nil
	}
	limit := time.Duration(backstop.Load())
	if cur&deniedBit != 0 {
		limit = deniedSlice
	}
	ms, capped := millis(timeout)
	if lim, _ := millis(limit); ms > lim {
		ms, capped = lim, true
	}
	ev, err := windows.WaitForSingleObject(h, ms) // W5
	switch {
	case err != nil:
		return err
	case ev == uint32(windows.WAIT_TIMEOUT):
		if capped {
			return nil // the real timeout is longer than this wait
		}
		return ErrTimeout
	}
	return nil
}

// Wake wakes the processes and threads sleeping in Wait on addr (see above:
// all those of its bucket, whatever n is) and returns an upper bound of how
// many it woke, at most n.
func Wake(addr *uint32, n int) int {
	if n <= 0 {
		return 0
	}
	r := lookup(addr)
	if r == nil {
		return wakeLocal(addr, n)
	}
	b, w := r.bucket(addr)
	old, ok := bump(w)
	if !ok {
		return 0
	}
	r.signal(b, w, sigOf(old), genOf(old))
	return min(int(old&waitersMask), n)
}

// bump is K1 and K2 of Wake: it returns the bucket word as it was before
// the bump, or ok false if no sleeper is registered.
func bump(w *uint64) (old uint64, ok bool) {
	for {
		old = atomic.LoadUint64(w)
		if old&waitersMask == 0 { // K1
			return old, false
		}
		if atomic.CompareAndSwapUint64(w, old, withGen(old, genOf(old)+1)) { // K2
			return old, true
		}
	}
}

// signal is K3 and K4 of Wake: it sets the events of generations from to
// to, those that exist, then moves sig past to.
func (r *region) signal(b uint32, w *uint64, from, to uint32) {
	if behind(to, from) > maxLag {
		from = (to - maxLag) & genMask
	}
	var buf nameBuf
	for h := from; ; h = (h + 1) & genMask {
		ev, err := windows.OpenEvent(windows.EVENT_MODIFY_STATE, false, r.eventName(&buf, b, h)) // K3
		switch err {
		case nil:
			windows.SetEvent(ev)
			windows.CloseHandle(ev)
		case windows.ERROR_FILE_NOT_FOUND:
			// No sleeper on h (or none left).
		case windows.ERROR_ACCESS_DENIED:
			// Its sleepers are reached by the backstop; later ones of this
			// bucket sleep in deniedSlice steps.
			setDenied(w)
		default:
			// Out of handles or the like: the backstop reaches them.
		}
		if h == to {
			break
		}
	}
	next := (to + 1) & genMask
	for { // K4
		old := atomic.LoadUint64(w)
		g := genOf(old)
		if behind(g, sigOf(old)) <= behind(g, next) {
			return // another waker moved it there or past it already
		}
		if atomic.CompareAndSwapUint64(w, old, withSig(old, next)) {
			return
		}
	}
}

func setDenied(w *uint64) {
	for {
		old := atomic.LoadUint64(w)
		if old&deniedBit != 0 || atomic.CompareAndSwapUint64(w, old, old|deniedBit) {
			return
		}
	}
}

// events caches this process's handles to the events its goroutines sleep
// on: goroutines of one process sleeping on one generation share a handle,
// and the handle is closed when the last of them leaves, so the cache never
// holds more handles than there are sleepers. They are few, so the cache is
// a slice searched in order, whose array is reused: a sleep allocates
// nothing once the slice has grown to the most sleepers seen at once.
var events eventCache

type eventKey struct {
	r   *region
	b   uint32
	gen uint32
}

type eventEntry struct {
	k    eventKey
	h    windows.Handle
	refs int
}

type eventCache struct {
	mu      sync.Mutex
	entries []eventEntry
}

func (c *eventCache) acquire(k eventKey) (windows.Handle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.entries {
		if e := &c.entries[i]; e.k == k {
			e.refs++
			return e.h, nil
		}
	}
	var buf nameBuf
	h, err := k.r.createEvent(k.r.eventName(&buf, k.b, k.gen))
	if err != nil {
		return 0, err
	}
	c.entries = append(c.entries, eventEntry{k: k, h: h, refs: 1})
	return h, nil
}

func (c *eventCache) release(k eventKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.entries {
		e := &c.entries[i]
		if e.k != k {
			continue
		}
		if e.refs--; e.refs == 0 {
			windows.CloseHandle(e.h)
			last := len(c.entries) - 1
			c.entries[i] = c.entries[last]
			c.entries[last] = eventEntry{} // drop the region pointer
			c.entries = c.entries[:last]
		}
		return
	}
}

// millis converts a timeout to a Windows wait in milliseconds, rounded up so
// that a wait never ends before its timeout. capped reports that the timeout
// was longer than the longest finite wait.
func millis(timeout time.Duration) (ms uint32, capped bool) {
	if timeout < 0 {
		return windows.INFINITE, false
	}
	const max = windows.INFINITE - 1
	m := (timeout + time.Millisecond - 1) / time.Millisecond
	if m > max {
		return max, true
	}
	return uint32(m), false
}

var (
	kernelbase        = windows.NewLazySystemDLL("kernelbase.dll")
	procWaitOnAddress = kernelbase.NewProc("WaitOnAddress")
	procWakeAll       = kernelbase.NewProc("WakeByAddressAll")
	haveWaitOnAddress = sync.OnceValue(func() bool {
		return procWaitOnAddress.Find() == nil && procWakeAll.Find() == nil
	})
)

// waitLocal serves a word outside any registered mapping.
func waitLocal(addr *uint32, val uint32, timeout time.Duration) error {
	if atomic.LoadUint32(addr) != val {
		return nil
	}
	start := time.Now()
	d := pollInterval
	if timeout >= 0 && timeout < d {
		d = timeout
	}
	if !haveWaitOnAddress() {
		time.Sleep(d)
	} else {
		ms, _ := millis(d)
		// SyscallN rather than Call, which would move val to the heap.
		syscall.SyscallN(procWaitOnAddress.Addr(), uintptr(unsafe.Pointer(addr)), uintptr(unsafe.Pointer(&val)), 4, uintptr(ms))
	}
	if timeout >= 0 && time.Since(start) >= timeout {
		return ErrTimeout
	}
	return nil
}

func wakeLocal(addr *uint32, n int) int {
	if haveWaitOnAddress() {
		syscall.SyscallN(procWakeAll.Addr(), uintptr(unsafe.Pointer(addr)))
	}
	return 0
}

// sleepPoll stands in for a sleep that could not be set up: it returns after
// a short while, a spurious wake-up for the caller, who re-checks its word.
func sleepPoll(timeout time.Duration) error {
	if timeout >= 0 && timeout <= pollInterval {
		time.Sleep(timeout)
		return ErrTimeout
	}
	time.Sleep(pollInterval)
	return nil
}

// createEvent creates (manual reset, not signalled) or opens the event
// name, for waiting on it: with the region's security, the strongest that
// the system accepts.
func (r *region) createEvent(name *uint16) (windows.Handle, error) {
	sas := r.sas
	if len(sas) == 0 {
		sas = []*windows.SecurityAttributes{nil}
	}
	var err error
	for _, sa := range sas {
		var h windows.Handle
		h, err = windows.CreateEventEx(sa, name, windows.CREATE_EVENT_MANUAL_RESET, windows.SYNCHRONIZE)
		if h != 0 {
			return h, nil // made, or an existing one opened as it is
		}
		if err == windows.ERROR_ACCESS_DENIED {
			break // it exists and refuses us: another descriptor cannot help
		}
	}
	return 0, err
}

// Section and event rights (winnt.h) that package windows does not name.
const (
	sectionQuery    = 0x1
	sectionMapWrite = 0x2
	sectionMapRead  = 0x4
	eventQueryState = 0x1
	standardRights  = windows.DELETE | windows.READ_CONTROL | windows.WRITE_DAC | windows.WRITE_OWNER | windows.SYNCHRONIZE

	systemMandatoryLabelACE = 0x11   // SYSTEM_MANDATORY_LABEL_ACE_TYPE
	mandatoryMediumRID      = 0x2000 // SECURITY_MANDATORY_MEDIUM_RID
)

// eventSecurity returns the security attributes for the events of a
// mapping whose security descriptor is sd, strongest first (see
// region.sas): the mapping's DACL with each section right turned into the
// matching event right, and its integrity label. It ends with nil, the
// default security, which is all there is when sd or its DACL is unknown or
// holds an entry this cannot translate.
func eventSecurity(sd *windows.SECURITY_DESCRIPTOR) []*windows.SecurityAttributes {
	dflt := []*windows.SecurityAttributes{nil}
	if sd == nil {
		return dflt
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return dflt
	}
	var ev *windows.ACL // nil: a NULL DACL, all access for anyone, as for the mapping
	if dacl != nil {
		if ev = mirrorDACL(dacl); ev == nil {
			return dflt
		}
	}
	plain := securityAttributes(ev, nil)
	if plain == nil {
		return dflt
	}
	sas := []*windows.SecurityAttributes{plain, nil}
	if label := eventLabel(sd); label != nil {
		if full := securityAttributes(ev, label); full != nil {
			sas = append([]*windows.SecurityAttributes{full}, sas...)
		}
	}
	return sas
}

func securityAttributes(dacl, label *windows.ACL) *windows.SecurityAttributes {
	abs, err := windows.NewSecurityDescriptor()
	if err != nil || abs.SetDACL(dacl, true, false) != nil {
		return nil
	}
	if label != nil && abs.SetSACL(label, true, false) != nil {
		return nil
	}
	rel, err := abs.ToSelfRelative()
	if err != nil {
		return nil
	}
	return &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: rel}
}

// copyACL copies acl into Go memory (DWORD-aligned, as an ACL must be) and
// returns the copy, as bytes too, or nil if its header is malformed.
func copyACL(acl *windows.ACL) (*windows.ACL, []byte) {
	size := int(*(*uint16)(unsafe.Add(unsafe.Pointer(acl), 2))) // AclSize
	if size < 8 {
		return nil, nil
	}
	buf := make([]uint32, (size+3)/4)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), size)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(acl)), size))
	return (*windows.ACL)(unsafe.Pointer(&buf[0])), b
}

// aces calls f with the type and the access mask's offset in b of every
// entry of the ACL b, and reports false if the ACL is malformed or f does.
func aces(b []byte, f func(typ byte, mask int) bool) bool {
	n := int(binary.LittleEndian.Uint16(b[4:])) // AceCount
	p := 8
	for range n {
		if p+8 > len(b) {
			return false
		}
		size := int(binary.LittleEndian.Uint16(b[p+2:]))
		if size < 8 || p+size > len(b) || !f(b[p], p+4) {
			return false
		}
		p += size
	}
	return true
}

// mirrorDACL returns a mapping's DACL as an event's: who may map the
// section for writing may set and wait on the event, who may map it for
// reading may wait on it; standard rights stay. Allowed and denied entries
// are translated alike; any other kind of entry makes it give up (nil).
func mirrorDACL(dacl *windows.ACL) *windows.ACL {
	acl, b := copyACL(dacl)
	if acl == nil {
		return nil
	}
	ok := aces(b, func(typ byte, at int) bool {
		m := binary.LittleEndian.Uint32(b[at:])
		ev := m & standardRights
		if m&windows.GENERIC_ALL != 0 {
			ev |= windows.EVENT_ALL_ACCESS
		}
		write := m&(sectionMapWrite|windows.GENERIC_WRITE) != 0
		read := m&(sectionMapRead|sectionQuery|windows.GENERIC_READ) != 0
		switch typ {
		case windows.ACCESS_ALLOWED_ACE_TYPE:
			if write {
				ev |= windows.EVENT_MODIFY_STATE | windows.SYNCHRONIZE
			}
			if read {
				ev |= eventQueryState | windows.SYNCHRONIZE
			}
		case windows.ACCESS_DENIED_ACE_TYPE:
			// Denied writing: denied setting. Denied reading: denied
			// waiting too (such a process cannot use the segment at all).
			if write {
				ev |= windows.EVENT_MODIFY_STATE
			}
			if read {
				ev |= eventQueryState | windows.SYNCHRONIZE
			}
		default:
			return false
		}
		binary.LittleEndian.PutUint32(b[at:], ev)
		return true
	})
	if !ok {
		return nil
	}
	return acl
}

// eventLabel returns the integrity label for the events: the mapping's, if
// it has one; else, since an object with no label counts as Medium, an
// explicit Medium label when this process runs above Medium (an elevated
// process's objects would otherwise get its High label, which forbids a
// Medium process to set them); else none.
func eventLabel(sd *windows.SECURITY_DESCRIPTOR) *windows.ACL {
	if sacl, _, err := sd.SACL(); err == nil && sacl != nil {
		acl, b := copyACL(sacl)
		labels := 0
		if acl != nil && aces(b, func(typ byte, _ int) bool {
			labels++
			return typ == systemMandatoryLabelACE
		}) && labels > 0 {
			return acl
		}
	}
	if aboveMedium() {
		return mediumLabel()
	}
	return nil
}

// aboveMedium reports whether this process's integrity level is above
// Medium.
func aboveMedium() bool {
	var buf [16]uint64 // TOKEN_MANDATORY_LABEL and its SID
	var n uint32
	err := windows.GetTokenInformation(windows.GetCurrentProcessToken(), windows.TokenIntegrityLevel,
		(*byte)(unsafe.Pointer(&buf[0])), uint32(unsafe.Sizeof(buf)), &n)
	if err != nil {
		return false
	}
	sid := (*windows.Tokenmandatorylabel)(unsafe.Pointer(&buf[0])).Label.Sid
	c := sid.SubAuthorityCount()
	return c > 0 && sid.SubAuthority(uint32(c-1)) > mandatoryMediumRID
}

// mediumLabel returns an ACL holding one label entry: Medium, no write up
// (S:(ML;;NW;;;ME), built by hand: not every system's SDDL parser knows ML).
func mediumLabel() *windows.ACL {
	buf := make([]uint32, 7)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), 28)
	b[0] = 2                                      // ACL_REVISION
	binary.LittleEndian.PutUint16(b[2:], 28)      // AclSize
	binary.LittleEndian.PutUint16(b[4:], 1)       // AceCount
	b[8] = systemMandatoryLabelACE                // AceType
	binary.LittleEndian.PutUint16(b[10:], 20)     // AceSize
	binary.LittleEndian.PutUint32(b[12:], 1)      // SYSTEM_MANDATORY_LABEL_NO_WRITE_UP
	copy(b[16:], []byte{1, 1, 0, 0, 0, 0, 0, 16}) // SID S-1-16-...
	binary.LittleEndian.PutUint32(b[24:], mandatoryMediumRID)
	return (*windows.ACL)(unsafe.Pointer(&buf[0]))
}
