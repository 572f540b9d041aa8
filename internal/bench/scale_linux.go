package bench

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/futex"
)

// The scale scenarios: many processes on one lock or event.
//
// A Scale is a managed segment and a set of worker processes (started once,
// by StartScale, and reused by every scenario); each worker calls
// ServeScale. The coordinator hands the workers one scenario at a time as a
// command, as the round-trip peer gets its commands: it writes the
// scenario's parameters, advances the command word and wakes the workers
// sleeping on it. Workers that take part get ready, announce it (ready),
// wait for the start word to name the command, run until the stop word
// names it, and announce that they are done (done). Workers that do not
// take part go back to sleep.
//
// Every worker has a cache line of its own in the segment (scaleProc) for
// its counts and times; the coordinator reads them when all are done.
// Every wait a worker makes has a timeout, after which it checks the stop
// word and whether its parent is still there (as Serve does), so a worker
// never outlives a coordinator that died; StartScale also has the kernel
// kill the workers when the coordinator does (Pdeathsig). The coordinator
// kills and reaps every worker and removes the segment on any error.
//
// The scenarios:
//
//   - MutexScale: every worker loops Lock; counter++ (a plain, non-atomic
//     increment of a shared counter); its own count++; Unlock, until told
//     to stop. The counter must equal the sum of the counts.
//   - RWScale: readers loop RLock; check that no writer is inside; RUnlock
//     (a reader whose TryRLock fails times its RLock, keeping the longest).
//     Writers loop: Lock (the wait timed from the call to the acquisition
//     on CLOCK_MONOTONIC, kept in a histogram per writer), set the "writer
//     inside" word, hold the lock for rwHold, clear the word, Unlock, and
//     sleep rwPause before the next write. A reader (or writer) that finds
//     the word set while it holds the lock counts a violation.
//   - ManualRelease: in each round every worker announces that it is about
//     to wait and Waits on one ManualEvent; once all have announced, the
//     coordinator lets them fall asleep (manualSettle), reads
//     CLOCK_MONOTONIC and Sets; each worker reads CLOCK_MONOTONIC when its
//     Wait returns (the clock is system-wide, so the readings compare).
//   - AutoReleases: waiters loop WaitTimeout(autoWait) on one AutoEvent,
//     counting the waits that returned nil, until told to stop; the
//     coordinator Sets the event, waits until a waiter took it (IsSet is
//     false again: Sets on a set event do not accumulate), and Sets again,
//     so many times. The waiters' counts must add up to the Sets.

// MaxScaleWorkers is how many worker processes a Scale may have: as many
// as an RWMutex admits reader processes at once.
const MaxScaleWorkers = 256

// maxScaleWriters is how many writers RWScale may have.
const maxScaleWriters = 8

// The scenario's choices, reported in the results.
const (
	// scaleLockWait bounds one lock or event wait of a worker; after it the
	// worker checks the stop word and its parent, and waits again.
	scaleLockWait = time.Second
	// rwHold is how long a writer holds the RWMutex (busy, checking the
	// clock), and rwPause how long it sleeps between writes.
	rwHold  = 2 * time.Microsecond
	rwPause = time.Millisecond
	// manualSettle is how long the coordinator lets the ManualEvent's
	// waiters fall asleep in the kernel after the last announced it is
	// about to wait.
	manualSettle = 100 * time.Millisecond
	// autoWait is the waiters' WaitTimeout on the AutoEvent.
	autoWait = 20 * time.Millisecond
	// scaleRoundWait is how long the coordinator waits for a Set to be
	// taken, or a round's waiters to be released, before it fails.
	scaleRoundWait = 10 * time.Second
)

// The scenarios, as the command word's kind.
const (
	scaleExit uint32 = iota
	scaleMutex
	scaleRW
	scaleManual
	scaleAuto
)

