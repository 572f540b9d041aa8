//go:build linux

package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Round 6: a latest-value cell across processes. Eight reader processes
// load (bytes and typed) and wait (untimed, tiny timeouts, cancelled
// contexts) while writers in children store a counter in every word of
// the value, each value equal to the version it makes; writers are
// SIGKILLed at random, or die on purpose in the middle of a store (odd
// sequence, half the copy written); successors go on. No reader may ever
// see a value whose words differ, or differ from its version, or a
// version going back; an untimed Wait must end once a successor stores.

const b6CellWords = 32

type b6CellVal [b6CellWords]uint64

type b6CellFlags struct {
	ready   int32
	final   int32
	fver    uint64 // the final version
	slowest int64  // the slowest Store, ns
	slowLd  int64  // the slowest Load, ns
	loads   int64
}

func b6Max(p *int64, d int64) {
	for {
		s := atomic.LoadInt64(p)
		if d <= s || atomic.CompareAndSwapInt64(p, s, d) {
			return
		}
	}
}

func b6OpenCell(name string) (*Managed, *Cell, *b6CellFlags, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := m.Cell(0)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	f, err := View[b6CellFlags](m.Data())
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return m, c, f, nil
}

func b6CellCheck(v *b6CellVal, ver uint64) error {
	for i := range v {
		if v[i] != v[0] {
			return fmt.Errorf("torn value: version %d: word %d is %d, word 0 %d (words %v)", ver, i, v[i], v[0], v[:])
		}
	}
	if v[0] != ver {
		return fmt.Errorf("Load returned version %d with the value of version %d", ver, v[0])
	}
	return nil
}

func init() {
	// args: name, mode (run, final, die), count, seed.
	registerChild("b6-cellw", func(args []string) error {
		m, c, f, err := b6OpenCell(args[0])
		if err != nil {
			return err
		}
		count, _ := strconv.Atoi(args[2])
		seed, _ := strconv.Atoi(args[3])
		rnd := rand.New(rand.NewPCG(uint64(seed), 7))
		var w *CellWriter
		for end := time.Now().Add(5 * time.Second); ; {
			w, err = c.Writer()
			if err == nil {
				break
			}
			if !errors.Is(err, ErrInUse) || time.Now().After(end) {
				return fmt.Errorf("writer: %w", err)
			}
			time.Sleep(time.Millisecond)
		}
		var val b6CellVal
		ver, err := LoadValue(c, &val)
		if err != nil {
			return err
		}
		if err := b6CellCheck(&val, ver); err != nil {
			return fmt.Errorf("successor's first load: %v", err)
		}
		pace := rnd.IntN(3)
		buf := make([]byte, c.Size())
		for i := 0; args[1] == "run" || i < count; i++ {
			ver++
			for k := range val {
				val[k] = ver
			}
			t0 := time.Now()
			if rnd.IntN(2) == 0 {
				err = StoreValue(w, &val)
			} else {
				copy(buf, unsafe.Slice((*byte)(unsafe.Pointer(&val)), len(buf)))
				err = w.Store(buf)
			}
			if err != nil {
				return err
			}
			b6Max(&f.slowest, int64(time.Since(t0)))
			switch {
			case pace == 1 && rnd.IntN(32) == 0:
				time.Sleep(time.Duration(rnd.IntN(300)) * time.Microsecond)
			case pace == 2:
				for t1 := time.Now(); time.Since(t1) < time.Duration(rnd.IntN(20))*time.Microsecond; {
				}
			}
		}
		switch args[1] {
		case "final":
			atomic.StoreUint64(&f.fver, ver)
			atomic.StoreInt32(&f.final, 1)
			w.Close()
			m.Close()
			return nil
		case "die":
			// The store of ver+1, as store does it, up to half the copy.
			v := atomic.LoadUint64(c.version)
			p := c.seq(v + 1)
			s := atomic.LoadUint64(p)
			atomic.StoreUint64(p, (s+1)|1)
			for k := range val {
				val[k] = v + 1
			}
			copyToShared(c.mem, c.off(v+1), unsafe.Slice((*byte)(unsafe.Pointer(&val)), c.Size()/2))
			os.Exit(0)
		}
		return fmt.Errorf("mode %q", args[1])
	})

	// args: name, seed, waiter. Loads (or, a waiter, waits untimed) until
	// the final version.
	registerChild("b6-cellr", func(args []string) error {
		m, c, f, err := b6OpenCell(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		seed, _ := strconv.Atoi(args[1])
		rnd := rand.New(rand.NewPCG(uint64(seed), 77))
		waiter := args[2] == "1"
		atomic.AddInt32(&f.ready, 1)
		var val b6CellVal
		buf := make([]byte, c.Size()+8)
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		seen := uint64(0)
		maxVal := uint64(0) // the newest value loaded
		var mismatch error  // the first version/value mismatch
		deadline := time.Now().Add(30 * time.Second)
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("not done: seen %d, final %d %d", seen, atomic.LoadInt32(&f.final), atomic.LoadUint64(&f.fver))
			}
			if atomic.LoadInt32(&f.final) == 1 && seen == atomic.LoadUint64(&f.fver) {
				return mismatch
			}
			var ver uint64
			t0 := time.Now()
			switch k := rnd.IntN(8); {
			case waiter:
				// Untimed, bounded by the test's own clock: every store, and
				// every successor, must wake it.
				done := make(chan struct{})
				go func() {
					select {
					case <-done:
					case <-time.After(15 * time.Second):
						fmt.Printf("Wait(%d) still asleep after 15s; version %d\n", seen, atomic.LoadUint64(c.version))
						os.Exit(1)
					}
				}()
				if atomic.LoadInt32(&f.final) == 1 {
					close(done)
					ver, err = c.Version()
					break
				}
				ver, err = c.Wait(seen)
				close(done)
				if err == nil && ver == seen {
					return fmt.Errorf("Wait(%d) returned %d", seen, ver)
				}
			case k == 0:
				d := []time.Duration{1, time.Microsecond, 100 * time.Microsecond, time.Millisecond}[rnd.IntN(4)]
				ver, err = c.WaitTimeout(seen, d)
				if errors.Is(err, ErrTimeout) {
					err = nil
				} else if err == nil && ver == seen {
					return fmt.Errorf("WaitTimeout(%d) returned %d", seen, ver)
				}
			case k == 1:
				if _, err := c.WaitContext(cancelled, seen); !errors.Is(err, context.Canceled) {
					return fmt.Errorf("WaitContext, cancelled: %v", err)
				}
				continue
			default:
				if k < 5 {
					ver, err = LoadValue(c, &val)
				} else if ver, err = c.Load(buf); err == nil {
					copy(unsafe.Slice((*byte)(unsafe.Pointer(&val)), c.Size()), buf)
				}
				if err != nil {
					break
				}
				if cerr := b6CellCheck(&val, ver); cerr != nil {
					if val[0] == val[len(val)-1] && mismatch == nil {
						mismatch = cerr // reported at the end, after the value order check
					} else if val[0] != val[len(val)-1] {
						return cerr
					}
				}
				if val[0] < maxVal {
					return fmt.Errorf("the value went back from %d to %d (version %d); before: %v", maxVal, val[0], ver, mismatch)
				}
				maxVal = val[0]
			}
			b6Max(&f.slowLd, int64(time.Since(t0)))
			atomic.AddInt64(&f.loads, 1)
			if err != nil {
				return err
			}
			if ver < seen {
				return fmt.Errorf("version went back from %d to %d", seen, ver)
			}
			seen = ver
		}
	})
}

