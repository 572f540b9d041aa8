//go:build linux

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
	"unsafe"
)

func init() {
	// args: name, goroutines, spin: lock with tiny timeouts / contexts
	// cancelled during the backoff spin, check mutual exclusion.
	registerChild("b9-mu-worker", func(args []string) error {
		m, f, err := b9Open(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		if s := atoi(args[2]); s >= 0 {
			SetSpin(s)
		}
		mu, err := m.Mutex(0)
		if err != nil {
			return err
		}
		n := atoi(args[1])
		var wg sync.WaitGroup
		atomic.AddInt32(&f.ready, 1)
		for g := 0; g < n; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
				for atomic.LoadInt32(&f.stop) == 0 {
					var err error
					var limit time.Duration
					start := time.Now()
					switch r.IntN(5) {
					case 0:
						err = mu.LockTimeout(0)
					case 1:
						limit = time.Microsecond
						err = mu.LockTimeout(limit)
					case 2:
						limit = time.Duration(r.IntN(100)) * time.Microsecond
						err = mu.LockTimeout(limit)
					case 3:
						limit = time.Duration(r.IntN(100)) * time.Microsecond
						ctx, cancel := context.WithCancel(context.Background())
						tm := time.AfterFunc(limit, cancel)
						err = mu.LockContext(ctx)
						tm.Stop()
						cancel()
					case 4:
						mu.Lock()
					}
					if err != nil && !errors.Is(err, ErrOwnerDead) {
						if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.Canceled) {
							atomic.AddInt32(&f.errs, 1)
							return
						}
						b9Max(&f.late, int64(time.Since(start)-limit))
						continue
					}
					if atomic.AddInt32(&f.inCS, 1) != 1 {
						atomic.AddInt32(&f.viol, 1)
					}
					for i := r.IntN(50); i > 0; i-- {
						spinPause()
					}
					atomic.AddInt64(&f.count, 1)
					atomic.AddInt32(&f.inCS, -1)
					mu.Unlock()
				}
			}(g)
		}
		wg.Wait()
		return nil
	})
	// args: name: lock, say so, hold until killed.
	registerChild("b9-mu-holder", func(args []string) error {
		m, f, err := b9Open(args[0])
		if err != nil {
			return err
		}
		mu, err := m.Mutex(0)
		if err != nil {
			return err
		}
		mu.Lock()
		atomic.AddInt32(&f.ready, 1)
		select {}
	})
}

func b9MutexSeg(t *testing.T) (string, *Managed, *Mutex, *b9Flags) {
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b9Flags{}))}
	cfg.AddLock(LockMutex, 0, 8)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f, err := View[b9Flags](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	mu, err := m.Mutex(0)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Name, m, mu, f
}

func TestBreak9MutexTinyTimeouts(t *testing.T) {
	name, _, _, f := b9MutexSeg(t)
	var kids []*child
	for i := 0; i < 3; i++ {
		kids = append(kids, startChild(t, "b9-mu-worker", name, "2", "-1"))
	}
	time.Sleep(time.Second)
	atomic.StoreInt32(&f.stop, 1)
	for _, c := range kids {
		c.wait(20 * time.Second)
	}
	t.Logf("%d critical sections, %d violations, %d errors, worst lateness %v", f.count, f.viol, f.errs, time.Duration(f.late))
	if f.viol != 0 || f.errs != 0 {
		t.Errorf("violations %d errors %d", f.viol, f.errs)
	}
	if f.count == 0 {
		t.Error("no progress")
	}
}

// TestBreak9MutexTakeoverWhileSpinning: the holder is SIGKILLed while
// waiters in other processes poll with backoff; one must take over
// (ErrOwnerDead) within about livenessSlice of waiting.
func TestBreak9MutexTakeoverWhileSpinning(t *testing.T) {
	name, _, mu, f := b9MutexSeg(t)
	var worst time.Duration
	for round := 0; round < 5; round++ {
		atomic.StoreInt32(&f.ready, 0)
		h := startChild(t, "b9-mu-holder", name)
		for end := time.Now().Add(10 * time.Second); atomic.LoadInt32(&f.ready) == 0; {
			if time.Now().After(end) {
				t.Fatal("holder not ready")
			}
			time.Sleep(time.Millisecond)
		}
		var wg sync.WaitGroup
		var got atomic.Int32
		var killed time.Time
		var killedMu sync.Mutex
		took := make(chan time.Duration, 4)
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					err := mu.LockTimeout(time.Duration(rand.IntN(3000)) * time.Microsecond)
					if err == nil || errors.Is(err, ErrOwnerDead) {
						killedMu.Lock()
						k := killed
						killedMu.Unlock()
						if errors.Is(err, ErrOwnerDead) {
							took <- time.Since(k)
						}
						got.Add(1)
						mu.Unlock()
						return
					}
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
		killedMu.Lock()
		killed = time.Now()
		killedMu.Unlock()
		h.kill()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: nobody took over a dead holder's mutex within 5 s", round)
		}
		d := <-took
		worst = max(worst, d)
	}
	t.Logf("worst takeover after SIGKILL: %v", worst)
	if worst > 200*time.Millisecond {
		t.Errorf("takeover took %v", worst)
	}
}

// TestBreak9MutexBigSpinShortTimeout: SetSpin(1<<24) and a held lock:
// LockTimeout / LockContext must return near their deadline.
func TestBreak9MutexBigSpinShortTimeout(t *testing.T) {
	_, _, mu, _ := b9MutexSeg(t)
	old := SetSpin(1 << 24)
	defer SetSpin(old)
	if fullSpin() == 0 {
		t.Skip("no spinning")
	}
	mu.Lock()
	defer mu.Unlock()
	var worst time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, d := range []time.Duration{0, time.Microsecond, 50 * time.Microsecond, time.Millisecond} {
			for i := 0; i < 5; i++ {
				SetSpin(1 << 24)
				st := time.Now()
				err := mu.LockTimeout(d)
				if !errors.Is(err, ErrTimeout) {
					t.Errorf("LockTimeout(%v) = %v", d, err)
				}
				worst = max(worst, time.Since(st)-d)
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(d, cancel)
				st = time.Now()
				err = mu.LockContext(ctx)
				if !errors.Is(err, context.Canceled) {
					t.Errorf("LockContext = %v", err)
				}
				worst = max(worst, time.Since(st)-d)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("hang")
	}
	t.Logf("SetSpin(1<<24): worst lateness %v", worst)
	if worst > 20*time.Millisecond {
		t.Errorf("worst lateness %v", worst)
	}
	_ = strconv.Itoa
}
