package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// churnArea is what the churn trials share, at churnOff in an area's
// segment.
type churnArea struct {
	holder  int64     // PID of the writer (or mutex holder) inside, 0: none
	killed  [64]int64 // PIDs killed by the test (recorded before the kill)
	readers [64]int32 // per child index: its readers inside
	pids    [64]int64 // per child index: its PID
	bad     int32
	stop    int32
	ready   int32
	_       int32
	acq     int64 // acquisitions
	badMsg  [256]byte
}

const churnOff = 2304

func churnOf(b []byte) *churnArea {
	c, err := View[churnArea](b[churnOff:])
	if err != nil {
		panic(err)
	}
	return c
}

func (c *churnArea) wasKilled(pid int64) bool {
	for i := range c.killed {
		if atomic.LoadInt64(&c.killed[i]) == pid {
			return true
		}
	}
	return false
}

func (c *churnArea) fail(format string, args ...any) {
	if atomic.AddInt32(&c.bad, 1) == 1 {
		copy(c.badMsg[:], fmt.Sprintf(format, args...))
	}
}

// readersIn counts the readers inside in live children.
func (c *churnArea) readersIn() int32 {
	var n int32
	for i := range c.readers {
		if r := atomic.LoadInt32(&c.readers[i]); r != 0 && !c.wasKilled(atomic.LoadInt64(&c.pids[i])) {
			n += r
		}
	}
	return n
}

// spinFor polls nothing n times: a short stay inside a lock.
func spinFor(n int) {
	for i := 0; i < n; i++ {
		spinPause()
	}
}

func init() {
	// args: name, mode (mutex|rw), index, gomaxprocs, spin: lock and
	// unlock in a loop with every kind of call and tiny timeouts, checking
	// that nobody else is inside, until told to stop.
	registerChild("brk-churn", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		c := churnOf(seg.Bytes())
		mode, idx := args[1], atoi(args[2])
		if p := atoi(args[3]); p > 0 {
			runtime.GOMAXPROCS(p)
		}
		SetSpin(atoi(args[4]))
		me := int64(os.Getpid())
		atomic.StoreInt64(&c.pids[idx], me)
		atomic.AddInt32(&c.ready, 1)
		done := make(chan struct{})
		for g := 0; g < 3; g++ {
			go func() {
				defer func() { done <- struct{}{} }()
				for atomic.LoadInt32(&c.stop) == 0 && atomic.LoadInt32(&c.bad) == 0 {
					d := time.Duration(1 + rand.N(100000)) // 1ns..100µs
					if rand.N(10) == 0 {
						d = time.Duration(rand.N(20)) * time.Millisecond
					}
					read := mode == "rw" && rand.N(3) != 0
					var err error
					ok := func() bool { return err == nil || errors.Is(err, ErrOwnerDead) }
					switch k := rand.N(5); {
					case read && k == 0:
						if !a.rw.TryRLock() {
							err = ErrTimeout
						}
					case read && k == 1:
						ctx, cancel := context.WithCancel(context.Background())
						tm := time.AfterFunc(d, cancel)
						err = a.rw.RLockContext(ctx)
						tm.Stop()
						cancel()
					case read:
						err = a.rw.RLockTimeout(d)
					case mode == "rw" && k == 0:
						if !a.rw.TryLock() {
							err = ErrTimeout
						}
					case mode == "rw" && k == 1:
						ctx, cancel := context.WithCancel(context.Background())
						tm := time.AfterFunc(d, cancel)
						err = a.rw.LockContext(ctx)
						tm.Stop()
						cancel()
					case mode == "rw":
						err = a.rw.LockTimeout(d)
					case k == 0:
						if !a.mu.TryLock() {
							err = ErrTimeout
						}
					case k == 1:
						ctx, cancel := context.WithCancel(context.Background())
						tm := time.AfterFunc(d, cancel)
						err = a.mu.LockContext(ctx)
						tm.Stop()
						cancel()
					case k == 2 && rand.N(20) == 0:
						a.mu.Lock()
					default:
						err = a.mu.LockTimeout(d)
					}
					if !ok() {
						if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.Canceled) {
							c.fail("pid %d: lock: %v", me, err)
						}
						continue
					}
					atomic.AddInt64(&c.acq, 1)
					if read {
						atomic.AddInt32(&c.readers[idx], 1)
						if h := atomic.LoadInt64(&c.holder); h != 0 && !c.wasKilled(h) {
							c.fail("pid %d: read lock held while process %d holds the write lock", me, h)
						}
						spinFor(rand.N(200))
						if h := atomic.LoadInt64(&c.holder); h != 0 && !c.wasKilled(h) {
							c.fail("pid %d: read lock held while process %d holds the write lock", me, h)
						}
						atomic.AddInt32(&c.readers[idx], -1)
						a.rw.RUnlock()
						continue
					}
					old := atomic.SwapInt64(&c.holder, me)
					// A killed writer's mark stays until the next writer (a reader
					// that takes its lock over does not clear it, and TryLock
					// does not report the takeover).
					if old != 0 && !c.wasKilled(old) {
						c.fail("pid %d got the lock (%v) while process %d holds it", me, err, old)
					}
					if mode == "rw" {
						if n := c.readersIn(); n != 0 {
							c.fail("pid %d got the write lock while %d readers are inside", me, n)
						}
					}
					spinFor(rand.N(200))
					if mode == "rw" {
						if n := c.readersIn(); n != 0 {
							c.fail("pid %d holds the write lock while %d readers are inside", me, n)
						}
						a.rw.MarkConsistent()
					} else {
						a.mu.MarkConsistent()
					}
					if !atomic.CompareAndSwapInt64(&c.holder, me, 0) {
						c.fail("pid %d: someone replaced it as holder (%d)", me, atomic.LoadInt64(&c.holder))
					}
					if mode == "rw" {
						a.rw.Unlock()
					} else {
						a.mu.Unlock()
					}
				}
			}()
		}
		for g := 0; g < 3; g++ {
			<-done
		}
		return nil
	})
}