// scaleShared is the scale segment's data.
type scaleShared struct {
	cmd     uint32 // command number; idle workers sleep on it
	kind    uint32 // the command's scenario
	procs   uint32 // workers taking part (RWScale: readers)
	writers uint32 // RWScale: writers, the workers after the readers
	_       [48]byte

	ready      padWord // workers of the command ready to start (a count)
	start      padWord // workers start when it equals cmd
	stop       padWord // workers stop when it equals cmd
	done       padWord // workers of the command done (a count)
	round      padWord // ManualRelease: the current round, from 1
	waiting    padWord // ManualRelease: workers about to wait in the round
	released   padWord // ManualRelease: workers released in the round
	inside     padWord // RWScale: a writer holds the lock
	violations padWord // RWScale: readers or writers that found a writer inside

	mu      shm.Mutex
	_       [56]byte
	counter uint64 // MutexScale: incremented under mu, not atomically
	_       [56]byte
	manual  padManual
	auto    padAuto
	rw      shm.RWMutex // 2112 bytes, 33 cache lines

	proc [MaxScaleWorkers]scaleProc
	hist [maxScaleWriters]waitHist
	naps [maxScaleWriters]waitHist // how late each writer's rwPause sleeps ended
}

// scaleProc is one worker's cache line.
type scaleProc struct {
	count    uint64 // acquisitions, reads, writes or releases, in this command
	at       int64  // ManualRelease: when its Wait returned in round seen (CLOCK_MONOTONIC, ns)
	timeouts uint64 // waits that timed out and were made again
	maxWait  int64  // RWScale, a reader: its longest wait for a read lock, ns
	seen     uint32 // ManualRelease: the last round it was released in
	_        [28]byte
}

// The writers' wait histograms: values below histSub ns have a bucket
// each; above, every power of two is split into histSub buckets (a
// resolution of 1/histSub, 3%), up to 2^histOctaves ns (18 minutes).
const (
	histSubBits  = 5
	histSub      = 1 << histSubBits
	histOctaves  = 40
	histBuckets  = (histOctaves - histSubBits + 1) * histSub
	histMaxValue = 1<<histOctaves - 1
)

// waitHist is a writer's histogram of wait times, ns.
type waitHist struct {
	n   uint64 // samples
	max int64  // the longest, exactly
	_   [48]byte
	b   [histBuckets]uint32
}

