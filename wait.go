package shm

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/futex"
)

// Waiting.
//
// Every blocking call of a lock or event ends in one of three forms:
// no limit (Lock, Wait), a timeout (LockTimeout, WaitTimeout: a deadline on
// the monotonic clock, taken once at the call), or a context (LockContext,
// WaitContext: its deadline if it has one, and its cancellation). A waiter
// sleeps in the kernel on a 32-bit word (internal/futex) for at most the
// time left, so a spurious wake-up, a signal or a wake meant for another
// waiter never restarts the full timeout: the time left is recomputed from
// the deadline before every sleep.
//
// A waiter with a cancellable context that is about to sleep borrows a
// watcher (a goroutine kept in a pool, so that waits allocate nothing) that
// wakes the word's sleepers when the context is cancelled, so cancellation
// is seen at once. A cancellation that lands between the waiter's last
// check and its sleep cannot be seen by the kernel (the word did not
// change), so such waiters also sleep in slices of at most ctxSlice.

const (
	// ctxSlice bounds one sleep of a waiter whose context can be cancelled.
	ctxSlice = 20 * time.Millisecond
	// livenessSlice is how long a lock waiter waits for the same owner
	// before it checks whether that owner is still alive (see ownerWatch).
	livenessSlice = 20 * time.Millisecond
)

// deadline is when a wait gives up; the zero value waits forever.
type deadline struct {
	ctx  context.Context // nil: no context
	at   time.Time       // zero: no deadline
	stop *atomic.Bool    // nil, or set when the memory waited on is being closed (a Managed): the wait ends with ErrClosed
}

func noDeadline() deadline { return deadline{} }

func timeoutDeadline(d time.Duration) deadline {
	if d < 0 {
		d = 0
	}
	return deadline{at: time.Now().Add(d)}
}

func ctxDeadline(ctx context.Context) deadline {
	dl := deadline{}
	if ctx.Done() != nil {
		dl.ctx = ctx
	}
	if t, ok := ctx.Deadline(); ok {
		dl.at = t
	}
	return dl
}

// expired returns the error that ends the wait, or nil if time remains.
func (d *deadline) expired() error {
	if d.stop != nil && d.stop.Load() {
		return ErrClosed
	}
	if d.ctx != nil {
		if err := d.ctx.Err(); err != nil {
			return err
		}
	}
	if !d.at.IsZero() && !time.Now().Before(d.at) {
		return d.timeout()
	}
	return nil
}

// timeout is the error of a wait whose deadline passed.
func (d *deadline) timeout() error {
	if d.ctx != nil {
		// The context's own deadline: report it the context's way.
		return context.DeadlineExceeded
	}
	return ErrTimeout
}

// sleep blocks on addr while it holds val, for at most the time left and at
// most slice (slice < 0: no bound). It returns nil when woken or when the
// slice ended, and the error that ends the wait once the deadline passed or
// the context was cancelled. It never sleeps without a bound while there is
// a deadline, a context or a slice: the time left is computed once, and a
// deadline already past ends the wait instead of becoming "no limit".
func (d *deadline) sleep(addr *uint32, val uint32, slice time.Duration) error {
	return d.sleepBits(addr, val, slice, 0)
}

// sleepBits is sleep with futex bits (futex.WaitBits; 0: every bit, as
// futex.Wait).
func (d *deadline) sleepBits(addr *uint32, val uint32, slice time.Duration, bits uint32) error {
	t := slice
	if d.stop != nil {
		if d.stop.Load() {
			return ErrClosed
		}
		if t < 0 || t > ctxSlice {
			t = ctxSlice // Close wakes the words it knows; this bounds the rest
		}
	}
	if d.ctx != nil {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if t < 0 || t > ctxSlice {
			t = ctxSlice
		}
	}
	if !d.at.IsZero() {
		left := time.Until(d.at)
		if left <= 0 {
			return d.timeout()
		}
		if t < 0 || left < t {
			t = left
		}
	}
	if t < 0 {
		t = futex.Forever // no deadline, no context, no slice
	}
	if bits != 0 {
		futex.WaitBits(addr, val, t, bits)
	} else {
		futex.Wait(addr, val, t)
	}
	return d.expired()
}

// spinDone reports, every 256 polls of a spin (n counts them), whether the
// wait has ended, so that a long spin (see SetSpin) never outlives a
// deadline or a cancellation by more than 256 polls.
func (d *deadline) spinDone(n int) bool {
	return n&255 == 0 && n != 0 && d.expired() != nil
}

