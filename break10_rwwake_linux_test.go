package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-shm/shm/internal/futex"
)

// b10Area is the shared page of the break10 RWMutex tests.
type b10Area struct {
	rw    RWMutex
	stop  int32
	ready int32
	_     int32
	_     int32
	bad   int32
	woke  int32 // fake writers woken
	armed int32 // fake writers asleep
	_     int32
	a, b  uint64
	// free: bits 0..7 how many writers are active (trying, holding or
	// giving up), bits 8..63 when (ns since base) the count last fell to 0.
	free   uint64
	base   int64
	worstL int64 // worst "w free (no writer active) -> reader inside" (ns)
	overP  int64 // worst plain time.Sleep overshoot in the same processes
	nW, nR int64
	nL     int64 // latency samples
	entry  [64]int64
	rin    [32]int32 // readers inside, per child slot (a killed child's is cleared by the parent)
	win    [32]int32 // writers inside, per child slot
	pid    [32]int32 // the process in each child slot
	msg    [256]byte
}

func (a *b10Area) fail(format string, args ...any) {
	if atomic.AddInt32(&a.bad, 1) == 1 {
		copy(a.msg[:], fmt.Sprintf(format, args...))
	}
}

func (a *b10Area) now() uint64 { return uint64(time.Now().UnixNano() - a.base) }

func (a *b10Area) writerIn() {
	for {
		o := atomic.LoadUint64(&a.free)
		if atomic.CompareAndSwapUint64(&a.free, o, o+1) {
			return
		}
	}
}

func (a *b10Area) writerOut() {
	for {
		o := atomic.LoadUint64(&a.free)
		n := o - 1
		if n&0xff == 0 {
			n = a.now() << 8
		}
		if atomic.CompareAndSwapUint64(&a.free, o, n) {
			return
		}
	}
}

func sum32(p []int32) int32 {
	n := int32(0)
	for i := range p {
		n += atomic.LoadInt32(&p[i])
	}
	return n
}

// procAlive reports whether pid runs (not gone, not a zombie).
func procAlive(pid int32) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	for i := len(s) - 1; i > 0; i-- {
		if s[i] == ')' {
			return i+2 < len(s) && s[i+2] != 'Z'
		}
	}
	return true
}

// liveSum is sum32 over the slots whose process still runs (a child killed
// inside its section is inside no more; the parent clears its slot only
// once it reaped it).
func (a *b10Area) liveSum(p []int32) (n int32, who string) {
	for i := range p {
		if v := atomic.LoadInt32(&p[i]); v != 0 {
			if pid := atomic.LoadInt32(&a.pid[i]); procAlive(pid) {
				n += v
				who += fmt.Sprintf(" slot %d pid %d;", i, pid)
			}
		}
	}
	return n, who
}

func (a *b10Area) writeInside(slot int, hold time.Duration) {
	atomic.AddInt32(&a.win[slot], 1)
	if n := sum32(a.win[:]); n != 1 {
		if n, who := a.liveSum(a.win[:]); n != 1 {
			a.fail("%d writers inside:%s", n, who)
		}
	}
	if n := sum32(a.rin[:]); n != 0 {
		if n, who := a.liveSum(a.rin[:]); n != 0 {
			a.fail("a writer (pid %d) inside with %d readers:%s", os.Getpid(), n, who)
		}
	}
	a.a++
	if hold > 0 {
		time.Sleep(hold)
	}
	a.b++
	if n := sum32(a.rin[:]); n != 0 {
		if n, who := a.liveSum(a.rin[:]); n != 0 {
			a.fail("a writer (pid %d) inside with %d readers (at its end):%s", os.Getpid(), n, who)
		}
	}
	atomic.AddInt32(&a.win[slot], -1)
	atomic.AddInt64(&a.nW, 1)
}

func (a *b10Area) readInside(slot int, hold time.Duration, checkAB bool) {
	atomic.AddInt32(&a.rin[slot], 1)
	if n := sum32(a.win[:]); n != 0 {
		if n, who := a.liveSum(a.win[:]); n != 0 {
			a.fail("a reader (pid %d) inside with %d writers:%s", os.Getpid(), n, who)
		}
	}
	if x, y := a.a, a.b; checkAB && x != y {
		a.fail("a reader saw a=%d b=%d", x, y)
	}
	if hold > 0 {
		time.Sleep(hold)
	}
	atomic.AddInt32(&a.rin[slot], -1)
	atomic.AddInt64(&a.nR, 1)
}

