//go:build linux

package shm

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Round 6: the writer's place across processes (a live writer refused in
// another process, a dead one's taken), and readers asleep in other
// processes while the writer dies in the middle of an append and a new one
// appears: they must wake with the loss, then with the next message.

type b6WakeFlags struct {
	holding int32 // the holder took the writers (and opened a claim)
	asleep  int32 // readers about to sleep
	phase   int32 // 1: readers expect the loss; 2: then a message
	woke    [8]int64
	lost    [8]int64
	got     [8]int64
}

func newB6Wake(t *testing.T) (string, *Managed, *Log, *Cell, *b6WakeFlags) {
	t.Helper()
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b6WakeFlags{}))}
	cfg.AddLog(512, 0)
	cfg.AddCell(16)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l, _ := m.Log(0)
	c, _ := m.Cell(0)
	f, err := View[b6WakeFlags](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Name, m, l, c, f
}

func init() {
	// args: name, claim (1: open a claim and keep it). Takes the log's and
	// the cell's writers and holds them until killed.
	registerChild("b6-hold", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		l, _ := m.Log(0)
		c, _ := m.Cell(0)
		f, _ := View[b6WakeFlags](m.Data())
		w, err := l.Writer()
		if err != nil {
			return err
		}
		if _, err := c.Writer(); err != nil {
			return err
		}
		if args[1] == "1" {
			b, err := w.Claim(40)
			if err != nil {
				return err
			}
			copy(b, "never committed")
		}
		atomic.StoreInt32(&f.holding, 1)
		select {}
	})

	// args: name, id. Reads with an untimed Receive: first a loss, then a
	// message; stamps when each came.
	registerChild("b6-sleeper", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		id, _ := strconv.Atoi(args[1])
		l, _ := m.Log(0)
		f, _ := View[b6WakeFlags](m.Data())
		r, err := l.Reader(LogNext)
		if err != nil {
			return err
		}
		atomic.AddInt32(&f.asleep, 1)
		_, err = r.Receive()
		atomic.StoreInt64(&f.woke[id], time.Now().UnixNano())
		if atomic.LoadInt32(&f.phase) != 1 {
			return fmt.Errorf("woke before the successor: %v", err)
		}
		var le *LostError
		if !errors.As(err, &le) || le.Count != 1 {
			return fmt.Errorf("the dead writer's claim: %v", err)
		}
		atomic.StoreInt64(&f.lost[id], int64(le.Seq)+1)
		msg, err := r.Receive()
		if err != nil {
			return fmt.Errorf("after the loss: %v", err)
		}
		if string(msg.Bytes()) != "after" || r.Check(msg) != nil {
			return fmt.Errorf("after the loss: %q", msg.Bytes())
		}
		atomic.StoreInt64(&f.got[id], time.Now().UnixNano())
		return nil
	})
}

func TestBreak6LogWriterAcrossProcs(t *testing.T) {
	b6FastExit(t)
	name, _, l, c, f := newB6Wake(t)
	h := startChild(t, "b6-hold", name, "0")
	if !b6Until32(&f.holding, 1, 20*time.Second) {
		t.Fatalf("holder not holding: %s", h.output())
	}
	if _, err := l.Writer(); !errors.Is(err, ErrInUse) {
		t.Fatalf("log writer while another process's is live: %v", err)
	}
	if _, err := c.Writer(); !errors.Is(err, ErrInUse) {
		t.Fatalf("cell writer while another process's is live: %v", err)
	}
	h.kill()
	w, err := l.Writer()
	if err != nil {
		t.Fatalf("log writer after the holder died: %v", err)
	}
	if _, err := l.Writer(); !errors.Is(err, ErrInUse) {
		t.Fatalf("a second writer in this process: %v", err)
	}
	cw, err := c.Writer()
	if err != nil {
		t.Fatalf("cell writer after the holder died: %v", err)
	}
	w.Close()
	cw.Close()
	st, _ := l.Stats()
	if st.Writer.PID != 0 {
		t.Fatalf("after Close, the writer is %+v", st.Writer)
	}
}

func b6Until32(p *int32, want int32, d time.Duration) bool {
	for end := time.Now().Add(d); atomic.LoadInt32(p) < want; {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

func TestBreak6LogSleepersWriterDies(t *testing.T) {
	b6FastExit(t)
	name, _, l, _, f := newB6Wake(t)
	const n = 3
	var rs []*child
	for i := 0; i < n; i++ {
		rs = append(rs, startChild(t, "b6-sleeper", name, strconv.Itoa(i)))
	}
	if !b6Until32(&f.asleep, n, 20*time.Second) {
		t.Fatal("readers not started")
	}
	h := startChild(t, "b6-hold", name, "1")
	if !b6Until32(&f.holding, 1, 20*time.Second) {
		t.Fatalf("holder not holding: %s", h.output())
	}
	time.Sleep(50 * time.Millisecond) // the readers poll the claim, then sleep
	h.kill()
	time.Sleep(300 * time.Millisecond) // the readers find the writer dead, and sleep on
	atomic.StoreInt32(&f.phase, 1)
	t0 := time.Now()
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	time.Sleep(50 * time.Millisecond)
	t1 := time.Now()
	if err := w.Append([]byte("after")); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		r.wait(20 * time.Second)
		woke := time.Unix(0, atomic.LoadInt64(&f.woke[i])).Sub(t0)
		got := time.Unix(0, atomic.LoadInt64(&f.got[i])).Sub(t1)
		t.Logf("reader %d: the loss %v after the successor attached, the message %v after it was appended", i, woke, got)
		if woke > 2*time.Second || got > 2*time.Second {
			t.Errorf("reader %d woke late: %v after the successor, %v after the append", i, woke, got)
		}
	}
}