// ownerWatch decides when a waiter asks whether the process in its way (a
// lock's holder, a reader's slot) is still there: once the same one has
// been in the way for livenessSlice of this wait's time, counted from when
// the waiter first saw it, whatever woke the waiter in between, and again
// every livenessSlice after that. Wake-ups meant for others, short sleeps
// and signals therefore never postpone the check.
type ownerWatch struct {
	who   uint64    // what was in the way when last looked at; 0: nothing yet
	since time.Time // when it was first seen (or last checked)
}

// due records that who is in the way at now and reports whether it is time
// to check it.
func (o *ownerWatch) due(who uint64, now time.Time) bool {
	if who != o.who {
		o.who, o.since = who, now
		return false
	}
	if now.Sub(o.since) < livenessSlice {
		return false
	}
	o.since = now
	return true
}

// left returns how long the waiter may sleep before the next check is due.
func (o *ownerWatch) left(now time.Time) time.Duration {
	d := livenessSlice - now.Sub(o.since)
	if d < 0 {
		d = 0
	}
	return d
}

// watch arranges for a cancellation of the deadline's context to wake the
// sleepers on addr. It returns nil if there is no context to watch. The
// watcher's stop must be called when the wait ends.
func (d *deadline) watch(addr *uint32) *watcher {
	if d.ctx == nil {
		return nil
	}
	watchers.Lock()
	var w *watcher
	if n := len(watchers.free); n > 0 {
		w = watchers.free[n-1]
		watchers.free = watchers.free[:n-1]
	}
	watchers.Unlock()
	if w == nil {
		w = &watcher{req: make(chan watchReq, 1), end: make(chan struct{})}
		go w.run()
	}
	w.req <- watchReq{done: d.ctx.Done(), addr: addr}
	return w
}

// A watcher wakes the sleepers on one word when a context is done, for one
// wait at a time. Idle watchers wait in a pool for the next wait that needs
// one, up to maxIdleWatchers of them.
type watcher struct {
	req chan watchReq // the next watch (buffered)
	end chan struct{} // the wait ended (unbuffered: stop returns once the watcher let go of the word)
}

type watchReq struct {
	done <-chan struct{}
	addr *uint32
}

const maxIdleWatchers = 64

var watchers struct {
	sync.Mutex
	free []*watcher
}

func (w *watcher) run() {
	for r := range w.req {
		select {
		case <-r.done:
			futex.Wake(r.addr, futex.All)
			<-w.end
		case <-w.end:
		}
	}
}

// stop ends the watch (nil: nothing to stop). When it returns, the watcher
// no longer touches the word.
func (w *watcher) stop() {
	if w == nil {
		return
	}
	w.end <- struct{}{}
	watchers.Lock()
	if len(watchers.free) < maxIdleWatchers {
		watchers.free = append(watchers.free, w)
		w = nil
	}
	watchers.Unlock()
	if w != nil {
		close(w.req)
	}
}

// Spinning.
//
// A waiter that expects the word to change very soon (another process is
// about to unlock or set it) spins briefly before it sleeps, because a
// kernel sleep and wake-up costs microseconds (tens of them in a virtual
// machine). Spinning only helps when the other process runs on another CPU
// at the same time: on a single CPU a spinner only delays the process it
// waits for. So:
//
//   - A waiter polls at most spinLimit times (SetSpin), with a spin-wait
//     hint between polls (spinPause): 1000 polls by default, about 20 µs on
//     a current x86 server, about what one sleep and wake-up costs in a
//     virtual machine, so that a waiter that spins and still has to sleep
//     loses at most about twice the best case.
//   - Nobody spins while this process may use only one CPU (its affinity
//     mask, re-read at most every cpuRecheck by a waiter about to sleep, so
//     that a process pinned after it started stops spinning), or while
//     GOMAXPROCS is 1.
//   - The budget adapts per word: after spinPatience spins in a row on the
//     same word ended in a sleep, the next one is halved (down to
//     spinLimit>>maxSpinShift), and one spin that succeeds restores the
//     full budget. A word whose waiters always end up sleeping (an idle
//     waiter, a lock held for long, a machine with more runnable threads
//     than CPUs) thus costs little spinning, and one whose peer answers at
//     once keeps the full budget. A single sleep does not cut the budget:
//     in a ping-pong, one side that slept (its peer was descheduled) makes
//     the other wait a kernel wake-up, several microseconds; had that
//     other side's spin been cut, it would sleep too, and so on, in chains
//     of sleeps (up to 157 in 1000 round trips, when every sleep halved
//     the budget). Now and then (one wait in spinProbe) a waiter spins the
//     full budget anyway, so that two processes that fell into sleeping on
//     each other find their way back to spinning.
//   - Busy events spin the full budget every time (see busyWaitSlow): their
//     users chose to pay CPU for latency.
//
// The per-word state lives in this process (a small table indexed by the
// word's address, where collisions only blur the adaptation), not in the
// shared word, whose layout is fixed.

