//go:build linux

package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// b9Flags is the user data of these tests' segments.
type b9Flags struct {
	releases int64 // waits that returned nil
	stop     int32
	ready    int32
	late     int64 // worst lateness of a timed-out wait seen by children (ns)
	inCS     int32 // mutex: holders inside
	viol     int32 // mutex: mutual exclusion violations
	count    int64 // mutex: critical sections
	errs     int32 // unexpected errors
}

func b9Open(name string) (*Managed, *b9Flags, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, err
	}
	f, err := View[b9Flags](m.Data())
	if err != nil {
		return nil, nil, err
	}
	return m, f, nil
}

func b9Max(p *int64, v int64) {
	for {
		o := atomic.LoadInt64(p)
		if v <= o || atomic.CompareAndSwapInt64(p, o, v) {
			return
		}
	}
}

// b9Wait waits on ev with a randomly chosen tiny timeout or a context
// cancelled after a random few µs; it counts a success in f.releases and
// records how late a failed wait returned.
func b9Wait(ev Event, f *b9Flags, r *rand.Rand) error {
	var err error
	start := time.Now()
	var limit time.Duration
	switch r.IntN(6) {
	case 0:
		err = ev.WaitTimeout(0)
	case 1:
		limit = time.Microsecond
		err = ev.WaitTimeout(limit)
	case 2:
		limit = 50 * time.Microsecond
		err = ev.WaitTimeout(limit)
	case 3:
		limit = time.Duration(r.IntN(2000)) * time.Microsecond
		err = ev.WaitTimeout(limit)
	case 4:
		limit = time.Duration(r.IntN(100)) * time.Microsecond
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		err = ev.WaitContext(ctx)
		cancel()
	case 5:
		limit = time.Duration(r.IntN(300)) * time.Microsecond
		ctx, cancel := context.WithCancel(context.Background())
		tm := time.AfterFunc(limit, cancel)
		err = ev.WaitContext(ctx)
		tm.Stop()
		cancel()
	}
	if err == nil {
		atomic.AddInt64(&f.releases, 1)
		return nil
	}
	if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	b9Max(&f.late, int64(time.Since(start)-limit))
	return nil
}

func init() {
	// args: name, goroutines, spin (-1 default), pin (1: one CPU)
	registerChild("b9-ev-waiter", func(args []string) error {
		m, f, err := b9Open(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		if s := atoi(args[2]); s >= 0 {
			SetSpin(s)
		}
		if args[3] == "1" {
			var set unix.CPUSet
			set.Set(0)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return err
			}
			checkCPUs()
		}
		ev, err := m.Event(0)
		if err != nil {
			return err
		}
		n := atoi(args[1])
		errc := make(chan error, n)
		var wg sync.WaitGroup
		atomic.AddInt32(&f.ready, 1)
		for g := 0; g < n; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
				for atomic.LoadInt32(&f.stop) == 0 {
					if err := b9Wait(ev, f, r); err != nil {
						errc <- err
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errc)
		return <-errc
	})
}

// b9Once: the parent sets the event, then waits until exactly one waiter
// (in one of the children) reports it taken before setting again; waiters
// use only tiny timeouts and cancelled contexts, so that Sets land in every
// phase (spin, yield, sleep, deadline checks). A Set taken by a waiter that
// then reports a timeout never shows up in releases: the parent stalls.
func b9Once(t *testing.T, kind EventKind, procs, gor int, spin int, pin bool, dur time.Duration) {
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b9Flags{}))}
	cfg.AddEvent(kind)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f, err := View[b9Flags](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := m.Event(0)
	if err != nil {
		t.Fatal(err)
	}
	p := "0"
	if pin {
		p = "1"
	}
	var kids []*child
	for i := 0; i < procs; i++ {
		kids = append(kids, startChild(t, "b9-ev-waiter", cfg.Name, strconv.Itoa(gor), strconv.Itoa(spin), p))
	}
	for end := time.Now().Add(10 * time.Second); atomic.LoadInt32(&f.ready) < int32(procs); {
		if time.Now().After(end) {
			t.Fatal("children not ready")
		}
		time.Sleep(time.Millisecond)
	}
	var sets int64
	var worstRT time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	stall := ""
	for end := time.Now().Add(dur); time.Now().Before(end); {
		if r.IntN(4) == 0 {
			time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
		}
		st := time.Now()
		if err := ev.Set(); err != nil {
			t.Fatal(err)
		}
		sets++
		for atomic.LoadInt64(&f.releases) < sets {
			if time.Since(st) > 3*time.Second {
				stall = fmt.Sprintf("Set %d not taken by anyone within 3 s (releases %d)", sets, atomic.LoadInt64(&f.releases))
				break
			}
			if pin {
				time.Sleep(20 * time.Microsecond)
			}
		}
		if stall != "" {
			break
		}
		worstRT = max(worstRT, time.Since(st))
		if rel := atomic.LoadInt64(&f.releases); rel > sets {
			t.Errorf("after %d Sets, %d waiters released (a Set taken twice)", sets, rel)
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	atomic.StoreInt32(&f.stop, 1)
	for _, c := range kids {
		c.wait(20 * time.Second)
	}
	rel := atomic.LoadInt64(&f.releases)
	t.Logf("%v procs=%d gor=%d spin=%d pin=%v: %d Sets, %d releases, worst Set->release %v, worst timeout lateness %v",
		kind, procs, gor, spin, pin, sets, rel, worstRT, time.Duration(atomic.LoadInt64(&f.late)))
	if stall != "" {
		t.Fatal(stall)
	}
	if rel != sets {
		t.Errorf("%d Sets, %d releases", sets, rel)
	}
}

func TestBreak9OnceEFDAuto(t *testing.T) {
	b9Once(t, EventFDAuto, 3, 2, -1, false, time.Second)
}

func TestBreak9OnceEFDAutoBigSpin(t *testing.T) {
	b9Once(t, EventFDAuto, 3, 2, 1<<16, false, time.Second)
}

func TestBreak9OnceBusyAuto(t *testing.T) {
	b9Once(t, EventBusyAuto, 3, 2, -1, false, time.Second)
}

func TestBreak9OnceBusyAutoNoSpin(t *testing.T) {
	b9Once(t, EventBusyAuto, 2, 2, 0, false, 700*time.Millisecond)
}

func TestBreak9OnceBusyAutoPinned(t *testing.T) {
	b9Once(t, EventBusyAuto, 2, 2, -1, true, 700*time.Millisecond)
}
