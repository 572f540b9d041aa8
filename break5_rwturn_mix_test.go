package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// turnArea is the shared page of the readers'-turn tests.
type turnArea struct {
	rw      RWMutex
	stop    int32
	ready   int32
	writers int32 // writers inside
	readers int32 // readers inside
	bad     int32 // exclusion or protocol violations seen
	_       int32
	a, b    uint64 // kept equal by writers
	worstW  int64  // longest wait of a writer's Lock (ns)
	worstR  int64  // longest wait of a reader's RLock (ns)
	overW   int64  // longest overshoot of a writer's timed wait past its deadline (ns)
	overR   int64  // the same for readers
	nW, nR  int64  // write and read locks taken
	overP   int64  // longest overshoot of a plain time.Sleep in the same processes (ns): the scheduling delay
	res     int32  // a child's result (owner-death tests)
	died    int32  // whether OwnerDied held with it
	msg     [256]byte
}

func atomicMax(p *int64, v int64) {
	for {
		o := atomic.LoadInt64(p)
		if v <= o || atomic.CompareAndSwapInt64(p, o, v) {
			return
		}
	}
}

func newTurnArea(t *testing.T) (string, *turnArea) {
	t.Helper()
	name := testName(t)
	seg, err := Create(name, 8192)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	a, err := View[turnArea](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return name, a
}

func openTurnArea(name string) (*Segment, *turnArea, error) {
	seg, err := Open(name)
	if err != nil {
		return nil, nil, err
	}
	a, err := View[turnArea](seg.Bytes())
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, a, nil
}

// fail records the first violation.
func (a *turnArea) fail(format string, args ...any) {
	if atomic.AddInt32(&a.bad, 1) == 1 {
		copy(a.msg[:], fmt.Sprintf(format, args...))
	}
}

// writeInside is a writer's critical section: it checks it is alone.
func (a *turnArea) writeInside(hold time.Duration) {
	if n := atomic.AddInt32(&a.writers, 1); n != 1 {
		a.fail("%d writers inside", n)
	}
	if n := atomic.LoadInt32(&a.readers); n != 0 {
		a.fail("a writer inside with %d readers", n)
	}
	a.a++
	if hold > 0 {
		time.Sleep(hold)
	}
	a.b++
	if n := atomic.LoadInt32(&a.readers); n != 0 {
		a.fail("a writer inside with %d readers (at its end)", n)
	}
	atomic.AddInt32(&a.writers, -1)
	atomic.AddInt64(&a.nW, 1)
}

// readInside is a reader's critical section.
func (a *turnArea) readInside(hold time.Duration) {
	atomic.AddInt32(&a.readers, 1)
	if n := atomic.LoadInt32(&a.writers); n != 0 {
		a.fail("a reader inside with %d writers", n)
	}
	if x, y := a.a, a.b; x != y {
		a.fail("a reader saw a=%d b=%d", x, y)
	}
	if hold > 0 {
		time.Sleep(hold)
	}
	atomic.AddInt32(&a.readers, -1)
	atomic.AddInt64(&a.nR, 1)
}

// mixWriter takes the write lock every way there is until told to stop.
func mixWriter(a *turnArea, rng *rand.Rand, maxHold time.Duration) {
	for atomic.LoadInt32(&a.stop) == 0 {
		hold := time.Duration(rng.Int64N(int64(maxHold) + 1))
		start := time.Now()
		var err error
		var d time.Duration = -1
		switch rng.IntN(5) {
		case 0:
			a.rw.Lock()
			atomicMax(&a.worstW, int64(time.Since(start)))
		case 1:
			if !a.rw.TryLock() {
				err = ErrTimeout
			}
		case 2:
			d = time.Duration(rng.Int64N(int64(3 * time.Millisecond)))
			err = a.rw.LockTimeout(d)
		case 3:
			d = time.Duration(rng.Int64N(int64(3 * time.Millisecond)))
			ctx, cancel := context.WithTimeout(context.Background(), d)
			err = a.rw.LockContext(ctx)
			cancel()
		case 4:
			d = time.Duration(rng.Int64N(int64(20*time.Millisecond))) + time.Millisecond
			err = a.rw.LockTimeout(d)
		}
		if err != nil {
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				a.fail("writer: %v", err)
			}
			if d >= 0 {
				atomicMax(&a.overW, int64(time.Since(start)-d))
			}
			continue
		}
		a.writeInside(hold)
		a.rw.Unlock()
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(time.Millisecond))))
		}
	}
}