func newB10Area(t *testing.T) (string, *b10Area) {
	t.Helper()
	name := testName(t)
	seg, err := Create(name, 16384)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	a, err := View[b10Area](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	a.base = time.Now().UnixNano()
	return name, a
}

func openB10Area(name string) (*Segment, *b10Area, error) {
	seg, err := Open(name)
	if err != nil {
		return nil, nil, err
	}
	a, err := View[b10Area](seg.Bytes())
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, a, nil
}

func b10Probe(a *b10Area, seed int, wg *sync.WaitGroup) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	for atomic.LoadInt32(&a.stop) == 0 {
		d := time.Duration(rng.Int64N(int64(3 * time.Millisecond)))
		start := time.Now()
		time.Sleep(d)
		atomicMax(&a.overP, int64(time.Since(start)-d))
	}
}

func init() {
	// args: name, index. One RLock, its entry time in entry[index].
	registerChild("brk10-reader1", func(args []string) error {
		seg, a, err := openB10Area(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		i := atoi(args[1])
		start := time.Now()
		time.Sleep(time.Millisecond)
		atomicMax(&a.overP, int64(time.Since(start)-time.Millisecond))
		atomic.AddInt32(&a.ready, 1)
		a.rw.RLock()
		atomic.StoreInt64(&a.entry[i], time.Now().UnixNano())
		a.rw.RUnlock()
		return nil
	})
	// args: name. A writer that sleeps on w as a writer does (waiters bit,
	// FUTEX_WAIT with every bit) and, once woken, vanishes without taking w
	// or passing the wake-up on: a writer SIGKILLed right after the
	// selective wake.
	registerChild("brk10-fakewriter", func(args []string) error {
		seg, a, err := openB10Area(args[0])
		if err != nil {
			return err
		}
		word := lowHalf(&a.rw.w.state)
		for {
			old := atomic.LoadUint64(&a.rw.w.state)
			if old&mHeld == 0 {
				return errors.New("w not held")
			}
			if !atomic.CompareAndSwapUint64(&a.rw.w.state, old, old|mWaiters) {
				continue
			}
			atomic.AddInt32(&a.armed, 1)
			futex.Wait(word, uint32(old|mWaiters), 10*time.Second)
			atomic.AddInt32(&a.woke, 1)
			seg.Close()
			os.Exit(0) // gone, as if killed
		}
	})
}

// TestBreak10RWWokenWriterVanishes: readers asleep on w, a writer asleep
// too; the holder's Unlock wakes the writer alone (selective wake) and that
// writer vanishes before it takes w. The readers must still get in within
// about a slice (2-2.5 ms) of the Unlock, not wait for someone else's
// Unlock. Pins: the selective wake took place (the writer woke) and the
// readers' slices bound the cost of a lost writer.
func TestBreak10RWWokenWriterVanishes(t *testing.T) {
	const readers = 6
	for round := 0; round < 3; round++ {
		name, a := newB10Area(t)
		a.rw.Lock()
		var cs []*child
		for i := 0; i < readers; i++ {
			cs = append(cs, startChild(t, "brk10-reader1", name, strconv.Itoa(i)))
		}
		waitCount(t, &a.ready, readers, 20*time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for atomic.LoadUint64(&a.rw.w.state)&mReaders == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(30 * time.Millisecond) // the readers sleep
		fw := []*child{startChild(t, "brk10-fakewriter", name), startChild(t, "brk10-fakewriter", name)}
		waitCount(t, &a.armed, 2, 20*time.Second)
		time.Sleep(30 * time.Millisecond)
		st := atomic.LoadUint64(&a.rw.w.state)
		if st&(mReaders|mWaiters) != mReaders|mWaiters {
			t.Fatalf("w = %#x before the Unlock, want readers and waiters bits", st)
		}
		t0 := time.Now().UnixNano()
		a.rw.Unlock()
		for _, c := range cs {
			c.wait(20 * time.Second)
		}
		worst := int64(0)
		for i := 0; i < readers; i++ {
			worst = max(worst, a.entry[i]-t0)
		}
		woke := atomic.LoadInt32(&a.woke)
		for _, c := range fw {
			c.kill()
		}
		t.Logf("round %d: w %#x after Unlock; %d of 2 writers woken; last reader in %v after the Unlock (plain 1 ms sleep overshoot %v)",
			round, atomic.LoadUint64(&a.rw.w.state), woke, time.Duration(worst), time.Duration(a.overP))
		if woke != 1 {
			t.Errorf("round %d: %d fake writers woke, want 1 (the selective wake)", round, woke)
		}
		if time.Duration(worst) > 30*time.Millisecond+time.Duration(a.overP) {
			t.Errorf("round %d: a reader got in %v after w was freed", round, time.Duration(worst))
		}
	}
}

func init() {
	// args: name, kind (w, r), seed, slot
	registerChild("brk10-mix", func(args []string) error {
		seg, a, err := openB10Area(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		seed, slot := atoi(args[2]), atoi(args[3])
		atomic.StoreInt32(&a.pid[slot], int32(os.Getpid()))
		var wg sync.WaitGroup
		wg.Add(1)
		go b10Probe(a, seed, &wg)
		atomic.AddInt32(&a.ready, 1)
		gs := 1
		if args[1] == "r" {
			gs = 2
		}
		for g := 0; g < gs; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(seed), uint64(g)))
				if args[1] == "w" {
					b10Writer(a, rng, slot)
				} else {
					b10Reader(a, rng, slot)
				}
			}()
		}
		wg.Wait()
		return nil
	})
}