func runChurn(t *testing.T, mode string, procs int, maxprocs, spin int, kills bool, d time.Duration) {
	name, seg, a := newArea(t)
	c := churnOf(seg.Bytes())
	next := 0
	start := func() *child {
		ch := startChild(t, "brk-churn", name, mode, strconv.Itoa(next), strconv.Itoa(maxprocs), strconv.Itoa(spin))
		next++
		return ch
	}
	var cs []*child
	for i := 0; i < procs; i++ {
		cs = append(cs, start())
	}
	waitCount(t, &c.ready, int32(procs), 20*time.Second)
	end := time.Now().Add(d)
	nkill := 0
	lastAcq, lastAt := atomic.LoadInt64(&c.acq), time.Now()
	var worstStall time.Duration
	for time.Now().Before(end) && atomic.LoadInt32(&c.bad) == 0 {
		time.Sleep(time.Duration(1+rand.N(30)) * time.Millisecond)
		if acq := atomic.LoadInt64(&c.acq); acq != lastAcq {
			lastAcq, lastAt = acq, time.Now()
		} else if s := time.Since(lastAt); s > worstStall {
			worstStall = s
		}
		if kills && next < 64 && rand.N(3) == 0 {
			i := rand.N(len(cs))
			atomic.StoreInt64(&c.killed[nkill], int64(cs[i].cmd.Process.Pid))
			nkill++
			cs[i].kill()
			cs[i] = start()
		}
	}
	atomic.StoreInt32(&c.stop, 1)
	for _, ch := range cs {
		if err := ch.waitErr(20 * time.Second); err != nil {
			t.Errorf("child: %v\n%s", err, ch.output())
		}
	}
	if n := atomic.LoadInt32(&c.bad); n != 0 {
		t.Fatalf("%d violations; first: %s", n, string(c.badMsg[:]))
	}
	// The lock is free (or a dead holder's, taken over) at the end.
	var err error
	if mode == "rw" {
		if err = a.rw.LockTimeout(time.Second); err == nil || errors.Is(err, ErrOwnerDead) {
			a.rw.Unlock()
			err = nil
		}
	} else if err = a.mu.LockTimeout(time.Second); err == nil || errors.Is(err, ErrOwnerDead) {
		a.mu.Unlock()
		err = nil
	}
	if err != nil {
		t.Fatalf("after the churn: %v", err)
	}
	t.Logf("%s: %d acquisitions, %d kills, longest stretch without one %v", mode, c.acq, nkill, worstStall)
	if worstStall > 500*time.Millisecond {
		t.Errorf("no process got the lock for %v", worstStall)
	}
}

// TestBreakChurn: processes lock and unlock with tiny timeouts, cancelled
// contexts, TryLock and Lock, some with GOMAXPROCS=1 or no spinning, while
// the test kills them at random (holders, waiters, anyone): never two
// holders (or a writer and a reader) inside at once, the lock keeps
// changing hands, and it is free at the end.
func TestBreakChurn(t *testing.T) {
	d := time.Second
	if long() {
		d = 30 * time.Second
	}
	for _, mode := range []string{"mutex", "rw"} {
		for _, cfg := range []struct{ maxprocs, spin int }{{0, -1}, {1, 0}} {
			t.Run(fmt.Sprintf("%s/gomaxprocs=%d/spin=%d", mode, cfg.maxprocs, cfg.spin), func(t *testing.T) {
				runChurn(t, mode, 4, cfg.maxprocs, cfg.spin, true, d)
			})
		}
	}
}