// mixReader takes read locks every way there is until told to stop.
func mixReader(a *turnArea, rng *rand.Rand, maxHold time.Duration) {
	for atomic.LoadInt32(&a.stop) == 0 {
		hold := time.Duration(rng.Int64N(int64(maxHold) + 1))
		start := time.Now()
		var err error
		var d time.Duration = -1
		switch rng.IntN(4) {
		case 0:
			a.rw.RLock()
			atomicMax(&a.worstR, int64(time.Since(start)))
		case 1:
			if !a.rw.TryRLock() {
				err = ErrTimeout
			}
		case 2:
			d = time.Duration(rng.Int64N(int64(4 * time.Millisecond)))
			err = a.rw.RLockTimeout(d)
		case 3:
			d = time.Duration(rng.Int64N(int64(4 * time.Millisecond)))
			ctx, cancel := context.WithTimeout(context.Background(), d)
			err = a.rw.RLockContext(ctx)
			cancel()
		}
		if err != nil {
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				a.fail("reader: %v", err)
			}
			if d >= 0 {
				atomicMax(&a.overR, int64(time.Since(start)-d))
			}
			continue
		}
		a.readInside(hold)
		a.rw.RUnlock()
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(300 * time.Microsecond))))
		}
	}
}

func init() {
	// args: name, kind ("w" or "r"), goroutines, max hold (µs), seed
	registerChild("brk5-mix", func(args []string) error {
		seg, a, err := openTurnArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		n, maxHold, seed := atoi(args[2]), time.Duration(atoi(args[3]))*time.Microsecond, atoi(args[4])
		atomic.AddInt32(&a.ready, 1)
		var wg sync.WaitGroup
		// The probe: how late a plain sleep of 0-3 ms returns beside the
		// lockers, the scheduling delay a timed lock is measured against.
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(seed), 99))
			for atomic.LoadInt32(&a.stop) == 0 {
				d := time.Duration(rng.Int64N(int64(3 * time.Millisecond)))
				start := time.Now()
				time.Sleep(d)
				atomicMax(&a.overP, int64(time.Since(start)-d))
			}
		}()
		for g := 0; g < n; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(seed), uint64(g)))
				if args[1] == "w" {
					mixWriter(a, rng, maxHold)
				} else {
					mixReader(a, rng, maxHold)
				}
			}()
		}
		wg.Wait()
		return nil
	})
}