func b10Writer(a *b10Area, rng *rand.Rand, slot int) {
	for atomic.LoadInt32(&a.stop) == 0 {
		a.writerIn()
		var err error
		switch rng.IntN(5) {
		case 0:
			a.rw.Lock()
		case 1:
			if !a.rw.TryLock() {
				err = ErrTimeout
			}
		case 2:
			err = a.rw.LockTimeout(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
		case 3:
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(time.Duration(rng.Int64N(int64(3*time.Millisecond))), cancel)
			err = a.rw.LockContext(ctx)
			cancel()
		case 4:
			err = a.rw.LockTimeout(time.Duration(rng.Int64N(int64(300 * time.Microsecond))))
		}
		if err == ErrOwnerDead {
			a.a = a.b
			a.rw.MarkConsistent()
			err = nil
		}
		if err != nil {
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.Canceled) {
				a.fail("writer: %v", err)
			}
			a.writerOut()
			// Idle (no writer active) now and then, so readers have free
			// windows to be measured in.
			time.Sleep(time.Duration(rng.Int64N(int64(2 * time.Millisecond))))
			continue
		}
		a.writeInside(slot, time.Duration(rng.Int64N(int64(time.Millisecond))))
		a.rw.Unlock()
		a.writerOut()
		time.Sleep(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
	}
}

func b10Reader(a *b10Area, rng *rand.Rand, slot int) {
	for atomic.LoadInt32(&a.stop) == 0 {
		start := uint64(time.Now().UnixNano() - a.base)
		var err error
		switch rng.IntN(4) {
		case 0, 1:
			a.rw.RLock()
		case 2:
			err = a.rw.RLockTimeout(time.Duration(rng.Int64N(int64(50 * time.Millisecond))))
		case 3:
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(time.Duration(rng.Int64N(int64(40*time.Millisecond))), cancel)
			err = a.rw.RLockContext(ctx)
			cancel()
		}
		in := a.now()
		if err != nil && err != ErrOwnerDead {
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.Canceled) {
				a.fail("reader: %v", err)
			}
		}
		// How long after w became free (no writer active since) did this
		// reader get in, or give up?
		if f := atomic.LoadUint64(&a.free); f&0xff == 0 {
			from := max(f>>8, start)
			if in > from {
				atomicMax(&a.worstL, int64(in-from))
				atomic.AddInt64(&a.nL, 1)
			}
		}
		if err != nil && err != ErrOwnerDead {
			continue
		}
		a.readInside(slot, time.Duration(rng.Int64N(int64(300*time.Microsecond))), err == nil && !a.rw.OwnerDied())
		a.rw.RUnlock()
		time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Microsecond))))
	}
}