// histBucket returns the bucket of v ns.
func histBucket(v int64) int {
	if v < 0 {
		v = 0
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // v>>e is in [histSub, 2*histSub)
	return (e+1)*histSub + int(v>>e) - histSub
}

// histUpper returns the largest value of bucket b, ns.
func histUpper(b int) int64 {
	if b < histSub {
		return int64(b)
	}
	e := b/histSub - 1
	m := int64(b%histSub + histSub)
	return (m+1)<<e - 1
}

func (h *waitHist) add(v int64) {
	h.b[histBucket(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// quantile returns the upper edge of the bucket that holds the q-quantile
// of the samples of hs together (at most the largest sample).
func quantile(hs []*waitHist, q float64) time.Duration {
	var n uint64
	var mx int64
	for _, h := range hs {
		n += h.n
		mx = max(mx, h.max)
	}
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n)) // samples below the one we want
	if rank >= n {
		rank = n - 1
	}
	var seen uint64
	for b := 0; b < histBuckets; b++ {
		for _, h := range hs {
			seen += uint64(h.b[b])
		}
		if seen > rank {
			return time.Duration(min(histUpper(b), mx))
		}
	}
	return time.Duration(mx)
}

// A Scale is the coordinator of the scale scenarios: the segment and the
// worker processes. Its methods run one scenario each; they must not be
// called concurrently. After a scenario fails, the Scale is closed.
type Scale struct {
	m       *shm.Managed
	s       *scaleShared
	workers []*scaleWorker
	closed  bool

	deadOnce sync.Once
	dead     chan struct{} // closed when the first worker exits
	deadIdx  atomic.Int32  // which one
}

type scaleWorker struct {
	cmd    *exec.Cmd
	out    strings.Builder
	exited chan struct{}
}

// StartScale creates a managed segment for the scale scenarios and starts
// workers worker processes (at most MaxScaleWorkers): command(segment,
// index), index from 0, makes the process of worker index, which must
// call ServeScale with the segment and index. Close ends them and removes
// the segment.
func StartScale(workers int, command func(segment string, index int) *exec.Cmd) (*Scale, error) {
	if workers < 1 || workers > MaxScaleWorkers {
		return nil, fmt.Errorf("bench: %d scale workers (from 1 to %d)", workers, MaxScaleWorkers)
	}
	m, err := shm.Config{Size: int(unsafe.Sizeof(scaleShared{}))}.Create()
	if err != nil {
		return nil, err
	}
	c := &Scale{m: m, dead: make(chan struct{})}
	if c.s, err = shm.View[scaleShared](m.Data()); err != nil {
		m.Close()
		return nil, err
	}
	for i := 0; i < workers; i++ {
		w := &scaleWorker{exited: make(chan struct{})}
		w.cmd = command(m.Name(), i)
		w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
		if w.cmd.SysProcAttr == nil {
			// A worker should not outlive its coordinator by even the
			// tenth of a second its own checks take.
			w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}
		if err := w.cmd.Start(); err != nil {
			c.abort()
			return nil, fmt.Errorf("bench: starting scale worker %d: %w", i, err)
		}
		c.workers = append(c.workers, w)
		go func() {
			w.cmd.Wait()
			close(w.exited)
			c.deadOnce.Do(func() {
				c.deadIdx.Store(int32(i))
				close(c.dead)
			})
		}()
	}
	return c, nil
}

// Workers returns how many worker processes c has.
func (c *Scale) Workers() int { return len(c.workers) }

// Close tells the workers to exit, kills those that do not within 5
// seconds, waits for all to be gone and removes the segment.
func (c *Scale) Close() {
	if c.closed {
		return
	}
	c.command(scaleExit, 0, 0)
	stop := time.NewTimer(5 * time.Second)
	defer stop.Stop()
	expired := false
	for _, w := range c.workers {
		if !expired {
			select {
			case <-w.exited:
				continue
			case <-stop.C:
				expired = true
			}
		}
		w.cmd.Process.Kill()
		<-w.exited
	}
	c.closed = true
	c.m.Close()
}

// abort kills every worker, waits for all to be gone and removes the
// segment: what a failed scenario leaves.
func (c *Scale) abort() {
	if c.closed {
		return
	}
	for _, w := range c.workers {
		w.cmd.Process.Kill()
	}
	for _, w := range c.workers {
		<-w.exited
	}
	c.closed = true
	c.m.Close()
}

// fail aborts and returns err, with the output of the first worker that
// exited if one did on its own.
func (c *Scale) fail(err error) error {
	select {
	case <-c.dead:
		i := c.deadIdx.Load()
		w := c.workers[i]
		<-w.exited
		err = fmt.Errorf("%w; worker %d exited (%v): %s", err, i, w.cmd.ProcessState, strings.TrimSpace(w.out.String()))
	default:
	}
	c.abort()
	return err
}

// command hands the workers a command and returns its number.
func (c *Scale) command(kind uint32, procs, writers int) uint32 {
	s := c.s
	atomic.StoreUint32(&s.kind, kind)
	atomic.StoreUint32(&s.procs, uint32(procs))
	atomic.StoreUint32(&s.writers, uint32(writers))
	n := atomic.AddUint32(&s.cmd, 1)
	futex.Wake(&s.cmd, futex.All)
	return n
}

// prepare resets the words and the workers' lines of a command, hands it
// to the workers and waits until the n workers taking part are ready.
func (c *Scale) prepare(kind uint32, procs, writers int) (uint32, error) {
	if c.closed {
		return 0, errors.New("bench: the scale workers are gone (a scenario failed, or Close)")
	}
	n := procs + writers
	if n > len(c.workers) {
		return 0, c.fail(fmt.Errorf("bench: the scenario needs %d workers, there are %d", n, len(c.workers)))
	}
	s := c.s
	for _, w := range []*uint32{&s.ready.v, &s.done.v, &s.round.v, &s.waiting.v, &s.released.v, &s.inside.v, &s.violations.v} {
		atomic.StoreUint32(w, 0)
	}
	atomic.StoreUint64(&s.counter, 0)
	for i := range s.proc {
		s.proc[i] = scaleProc{}
	}
	for i := range s.hist {
		s.hist[i] = waitHist{}
		s.naps[i] = waitHist{}
	}
	cmd := c.command(kind, procs, writers)
	if err := c.awaitCount(&s.ready.v, uint32(n), timeout, "ready"); err != nil {
		return 0, c.fail(err)
	}
	return cmd, nil
}

// awaitCount waits until *w is at least n, for at most d; it fails if a
// worker exits.
func (c *Scale) awaitCount(w *uint32, n uint32, d time.Duration, what string) error {
	deadline := time.Now().Add(d)
	for {
		v := atomic.LoadUint32(w)
		if v >= n {
			return nil
		}
		select {
		case <-c.dead:
			return fmt.Errorf("bench: %d of %d workers %s", v, n, what)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d of %d workers %s after %v", v, n, what, d)
		}
		futex.Wait(w, v, 10*time.Millisecond)
	}
}

// begin starts command cmd and returns when (CLOCK_MONOTONIC, ns).
func (c *Scale) begin(cmd uint32) int64 {
	t := monotonic()
	atomic.StoreUint32(&c.s.start.v, cmd)
	futex.Wake(&c.s.start.v, futex.All)
	return t
}

// end tells the workers of cmd to stop and waits until the n of them are
// done.
func (c *Scale) end(cmd uint32, n int) error {
	s := c.s
	atomic.StoreUint32(&s.stop.v, cmd)
	futex.Wake(&s.start.v, futex.All)
	futex.Wake(&s.round.v, futex.All)
	if err := c.awaitCount(&s.done.v, uint32(n), timeout, "done"); err != nil {
		return c.fail(err)
	}
	return nil
}

// sleep sleeps d, or fails early if a worker exits.
func (c *Scale) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.dead:
		return c.fail(errors.New("bench: a worker exited during the run"))
	}
}