// runTurnMix runs writer and reader processes on one RWMutex for run, and
// returns the area to look at.
func runTurnMix(t *testing.T, writers, readers int, wHold, rHold time.Duration, run time.Duration, during func(a *turnArea)) *turnArea {
	name, a := newTurnArea(t)
	var cs []*child
	seed := time.Now().UnixNano() & 0xffffff
	t.Logf("seed %d", seed)
	for i := 0; i < writers; i++ {
		cs = append(cs, startChild(t, "brk5-mix", name, "w", "2", strconv.Itoa(int(wHold/time.Microsecond)), strconv.Itoa(int(seed)+i)))
	}
	for i := 0; i < readers; i++ {
		cs = append(cs, startChild(t, "brk5-mix", name, "r", "2", strconv.Itoa(int(rHold/time.Microsecond)), strconv.Itoa(int(seed)+100+i)))
	}
	waitCount(t, &a.ready, int32(len(cs)), 20*time.Second)
	end := time.Now().Add(run)
	for time.Now().Before(end) && atomic.LoadInt32(&a.bad) == 0 {
		if during != nil {
			during(a)
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	atomic.StoreInt32(&a.stop, 1)
	for _, c := range cs {
		c.wait(20 * time.Second)
	}
	t.Logf("%d write locks (worst Lock wait %v, worst timed overshoot %v), %d read locks (worst RLock wait %v, worst timed overshoot %v); a plain sleep overshot by %v at worst",
		a.nW, time.Duration(a.worstW), time.Duration(a.overW), a.nR, time.Duration(a.worstR), time.Duration(a.overR), time.Duration(a.overP))
	if a.bad != 0 {
		t.Fatalf("%d violations, first: %s", a.bad, string(a.msg[:]))
	}
	if a.nW == 0 || a.nR == 0 {
		t.Errorf("no progress: %d write locks, %d read locks", a.nW, a.nR)
	}
	return a
}

// TestBreak5RWTurnMix: 3 writer and 4 reader processes (two goroutines
// each) take the lock every way (Lock, TryLock, LockTimeout and
// LockContext with timeouts of 0-3 ms, RLock, TryRLock, RLockTimeout and
// RLockContext with 0-4 ms) while turns come and go: never two writers, or
// a writer and a reader, inside together; no wait far past its deadline;
// neither side kept out for long.
func TestBreak5RWTurnMix(t *testing.T) {
	a := runTurnMix(t, 3, 4, time.Millisecond, 500*time.Microsecond, 3*time.Second, nil)
	if w := time.Duration(a.worstW); w > 250*time.Millisecond+wineSlack(a) {
		t.Errorf("a writer's Lock waited %v", w)
	}
	if r := time.Duration(a.worstR); r > 100*time.Millisecond+wineSlack(a) {
		t.Errorf("a reader's RLock waited %v", r)
	}
	// A scheduling delay: on Linux, 15 ms beyond the worst a plain sleep
	// saw in the same processes. (A fixed 15 ms was exceeded once in CI
	// under -race, by 25 ms: 14 busy threads of 7 processes on 2 CPUs wait
	// that long for a CPU, a plain sleep as a lock.) Under Wine (the
	// Windows run) timed locks of this mix return 15-48 ms late with the
	// readers' turn and without it alike (measured with turns disabled):
	// Wine's scheduling of 14 busy threads on 2 CPUs, not the lock.
	late := 15*time.Millisecond + time.Duration(a.overP)
	if runtime.GOOS == "windows" {
		late = 100*time.Millisecond + time.Duration(a.overP)
	}
	if o := time.Duration(a.overW); o > late {
		t.Errorf("a writer's timed lock returned %v after its deadline", o)
	}
	if o := time.Duration(a.overR); o > late {
		t.Errorf("a reader's timed lock returned %v after its deadline", o)
	}
}

// TestBreak5RWTurnWriterNotStarvedByReaders: 6 reader processes with short
// read locks (up to 200 µs, back to back) and 1 writer process: the
// readers' turn must not keep the writer out (the turns are asked by the
// readers the writer keeps waiting, and prolonged while w is held).
func TestBreak5RWTurnWriterNotStarvedByReaders(t *testing.T) {
	a := runTurnMix(t, 1, 6, 2*time.Millisecond, 200*time.Microsecond, 3*time.Second, nil)
	if w := time.Duration(a.worstW); w > 100*time.Millisecond+wineSlack(a) {
		t.Errorf("a writer's Lock waited %v", w)
	}
	if r := time.Duration(a.worstR); r > 100*time.Millisecond+wineSlack(a) {
		t.Errorf("a reader's RLock waited %v", r)
	}
}

// wineSlack is what the bounds on how long a side is kept out allow for
// the scheduler under Wine (the Windows run): three times the worst
// overshoot of a plain sleep in the same processes, since a wait for the
// lock needs a CPU several times (to wake, to ask for a turn, to take the
// lock). The bounds were set when Wine here scheduled these 14 busy
// threads promptly; on 2026-12-02 the unchanged lock code of the day
// before failed them under Wine on this machine in every run (a reader
// kept out 134-458 ms while a plain sleep overshot by 37-231 ms), and
// passed them on Linux. On Linux there is no slack.
func wineSlack(a *turnArea) time.Duration {
	if runtime.GOOS != "windows" {
		return 0
	}
	return 3 * time.Duration(a.overP)
}