func TestBreak6CellProcTorture(t *testing.T) {
	b6FastExit(t)
	rounds := 16
	if os.Getenv("SHM_TORTURE") != "" {
		rounds = 300
	}
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b6CellFlags{}))}
	cfg.AddCell(b6CellWords * 8)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Cell(0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := View[b6CellFlags](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	const readers = 8
	var rs []*child
	for i := 0; i < readers; i++ {
		waiter := "0"
		if i < 2 {
			waiter = "1"
		}
		rs = append(rs, startChild(t, "b6-cellr", cfg.Name, strconv.Itoa(rand.IntN(1<<30)), waiter))
	}
	for end := time.Now().Add(20 * time.Second); atomic.LoadInt32(&f.ready) < readers; {
		if time.Now().After(end) {
			t.Fatal("readers not ready")
		}
		time.Sleep(time.Millisecond)
	}
	modes := []string{"run", "run", "die"}
	for i := 0; i < rounds; i++ {
		mode := modes[rand.IntN(len(modes))]
		w := startChild(t, "b6-cellw", cfg.Name, mode, strconv.Itoa(rand.IntN(2000)), strconv.Itoa(rand.IntN(1<<30)))
		if mode == "run" {
			time.Sleep(time.Duration(10+rand.IntN(80)) * time.Millisecond)
			w.kill()
			if s := w.output(); s != "" {
				t.Fatalf("killed writer said: %s", s)
			}
		} else {
			w.wait(20 * time.Second)
		}
	}
	startChild(t, "b6-cellw", cfg.Name, "final", "100", "1").wait(20 * time.Second)
	for _, r := range rs {
		r.wait(40 * time.Second)
	}
	var val b6CellVal
	ver, err := LoadValue(c, &val)
	if err != nil {
		t.Fatal(err)
	}
	if err := b6CellCheck(&val, ver); err != nil || ver != f.fver {
		t.Fatalf("final: version %d (writer's %d): %v", ver, f.fver, err)
	}
	t.Logf("version %d, %d loads; slowest store %v, slowest load or wait %v", ver, f.loads, time.Duration(f.slowest), time.Duration(f.slowLd))
	if time.Duration(f.slowest) > time.Second {
		t.Errorf("a store took %v", time.Duration(f.slowest))
	}
}