// counts returns the count of workers [from, from+n), the fewest and the
// mean.
func (c *Scale) counts(from, n int) (counts []uint64, fewest uint64, mean float64) {
	counts = make([]uint64, n)
	var sum uint64
	for i := range counts {
		counts[i] = atomic.LoadUint64(&c.s.proc[from+i].count)
		sum += counts[i]
	}
	if n > 0 {
		fewest = slices.Min(counts)
		mean = float64(sum) / float64(n)
	}
	return counts, fewest, mean
}

func (c *Scale) timeouts(from, n int) uint64 {
	var t uint64
	for i := from; i < from+n; i++ {
		t += atomic.LoadUint64(&c.s.proc[i].timeouts)
	}
	return t
}

func sum(xs []uint64) uint64 {
	var s uint64
	for _, x := range xs {
		s += x
	}
	return s
}

// MutexResult is what MutexScale measured.
type MutexResult struct {
	Procs    int           // processes on the lock
	Duration time.Duration // from the start to the stop
	Counts   []uint64      // each process's acquisitions
	Total    uint64        // the sum of Counts
	Counter  uint64        // the shared counter incremented under the lock
	Rate     float64       // acquisitions per second, in all, from the start to the stop
	Fewest   uint64        // the fewest acquisitions of any process
	Mean     float64       // the mean acquisitions of a process
	Timeouts uint64        // lock waits that timed out (after a second) and were made again
}

// FewestRatio is Fewest over Mean: how close the worst-served process came
// to its share.
func (r MutexResult) FewestRatio() float64 { return ratio(float64(r.Fewest), r.Mean) }