// TestBreak10RWFreeToReader: 3 writer processes (Lock, TryLock, timeouts
// of 0-3 ms and 0-300 µs, contexts cancelled after 0-3 ms) and 6 reader
// processes (2 goroutines each). The worst time from the moment no writer
// was active (trying, holding or giving up) to a reader's entry must stay
// within a few of the readers' slices beyond the scheduling delay measured
// by plain sleeps; never a writer beside a reader or another writer.
func TestBreak10RWFreeToReader(t *testing.T) {
	name, a := newB10Area(t)
	seed := int(time.Now().UnixNano() & 0xffffff)
	t.Logf("seed %d", seed)
	var cs []*child
	for i := 0; i < 3; i++ {
		cs = append(cs, startChild(t, "brk10-mix", name, "w", strconv.Itoa(seed+i), strconv.Itoa(i)))
	}
	for i := 0; i < 6; i++ {
		cs = append(cs, startChild(t, "brk10-mix", name, "r", strconv.Itoa(seed+100+i), strconv.Itoa(3+i)))
	}
	waitCount(t, &a.ready, int32(len(cs)), 20*time.Second)
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) && atomic.LoadInt32(&a.bad) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	atomic.StoreInt32(&a.stop, 1)
	for _, c := range cs {
		c.wait(20 * time.Second)
	}
	t.Logf("%d write locks, %d read locks; %d free-window samples, worst free->reader %v; plain sleep overshoot %v",
		a.nW, a.nR, a.nL, time.Duration(a.worstL), time.Duration(a.overP))
	if a.bad != 0 {
		t.Fatalf("%d violations, first: %s", a.bad, string(a.msg[:]))
	}
	if a.nW == 0 || a.nR == 0 || a.nL == 0 {
		t.Errorf("no progress: %d write locks, %d read locks, %d samples", a.nW, a.nR, a.nL)
	}
	if l := time.Duration(a.worstL); l > 30*time.Millisecond+time.Duration(a.overP) {
		t.Errorf("a reader got in %v after w was free", l)
	}
}

// TestBreak10RWKills: the mix above while writers (holding w, draining
// readers in lockWait, asleep on w after a selective wake) and readers
// (holding shares, asleep on w) are SIGKILLed at random and replaced:
// never two writers, or a writer and a reader, inside together; a reader
// that got in without ErrOwnerDead and with no mark sees the data whole;
// both sides keep making progress once the kills stop.
func TestBreak10RWKills(t *testing.T) {
	name, a := newB10Area(t)
	seed := int(time.Now().UnixNano() & 0xffffff)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	kinds := []string{"w", "w", "w", "r", "r", "r", "r", "r"}
	cs := make([]*child, len(kinds))
	for i, k := range kinds {
		cs[i] = startChild(t, "brk10-mix", name, k, strconv.Itoa(seed+i), strconv.Itoa(i))
	}
	waitCount(t, &a.ready, int32(len(cs)), 20*time.Second)
	kills := 0
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) && atomic.LoadInt32(&a.bad) == 0 {
		time.Sleep(time.Duration(50+rng.IntN(100)) * time.Millisecond)
		i := rng.IntN(len(cs))
		cs[i].kill()
		kills++
		// The dead child is inside no more (a dead reader reads nothing; a
		// dead writer's w is taken over).
		atomic.StoreInt32(&a.rin[i], 0)
		atomic.StoreInt32(&a.win[i], 0)
		cs[i] = startChild(t, "brk10-mix", name, kinds[i], strconv.Itoa(seed+1000+kills), strconv.Itoa(i))
	}
	// No more kills: both sides must go on.
	time.Sleep(300 * time.Millisecond)
	w0, r0 := atomic.LoadInt64(&a.nW), atomic.LoadInt64(&a.nR)
	time.Sleep(time.Second)
	w1, r1 := atomic.LoadInt64(&a.nW), atomic.LoadInt64(&a.nR)
	atomic.StoreInt32(&a.stop, 1)
	for _, c := range cs {
		c.wait(20 * time.Second)
	}
	t.Logf("%d kills; %d write locks, %d read locks; in the last second %d write and %d read locks", kills, a.nW, a.nR, w1-w0, r1-r0)
	if a.bad != 0 {
		t.Fatalf("%d violations, first: %s", a.bad, string(a.msg[:]))
	}
	if w1 == w0 || r1 == r0 {
		t.Errorf("no progress after the kills: %d write and %d read locks in a second", w1-w0, r1-r0)
	}
}
