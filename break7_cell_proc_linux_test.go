//go:build linux

package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Round 7: Cell.Load against a writer storing flat out in another process,
// with a large value (16 KiB: a copy long enough to be preempted in the
// middle, and killed writers die in the middle of one), more reader
// processes than CPUs, readers that yield and sleep between loads and
// between two loads of the same version, small values too (version and
// copy change fastest). Every word of a value is the version that stored
// it; Load must return that version, never a torn value, never an older
// version than one returned before.

type b7CellFlags struct {
	ready int32
	final int32
	fver  uint64
	loads int64
}

func b7OpenCell(name string, idx int) (*Managed, *Cell, *b7CellFlags, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := m.Cell(idx)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	f, err := View[b7CellFlags](m.Data())
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return m, c, f, nil
}

func init() {
	// args: name, cell index, mode (run, final), seed.
	registerChild("b7-cellw", func(args []string) error {
		idx, _ := strconv.Atoi(args[1])
		m, c, f, err := b7OpenCell(args[0], idx)
		if err != nil {
			return err
		}
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
		buf := make([]byte, c.Size())
		fill := func(v uint64) {
			for i := 0; i+8 <= len(buf); i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], v)
			}
		}
		n := 2000 + rnd.IntN(2000)
		for i := 0; args[2] == "run" || i < n; i++ {
			v, _ := c.Version()
			fill(v + 1)
			if err := w.Store(buf); err != nil {
				return err
			}
			if rnd.IntN(1000) == 0 {
				time.Sleep(time.Duration(rnd.IntN(200)) * time.Microsecond)
			}
		}
		v, _ := c.Version()
		atomic.StoreUint64(&f.fver, v)
		atomic.StoreInt32(&f.final, 1)
		w.Close()
		m.Close()
		return nil
	})

	// args: name, cell index, seed.
	registerChild("b7-cellr", func(args []string) error {
		idx, _ := strconv.Atoi(args[1])
		m, c, f, err := b7OpenCell(args[0], idx)
		if err != nil {
			return err
		}
		defer m.Close()
		seed, _ := strconv.Atoi(args[2])
		rnd := rand.New(rand.NewPCG(uint64(seed), 77))
		buf := make([]byte, c.Size())
		atomic.AddInt32(&f.ready, 1)
		var prev uint64
		loads := 0
		for deadline := time.Now().Add(40 * time.Second); ; loads++ {
			if time.Now().After(deadline) {
				return errors.New("not done")
			}
			done := atomic.LoadInt32(&f.final) == 1
			ver, err := c.Load(buf)
			if err != nil {
				return err
			}
			for i := 0; i+8 <= len(buf); i += 8 {
				if x := binary.LittleEndian.Uint64(buf[i:]); x != ver {
					return fmt.Errorf("Load returned version %d, word %d of the value is %d (word 0 %d); previous %d", ver, i/8, x, binary.LittleEndian.Uint64(buf), prev)
				}
			}
			if ver < prev {
				return fmt.Errorf("version went back from %d to %d", prev, ver)
			}
			prev = ver
			if done {
				if fv := atomic.LoadUint64(&f.fver); ver != fv {
					return fmt.Errorf("after the final store: version %d, want %d", ver, fv)
				}
				atomic.AddInt64(&f.loads, int64(loads))
				return nil
			}
			switch rnd.IntN(8) {
			case 0:
				runtime.Gosched()
			case 1:
				time.Sleep(time.Duration(rnd.IntN(5)) * time.Microsecond)
			}
		}
	})
}

func TestBreak7CellProcLoad(t *testing.T) {
	b6FastExit(t)
	rounds := 6
	if os.Getenv("SHM_TORTURE") != "" {
		rounds = 60
	}
	for i, size := range []int{8, 16 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b7CellFlags{}))}
			cfg.AddCell(size)
			m, err := cfg.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			f, err := View[b7CellFlags](m.Data())
			if err != nil {
				t.Fatal(err)
			}
			_ = i
			const readers = 5
			var rs []*child
			for k := 0; k < readers; k++ {
				rs = append(rs, startChild(t, "b7-cellr", cfg.Name, "0", strconv.Itoa(rand.IntN(1<<30))))
			}
			for end := time.Now().Add(20 * time.Second); atomic.LoadInt32(&f.ready) < readers; {
				if time.Now().After(end) {
					t.Fatal("readers not ready")
				}
				time.Sleep(time.Millisecond)
			}
			for k := 0; k < rounds; k++ {
				c := startChild(t, "b7-cellw", cfg.Name, "0", "run", strconv.Itoa(rand.IntN(1<<30)))
				time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
				c.kill()
				if c.err != nil && !c.killed {
					t.Fatalf("writer: %v\n%s", c.err, c.output())
				}
			}
			startChild(t, "b7-cellw", cfg.Name, "0", "final", strconv.Itoa(rand.IntN(1<<30))).wait(20 * time.Second)
			for _, r := range rs {
				r.wait(60 * time.Second)
			}
			v, _ := func() (uint64, error) { c, _ := m.Cell(0); return c.Version() }()
			t.Logf("final version %d, %d loads", v, atomic.LoadInt64(&f.loads))
		})
	}
}