// Check reports whether the counts are consistent: the counter equals the
// sum of the processes' counts (mutual exclusion held).
func (r MutexResult) Check() error {
	if r.Counter != r.Total {
		return fmt.Errorf("Mutex, %d processes: the counter is %d, the processes counted %d acquisitions", r.Procs, r.Counter, r.Total)
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// MutexScale has procs workers contend for one Mutex for d: each loops
// Lock, increments the shared counter and its own count, Unlock.
func (c *Scale) MutexScale(procs int, d time.Duration) (MutexResult, error) {
	if procs < 1 {
		return MutexResult{}, errors.New("bench: MutexScale needs a process")
	}
	cmd, err := c.prepare(scaleMutex, procs, 0)
	if err != nil {
		return MutexResult{}, err
	}
	t0 := c.begin(cmd)
	if err := c.sleep(d); err != nil {
		return MutexResult{}, err
	}
	// The acquisitions up to the stop, for the rate.
	var upTo uint64
	for i := 0; i < procs; i++ {
		upTo += atomic.LoadUint64(&c.s.proc[i].count)
	}
	t1 := monotonic()
	if err := c.end(cmd, procs); err != nil {
		return MutexResult{}, err
	}
	r := MutexResult{Procs: procs, Duration: time.Duration(t1 - t0)}
	r.Counts, r.Fewest, r.Mean = c.counts(0, procs)
	r.Total = sum(r.Counts)
	r.Counter = atomic.LoadUint64(&c.s.counter)
	r.Rate = float64(upTo) / r.Duration.Seconds()
	r.Timeouts = c.timeouts(0, procs)
	return r, nil
}

// RWResult is what RWScale measured.
type RWResult struct {
	Readers, Writers int           // reader and writer processes
	Duration         time.Duration // from the start to the stop
	Hold, Pause      time.Duration // how long a writer holds the lock, and sleeps between writes

	Reads      []uint64 // each reader's read locks
	ReadFewest uint64   // the fewest read locks of a reader
	ReadMean   float64  // the mean read locks of a reader
	Writes     []uint64 // each writer's write locks

	// The writers' waits for the lock, from the call to the acquisition,
	// together (a histogram's bucket edges, within 3%; Max exactly).
	WaitP50, WaitP99, WaitMax time.Duration
	Waits                     uint64 // how many

	// How late the writers' sleeps of Pause between writes ended, together:
	// how long the same processes, in the same run, wait for a CPU after
	// a wake-up that no lock is involved in (the scheduler's floor).
	NapP50, NapP99 time.Duration

	// The readers' longest wait for a read lock (timed when a TryRLock
	// failed), from the call of RLock to its return.
	ReadWaitMax time.Duration

	Violations    uint32 // times a lock holder found a writer inside
	ReadTimeouts  uint64 // read lock waits that timed out (after a second) and were made again
	WriteTimeouts uint64 // the same, of the writers
}

// ReadFewestRatio is ReadFewest over ReadMean.
func (r RWResult) ReadFewestRatio() float64 { return ratio(float64(r.ReadFewest), r.ReadMean) }

// Check reports whether the exclusion held: no holder found a writer
// inside.
func (r RWResult) Check() error {
	if r.Violations != 0 {
		return fmt.Errorf("RWMutex: %d times a holder found a writer inside", r.Violations)
	}
	return nil
}

// RWScale has readers workers loop RLock/RUnlock on one RWMutex and writers
// workers loop Lock/Unlock on it, sleeping rwPause between writes, for d.
func (c *Scale) RWScale(readers, writers int, d time.Duration) (RWResult, error) {
	if readers < 0 || writers < 1 || writers > maxScaleWriters {
		return RWResult{}, fmt.Errorf("bench: RWScale with %d readers and %d writers (1 to %d)", readers, writers, maxScaleWriters)
	}
	cmd, err := c.prepare(scaleRW, readers, writers)
	if err != nil {
		return RWResult{}, err
	}
	t0 := c.begin(cmd)
	if err := c.sleep(d); err != nil {
		return RWResult{}, err
	}
	t1 := monotonic()
	if err := c.end(cmd, readers+writers); err != nil {
		return RWResult{}, err
	}
	r := RWResult{Readers: readers, Writers: writers, Duration: time.Duration(t1 - t0), Hold: rwHold, Pause: rwPause}
	r.Reads, r.ReadFewest, r.ReadMean = c.counts(0, readers)
	r.Writes, _, _ = c.counts(readers, writers)
	hs := make([]*waitHist, writers)
	for i := range hs {
		hs[i] = &c.s.hist[i]
		r.Waits += hs[i].n
	}
	r.WaitP50, r.WaitP99 = quantile(hs, 0.50), quantile(hs, 0.99)
	r.WaitMax = quantile(hs, 1)
	for i := range hs {
		hs[i] = &c.s.naps[i]
	}
	r.NapP50, r.NapP99 = quantile(hs, 0.50), quantile(hs, 0.99)
	for i := 0; i < readers; i++ {
		r.ReadWaitMax = max(r.ReadWaitMax, time.Duration(atomic.LoadInt64(&c.s.proc[i].maxWait)))
	}
	r.Violations = atomic.LoadUint32(&c.s.violations.v)
	r.ReadTimeouts = c.timeouts(0, readers)
	r.WriteTimeouts = c.timeouts(readers, writers)
	return r, nil
}

// ManualResult is what ManualRelease measured.
type ManualResult struct {
	Procs, Rounds int             // waiters, and how many times one Set released them all
	Settle        time.Duration   // how long the waiters had to fall asleep before each Set
	First, Last   []time.Duration // each round: from the Set to the first, and the last, waiter's return
	Released      []int           // each round: how many waiters were released
	FirstMedian   time.Duration   // the median of First
	LastMedian    time.Duration   // the median of Last
	LastMax       time.Duration   // the longest of Last
	Early         int             // waits that returned before the Set (a failure)
	Timeouts      uint64          // waits that timed out (after a second) and were made again
}

// Check reports whether every round released every waiter.
func (r ManualResult) Check() error {
	if r.Early != 0 {
		return fmt.Errorf("ManualEvent: %d waits returned before the Set", r.Early)
	}
	for i, n := range r.Released {
		if n != r.Procs {
			return fmt.Errorf("ManualEvent: round %d released %d of %d waiters", i+1, n, r.Procs)
		}
	}
	if len(r.Released) != r.Rounds {
		return fmt.Errorf("ManualEvent: %d rounds of %d", len(r.Released), r.Rounds)
	}
	return nil
}

// ManualRelease has procs workers wait on one ManualEvent, rounds times,
// and times one Set's release of all of them.
func (c *Scale) ManualRelease(procs, rounds int) (ManualResult, error) {
	if procs < 1 || rounds < 1 {
		return ManualResult{}, errors.New("bench: ManualRelease needs a process and a round")
	}
	cmd, err := c.prepare(scaleManual, procs, 0)
	if err != nil {
		return ManualResult{}, err
	}
	s := c.s
	c.begin(cmd)
	r := ManualResult{Procs: procs, Rounds: rounds, Settle: manualSettle}
	for round := uint32(1); round <= uint32(rounds); round++ {
		s.manual.e.Reset()
		atomic.StoreUint32(&s.waiting.v, 0)
		atomic.StoreUint32(&s.released.v, 0)
		atomic.StoreUint32(&s.round.v, round)
		futex.Wake(&s.round.v, futex.All)
		if err := c.awaitCount(&s.waiting.v, uint32(procs), timeout, "about to wait"); err != nil {
			return r, c.fail(err)
		}
		if err := c.sleep(manualSettle); err != nil {
			return r, err
		}
		t0 := monotonic()
		s.manual.e.Set()
		if err := c.awaitCount(&s.released.v, uint32(procs), scaleRoundWait, "released"); err != nil {
			return r, c.fail(fmt.Errorf("ManualEvent round %d: %w", round, err))
		}
		var first, last int64
		n := 0
		for i := 0; i < procs; i++ {
			p := &s.proc[i]
			if atomic.LoadUint32(&p.seen) != round {
				continue
			}
			n++
			dt := atomic.LoadInt64(&p.at) - t0
			if dt < 0 {
				r.Early++
			}
			if n == 1 || dt < first {
				first = dt
			}
			if n == 1 || dt > last {
				last = dt
			}
		}
		r.Released = append(r.Released, n)
		r.First = append(r.First, time.Duration(first))
		r.Last = append(r.Last, time.Duration(last))
	}
	if err := c.end(cmd, procs); err != nil {
		return r, err
	}
	r.FirstMedian, r.LastMedian, r.LastMax = Median(r.First), Median(r.Last), slices.Max(r.Last)
	r.Timeouts = c.timeouts(0, procs)
	return r, nil
}

// AutoResult is what AutoReleases measured.
type AutoResult struct {
	Waiters, Sets int           // waiter processes, and Sets made
	WaitTimeout   time.Duration // each waiter's WaitTimeout
	Elapsed       time.Duration // from the first Set to the last one taken
	Releases      uint64        // waits that returned nil, counted by the waiters
	PerWaiter     []uint64      // each waiter's
	Fewest        uint64        // the fewest releases of a waiter
	Mean          float64       // the mean releases of a waiter
	Timeouts      uint64        // WaitTimeouts that expired (expected: waiters idle between Sets)
}

// Check reports whether every Set released exactly one wait.
func (r AutoResult) Check() error {
	if r.Releases != uint64(r.Sets) {
		return fmt.Errorf("AutoEvent: %d Sets released %d waits", r.Sets, r.Releases)
	}
	return nil
}

// AutoReleases has waiters workers loop WaitTimeout on one AutoEvent while
// this process Sets it sets times, each Set after the previous one was
// taken.
func (c *Scale) AutoReleases(waiters, sets int) (AutoResult, error) {
	if waiters < 1 || sets < 0 {
		return AutoResult{}, errors.New("bench: AutoReleases needs a waiter")
	}
	cmd, err := c.prepare(scaleAuto, waiters, 0)
	if err != nil {
		return AutoResult{}, err
	}
	e := &c.s.auto.e
	e.Reset()
	t0 := c.begin(cmd)
	for i := 0; i < sets; i++ {
		e.Set()
		if err := c.awaitTaken(e); err != nil {
			return AutoResult{}, c.fail(fmt.Errorf("AutoEvent Set %d of %d: %w", i+1, sets, err))
		}
	}
	t1 := monotonic()
	if err := c.end(cmd, waiters); err != nil {
		return AutoResult{}, err
	}
	r := AutoResult{Waiters: waiters, Sets: sets, WaitTimeout: autoWait, Elapsed: time.Duration(t1 - t0)}
	r.PerWaiter, r.Fewest, r.Mean = c.counts(0, waiters)
	r.Releases = sum(r.PerWaiter)
	r.Timeouts = c.timeouts(0, waiters)
	return r, nil
}

// awaitTaken waits until a waiter took the set event e: it polls, and
// after a few polls yields the CPU between polls, since on a busy machine
// the waiter may need this process's. It fails if no waiter takes it
// within scaleRoundWait, or a worker exits.
func (c *Scale) awaitTaken(e *shm.AutoEvent) error {
	var deadline time.Time
	for i := 0; e.IsSet(); i++ {
		if i < 100 {
			pause()
			continue
		}
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		if i%256 != 0 {
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(scaleRoundWait)
		} else if time.Now().After(deadline) {
			return fmt.Errorf("bench: no waiter took the event within %v", scaleRoundWait)
		}
		select {
		case <-c.dead:
			return errors.New("bench: a worker exited")
		default:
		}
	}
	return nil
}

// The worker's side.

var errOrphaned = errors.New("orphaned")

// scaleJob is a command as a worker reads it.
type scaleJob struct {
	kind           uint32
	procs, writers int
}

// ServeScale is scale worker index (from 0): it opens the scale segment
// name and takes part in every scenario that counts it in, until told to
// exit; it fails when orphaned.
func ServeScale(name string, index int) error {
	if index < 0 || index >= MaxScaleWorkers {
		return fmt.Errorf("bench: scale worker %d (from 0 to %d)", index, MaxScaleWorkers-1)
	}
	m, err := shm.OpenManaged(name)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := shm.View[scaleShared](m.Data())
	if err != nil {
		return err
	}
	w := &scaleRun{s: s, p: &s.proc[index], index: index, parent: os.Getppid()}
	var last uint32
	for {
		c := atomic.LoadUint32(&s.cmd)
		if c == last {
			futex.Wait(&s.cmd, c, 100*time.Millisecond)
			if w.orphaned() {
				return errOrphaned
			}
			continue
		}
		j := scaleJob{
			kind:    atomic.LoadUint32(&s.kind),
			procs:   int(atomic.LoadUint32(&s.procs)),
			writers: int(atomic.LoadUint32(&s.writers)),
		}
		if atomic.LoadUint32(&s.cmd) != c {
			continue // a new command came while this one was read
		}
		last = c
		if j.kind == scaleExit {
			return nil
		}
		if index >= j.procs+j.writers {
			continue
		}
		w.c, w.j = c, j
		if err := w.run(); err != nil {
			return err
		}
	}
}

// scaleRun is a worker's side of one command.
type scaleRun struct {
	s      *scaleShared
	p      *scaleProc
	index  int
	parent int
	c      uint32
	j      scaleJob
}

func (w *scaleRun) orphaned() bool { return os.Getppid() != w.parent }

// stopped reports whether the coordinator told the command to stop.
func (w *scaleRun) stopped() bool { return atomic.LoadUint32(&w.s.stop.v) == w.c }

// run announces the worker ready, waits for the start, runs its part and
// announces it done.
func (w *scaleRun) run() error {
	s := w.s
	n := uint32(w.j.procs + w.j.writers)
	if atomic.AddUint32(&s.ready.v, 1) == n {
		futex.Wake(&s.ready.v, futex.All)
	}
	for {
		v := atomic.LoadUint32(&s.start.v)
		if v == w.c {
			break
		}
		if w.stopped() {
			return nil // the coordinator gave up on the command
		}
		futex.Wait(&s.start.v, v, 100*time.Millisecond)
		if w.orphaned() {
			return errOrphaned
		}
	}
	var err error
	switch w.j.kind {
	case scaleMutex:
		err = w.mutex()
	case scaleRW:
		if w.index < w.j.procs {
			err = w.reader()
		} else {
			err = w.writer(w.index - w.j.procs)
		}
	case scaleManual:
		err = w.manual()
	case scaleAuto:
		err = w.autoWaiter()
	default:
		err = fmt.Errorf("bench: unknown scale scenario %d", w.j.kind)
	}
	if err != nil {
		return err
	}
	if atomic.AddUint32(&s.done.v, 1) == n {
		futex.Wake(&s.done.v, futex.All)
	}
	return nil
}

// timedOut counts a wait that timed out and says whether to give up.
func (w *scaleRun) timedOut(err error) error {
	if !errors.Is(err, shm.ErrTimeout) {
		return err
	}
	atomic.AddUint64(&w.p.timeouts, 1)
	if w.orphaned() {
		return errOrphaned
	}
	return nil
}

func (w *scaleRun) mutex() error {
	s, p := w.s, w.p
	var n uint64
	for k := 1; !w.stopped(); k++ {
		if err := s.mu.LockTimeout(scaleLockWait); err != nil {
			if err := w.timedOut(err); err != nil {
				return err
			}
			continue
		}
		s.counter++
		n++
		atomic.StoreUint64(&p.count, n)
		s.mu.Unlock()
		if k%1024 == 0 && w.orphaned() {
			return errOrphaned
		}
	}
	return nil
}

func (w *scaleRun) reader() error {
	s, p := w.s, w.p
	var n uint64
	for k := 1; !w.stopped(); k++ {
		if !s.rw.TryRLock() {
			t0 := monotonic()
			for {
				err := s.rw.RLockTimeout(scaleLockWait)
				if err == nil {
					break
				}
				if err := w.timedOut(err); err != nil {
					return err
				}
				if w.stopped() {
					return nil
				}
			}
			if dt := monotonic() - t0; dt > p.maxWait {
				atomic.StoreInt64(&p.maxWait, dt)
			}
		}
		if atomic.LoadUint32(&s.inside.v) != 0 {
			atomic.AddUint32(&s.violations.v, 1)
		}
		n++
		atomic.StoreUint64(&p.count, n)
		s.rw.RUnlock()
		if k%1024 == 0 && w.orphaned() {
			return errOrphaned
		}
	}
	return nil
}

func (w *scaleRun) writer(i int) error {
	s, p, h := w.s, w.p, &w.s.hist[i]
	var n uint64
	for !w.stopped() {
		t0 := monotonic()
		for {
			err := s.rw.LockTimeout(scaleLockWait)
			if err == nil {
				break
			}
			if err := w.timedOut(err); err != nil {
				return err
			}
			if w.stopped() {
				return nil
			}
		}
		t1 := monotonic()
		if atomic.SwapUint32(&s.inside.v, 1) != 0 {
			atomic.AddUint32(&s.violations.v, 1)
		}
		for monotonic()-t1 < int64(rwHold) {
		}
		atomic.StoreUint32(&s.inside.v, 0)
		s.rw.Unlock()
		h.add(t1 - t0)
		n++
		atomic.StoreUint64(&p.count, n)
		t2 := monotonic()
		time.Sleep(rwPause)
		w.s.naps[i].add(max(monotonic()-t2-int64(rwPause), 0))
		if w.orphaned() {
			return errOrphaned
		}
	}
	return nil
}

func (w *scaleRun) manual() error {
	s, p := w.s, w.p
	var seen uint32
	for {
		r := atomic.LoadUint32(&s.round.v)
		if w.stopped() {
			return nil
		}
		if r == seen {
			futex.Wait(&s.round.v, r, 100*time.Millisecond)
			if w.orphaned() {
				return errOrphaned
			}
			continue
		}
		seen = r
		if atomic.AddUint32(&s.waiting.v, 1) == uint32(w.j.procs) {
			futex.Wake(&s.waiting.v, futex.All)
		}
		for {
			err := s.manual.e.WaitTimeout(scaleLockWait)
			if err == nil {
				break
			}
			if err := w.timedOut(err); err != nil {
				return err
			}
			if w.stopped() {
				return nil
			}
		}
		t := monotonic()
		atomic.StoreInt64(&p.at, t)
		atomic.StoreUint32(&p.seen, r)
		atomic.AddUint64(&p.count, 1)
		if atomic.AddUint32(&s.released.v, 1) == uint32(w.j.procs) {
			futex.Wake(&s.released.v, futex.All)
		}
	}
}

func (w *scaleRun) autoWaiter() error {
	s, p := w.s, w.p
	var n uint64
	for !w.stopped() {
		err := s.auto.e.WaitTimeout(autoWait)
		if err == nil {
			n++
			atomic.StoreUint64(&p.count, n)
			continue
		}
		if err := w.timedOut(err); err != nil {
			return err
		}
	}
	return nil
}
