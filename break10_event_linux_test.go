package shm

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// b10Ev is the shared page of the break10 event tests.
type b10Ev struct {
	auto   AutoEvent
	busy   BusyAutoEvent
	man    ManualEvent
	bman   BusyManualEvent
	stop   int32
	ready  int32
	takes  int64 // auto: Waits that returned nil
	bad    int32
	round  int32 // manual: the round the setter is in
	waitin int32 // manual: waiters in this round's Wait (announced)
	rel    int32 // manual: waiters released this round
	_      int32
}

func openB10Ev(name string) (*Segment, *b10Ev, error) {
	seg, err := Open(name)
	if err != nil {
		return nil, nil, err
	}
	a, err := View[b10Ev](seg.Bytes())
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, a, nil
}

func (a *b10Ev) ev(kind string) Event {
	switch kind {
	case "auto":
		return &a.auto
	case "busy":
		return &a.busy
	case "man":
		return &a.man
	}
	return &a.bman
}

func init() {
	// args: name, kind, seed. Auto waiters: 2 goroutines with short
	// timeouts or cancels (spinners, giving up as Sets land) and 1 with
	// long timeouts (a registered sleeper in the count).
	registerChild("brk10-evauto", func(args []string) error {
		seg, a, err := openB10Ev(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		ev := a.ev(args[1])
		seed := atoi(args[2])
		atomic.AddInt32(&a.ready, 1)
		var wg sync.WaitGroup
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(seed), uint64(g)))
				for atomic.LoadInt32(&a.stop) == 0 {
					var err error
					switch {
					case g == 2:
						err = ev.WaitTimeout(time.Duration(rng.Int64N(int64(60 * time.Millisecond))))
					case rng.IntN(2) == 0:
						err = ev.WaitTimeout(time.Duration(rng.Int64N(int64(500 * time.Microsecond))))
					default:
						ctx, cancel := context.WithCancel(context.Background())
						time.AfterFunc(time.Duration(rng.Int64N(int64(2*time.Millisecond))), cancel)
						err = ev.WaitContext(ctx)
						cancel()
					}
					if err == nil {
						atomic.AddInt64(&a.takes, 1)
					} else if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.Canceled) {
						atomic.AddInt32(&a.bad, 1)
					}
				}
			}()
		}
		wg.Wait()
		return nil
	})
	// args: name, kind. Manual waiters: each round, announce and Wait.
	registerChild("brk10-evman", func(args []string) error {
		seg, a, err := openB10Ev(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		ev := a.ev(args[1])
		atomic.AddInt32(&a.ready, 1)
		for r := int32(1); ; r++ {
			for atomic.LoadInt32(&a.round) < r {
				if atomic.LoadInt32(&a.stop) != 0 {
					return nil
				}
				time.Sleep(100 * time.Microsecond)
			}
			atomic.AddInt32(&a.waitin, 1)
			if err := ev.WaitTimeout(5 * time.Second); err != nil {
				atomic.AddInt32(&a.bad, 1)
				return err
			}
			atomic.AddInt32(&a.rel, 1)
		}
	})
}

