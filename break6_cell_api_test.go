package shm

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Round 6, in one process: a Cell's Load against a writer storing flat
// out (the version it returns is the one of the value it copied), and a
// hostile peer's garbage in the cell's words.

// TestBreak6CellLoadVersion: Load returns the value's version. A writer
// stores value v with version v; a reader must never get a version other
// than the value's (an older version with a newer value lets a later Load
// return an older value than an earlier one, and Wait(v) wake at once).
func TestBreak6CellLoadVersion(t *testing.T) {
	mem := b6Aligned(CellSize(64))
	c, err := FormatCell(mem, 64)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Writer()
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var v [8]uint64
		for n := uint64(1); !stop.Load(); n++ {
			for i := range v {
				v[i] = n
			}
			StoreValue(w, &v)
		}
	}()
	var bad, loads int
	var first string
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && bad == 0 {
		var v [8]uint64
		for i := 0; i < 1000; i++ {
			ver, err := LoadValue(c, &v)
			if err != nil {
				t.Fatal(err)
			}
			loads++
			for k := range v {
				if v[k] != v[0] {
					t.Fatalf("torn: %v", v)
				}
			}
			if v[0] != ver {
				if bad == 0 {
					first = "version " + itoa(ver) + " with the value of version " + itoa(v[0])
				}
				bad++
			}
			if i%64 == 0 {
				runtime.Gosched() // let the reader be descheduled between its loads
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad > 0 {
		t.Fatalf("%d of %d loads returned a version not the value's; first: %s", bad, loads, first)
	}
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; v > 0; v /= 10 {
		i--
		b[i] = byte('0' + v%10)
	}
	return string(b[i:])
}

// TestBreak6CellDamage: garbage in version, writer, wake and the copies'
// sequences. Load either returns a whole value or ErrCorrupt, quickly;
// waits end within their bound; a successor writer stores and readers get
// its value.
func TestBreak6CellDamage(t *testing.T) {
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 66))
	const size = 40
	for it := 0; it < 300; it++ {
		mem := b6Aligned(CellSize(size))
		c, err := FormatCell(mem, size)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := c.Writer()
		val := make([]byte, size)
		for i, n := 0, rnd.IntN(5); i < n; i++ {
			for k := range val {
				val[k] = byte(i + 1)
			}
			w.Store(val)
		}
		offs := []int{cOffVersion, cOffWriter, cOffWake, cOffCopies, cOffCopies + cellStride(size)}
		for k := 1 + rnd.IntN(3); k > 0; k-- {
			off := offs[rnd.IntN(len(offs))]
			p := (*uint64)(unsafe.Pointer(&mem[off]))
			switch rnd.IntN(5) {
			case 0:
				atomic.StoreUint64(p, rnd.Uint64())
			case 1:
				atomic.StoreUint64(p, atomic.LoadUint64(p)|1)
			case 2:
				atomic.StoreUint64(p, ^uint64(0))
			case 3:
				atomic.StoreUint64(p, 0)
			case 4:
				atomic.AddUint64(p, uint64(rnd.IntN(5)))
			}
		}
		what := "iteration " + itoa(uint64(it))
		c2, err := AttachCell(mem)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, size)
		b6Bounded(t, what+": load", 5*time.Second, func() error {
			_, err := c2.Load(dst)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: load: %v", what, err)
			}
			return nil
		})
		b6Bounded(t, what+": wait", 5*time.Second, func() error {
			v, _ := c2.Version()
			for _, d := range []time.Duration{1, 10 * time.Microsecond, 2 * time.Millisecond} {
				t0 := time.Now()
				_, err := c2.WaitTimeout(v, d)
				if el := time.Since(t0); el > d+2*time.Second {
					t.Errorf("%s: WaitTimeout(%v) took %v", what, d, el)
				}
				if err != nil && !errors.Is(err, ErrTimeout) {
					t.Errorf("%s: WaitTimeout: %v", what, err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			if _, err := c2.WaitContext(ctx, v); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: WaitContext: %v", what, err)
			}
			_, err := c2.Stats()
			return err
		})
		b6Bounded(t, what+": successor", 5*time.Second, func() error {
			atomic.StoreUint64(c.writer, 0)
			w2, err := c2.Writer()
			if err != nil {
				t.Errorf("%s: successor: %v", what, err)
				return nil
			}
			defer w2.Close()
			v0, _ := c2.Version()
			woke := make(chan error, 1)
			go func() {
				_, err := c2.WaitTimeout(v0, 2*time.Second)
				woke <- err
			}()
			time.Sleep(time.Duration(rnd.IntN(2)) * time.Millisecond)
			for k := range val {
				val[k] = 0xee
			}
			if err := w2.Store(val); err != nil {
				t.Errorf("%s: successor's store: %v", what, err)
			}
			if _, err := c2.Load(dst); err != nil || dst[0] != 0xee || dst[size-1] != 0xee {
				t.Errorf("%s: after the successor's store: %v %x", what, err, dst)
			}
			if err := <-woke; err != nil {
				t.Errorf("%s: a wait across the successor's store: %v", what, err)
			}
			return nil
		})
	}
}