// spinLimit is the most times a waiter polls its word before it sleeps. It
// is set from the CPUs available to the process at start and can be changed
// with SetSpin.
var spinLimit atomic.Int32

const (
	maxSpinShift = 4                      // the smallest budget is spinLimit>>maxSpinShift
	spinPatience = 4                      // this many failed spins in a row cut the budget
	spinProbe    = 16                     // one wait in spinProbe spins the full budget
	cpuRecheck   = 100 * time.Millisecond // how often the affinity mask is re-read
)

var (
	spinShift  [64]atomic.Uint32 // per word (by address): bits 0..7 shift (the budget is spinLimit>>shift), 8..15 failed spins in a row
	multiCPU   atomic.Bool       // more than one CPU usable, and GOMAXPROCS > 1
	cpuChecked atomic.Int64      // when multiCPU was computed, as since(procStart)
	procStart  = time.Now()
)

func init() {
	checkCPUs()
	spinLimit.Store(defaultSpin())
}

func defaultSpin() int32 {
	if runtime.NumCPU() > 1 && usableCPUs() > 1 {
		return 1000
	}
	return 0
}

// checkCPUs recomputes multiCPU.
func checkCPUs() {
	cpuChecked.Store(int64(time.Since(procStart)))
	multiCPU.Store(usableCPUs() > 1 && runtime.GOMAXPROCS(0) > 1)
}

// SetSpin sets how many times a waiter re-checks a word before it goes to
// sleep in the kernel (or, for busy events, before it starts yielding the
// CPU), and returns the previous value. 0 turns spinning off; a negative
// value restores the default, which is 0 when the process may use only one
// CPU; values above 1<<24 are taken as 1<<24. It affects the whole
// process. Whatever the setting, nobody spins while the process may use
// only one CPU, the spin on a word whose waiters keep ending up asleep anyway
// is cut down to a sixteenth, and a spin looks at the wait's deadline and
// context every 256 polls, so it never outlives them by more than that.
func SetSpin(n int) int {
	var v int32
	switch {
	case n < 0:
		v = defaultSpin()
	case n > 1<<24:
		v = 1 << 24
	default:
		v = int32(n)
	}
	for i := range spinShift {
		spinShift[i].Store(0)
	}
	return int(spinLimit.Swap(v))
}

func spinSlot(addr unsafe.Pointer) *atomic.Uint32 {
	a := uintptr(addr)
	return &spinShift[(a>>3^a>>9)%uintptr(len(spinShift))]
}

// spinBudget returns how many times a waiter on addr polls before it
// sleeps.
func spinBudget(addr unsafe.Pointer) int {
	full := fullSpin()
	if full == 0 {
		return 0
	}
	sh := spinSlot(addr).Load() & 0xff
	if sh > 0 && rand.N(uint32(spinProbe)) == 0 {
		sh = 0
	}
	return full >> sh
}

// spinWon records that a waiter on addr got what it waited for while
// spinning.
func spinWon(addr unsafe.Pointer) {
	if s := spinSlot(addr); s.Load() != 0 {
		s.Store(0)
	}
}

// fullSpin returns the whole spin budget (0 where spinning cannot help),
// whatever the word's history: the busy events' spin.
func fullSpin() int {
	limit := spinLimit.Load()
	if limit <= 0 || !multiCPU.Load() {
		return 0
	}
	return int(limit)
}

// spinLost records that a waiter on addr is about to sleep, after a spin
// that did not get it what it waited for if spun, and now and then re-reads
// the CPUs the process may use.
func spinLost(addr unsafe.Pointer, spun bool) {
	if spun {
		s := spinSlot(addr)
		v := s.Load()
		sh, streak := v&0xff, v>>8&0xff+1
		if streak >= spinPatience {
			sh, streak = min(sh+1, maxSpinShift), 0
		}
		s.CompareAndSwap(v, streak<<8|sh) // a lost race only blurs the adaptation
	}
	if time.Since(procStart) > time.Duration(cpuChecked.Load())+cpuRecheck {
		checkCPUs()
	}
}

// spinPause lets a little time pass between two polls of a word without
// touching shared memory. It executes the processor's spin-wait hint (PAUSE
// on amd64, YIELD on arm64) through the runtime's procyield, as the runtime's
// own spinning does: it saves power, frees the core for its other hardware
// thread, avoids the pipeline flush on leaving the loop, and lets a
// hypervisor notice a spinning virtual CPU (pause-loop exiting) and run
// the one it waits for.
func spinPause() { procyield(1) }

// spinPauses is n spin-wait hints in a row.
func spinPauses(n uint32) { procyield(n) }

//go:linkname procyield runtime.procyield
func procyield(cycles uint32)