func newB10Ev(t *testing.T) (string, *b10Ev) {
	t.Helper()
	name := testName(t)
	seg, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	a, err := View[b10Ev](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return name, a
}

// TestBreak10AutoExactlyOnce: 3 waiter processes (two spinning with
// 0-0.5 ms timeouts or 0-2 ms cancels, one registered sleeper with
// 0-60 ms timeouts each) on an AutoEvent and a BusyAutoEvent; the parent
// Sets, waits until the Set is taken, Sets again. Every Set is taken by
// exactly one Wait that returns nil (none lost to a waiter that gave up,
// none doubled), the AutoEvent's waiter count returns to 0, and a Set is
// never left untaken for long with waiters around.
func TestBreak10AutoExactlyOnce(t *testing.T) {
	for _, kind := range []string{"auto", "busy"} {
		t.Run(kind, func(t *testing.T) {
			name, a := newB10Ev(t)
			ev := a.ev(kind)
			seed := int(time.Now().UnixNano() & 0xffffff)
			var cs []*child
			for i := 0; i < 3; i++ {
				cs = append(cs, startChild(t, "brk10-evauto", name, kind, strconv.Itoa(seed+i)))
			}
			waitCount(t, &a.ready, 3, 20*time.Second)
			isSet := func() bool { return atomic.LoadUint32(&a.auto.state)&evSet != 0 }
			if kind == "busy" {
				isSet = a.busy.IsSet
			}
			sets := int64(0)
			var worst time.Duration
			end := time.Now().Add(time.Second)
			for time.Now().Before(end) {
				ev.Set()
				sets++
				t0 := time.Now()
				for isSet() {
					if time.Since(t0) > 3*time.Second {
						t.Fatalf("Set %d not taken within 3 s (word %#x)", sets, atomic.LoadUint32(&a.auto.state))
					}
					time.Sleep(20 * time.Microsecond)
				}
				worst = max(worst, time.Since(t0))
				if sets%4 == 0 {
					time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
				}
			}
			atomic.StoreInt32(&a.stop, 1)
			for _, c := range cs {
				c.wait(20 * time.Second)
			}
			w := atomic.LoadUint32(&a.auto.state)
			if kind == "busy" {
				w = atomic.LoadUint32(&a.busy.state)
			}
			t.Logf("%d Sets, %d takes, worst Set->taken %v, word at the end %#x", sets, a.takes, worst, w)
			if a.bad != 0 {
				t.Errorf("%d waits failed", a.bad)
			}
			if a.takes != sets {
				t.Errorf("%d Sets taken %d times", sets, a.takes)
			}
			if w != 0 {
				t.Errorf("word %#x at the end, want 0 (no waiter, not set)", w)
			}
		})
	}
}

// TestBreak10ManualSetReset: 4 waiter processes in Wait (spinning with
// add-of-0 polls, or registered asleep), then Set and an immediate Reset:
// every one of them returns; 100 rounds. The generation counts exactly
// the Sets: the polls never changed the word.
func TestBreak10ManualSetReset(t *testing.T) {
	for _, kind := range []string{"man", "bman"} {
		t.Run(kind, func(t *testing.T) {
			name, a := newB10Ev(t)
			ev := a.ev(kind)
			const k = 4
			var cs []*child
			for i := 0; i < k; i++ {
				cs = append(cs, startChild(t, "brk10-evman", name, kind))
			}
			waitCount(t, &a.ready, k, 20*time.Second)
			const rounds = 100
			var worst time.Duration
			for r := int32(1); r <= rounds; r++ {
				atomic.StoreInt32(&a.round, r)
				waitCount(t, &a.waitin, k*r, 10*time.Second)
				// Let them get into Wait: sometimes while they spin,
				// sometimes once they sleep.
				if r%3 == 0 {
					time.Sleep(5 * time.Millisecond)
				} else {
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				}
				t0 := time.Now()
				ev.Set()
				ev.Reset()
				dl := time.Now().Add(6 * time.Second)
				for atomic.LoadInt32(&a.rel) < k*r {
					if time.Now().After(dl) || atomic.LoadInt32(&a.bad) != 0 {
						t.Fatalf("round %d: %d of %d waiters released by Set+Reset", r, atomic.LoadInt32(&a.rel)-k*(r-1), k)
					}
					time.Sleep(20 * time.Microsecond)
				}
				worst = max(worst, time.Since(t0))
			}
			atomic.StoreInt32(&a.stop, 1)
			for _, c := range cs {
				c.wait(20 * time.Second)
			}
			w := atomic.LoadUint32(&a.man.state)
			if kind == "bman" {
				w = atomic.LoadUint32(&a.bman.state)
			}
			t.Logf("%d rounds, worst Set->all released %v, word %#x (generation %d), registered waiters %d", rounds, worst, w, w/evGen, a.man.waiters)
			if w != rounds*evGen {
				t.Errorf("word %#x after %d Set+Reset, want %#x", w, rounds, rounds*evGen)
			}
			if a.man.waiters != 0 {
				t.Errorf("%d waiters still registered", a.man.waiters)
			}
		})
	}
}
