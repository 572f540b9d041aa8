package shm

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Logs and cells allocate nothing: append, claim and commit, receive and
// check, copy, a loss reported, a reader that waits and is woken (with a
// timeout, and with a cancellable context), and the cell's store, load and
// wait.

func TestNoAllocsLog(t *testing.T) {
	_, l := newLog(t, 4096, 0)
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Reader(LogOldest)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 64)
	buf := make([]byte, 256)
	check := func(what string, f func()) {
		t.Helper()
		f() // warm up
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations", what, n)
		}
	}
	check("Append+Copy", func() {
		if err := w.Append(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Copy(buf); err != nil {
			t.Fatal(err)
		}
	})
	check("Claim+Commit+Receive+Check", func() {
		b, err := w.Claim(64)
		if err != nil {
			t.Fatal(err)
		}
		b[0] = 1
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		m, err := r.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Check(m); err != nil {
			t.Fatal(err)
		}
	})
	check("TryReceive on an empty log", func() {
		if _, err := r.TryReceive(); !errors.Is(err, ErrEmpty) {
			t.Fatal(err)
		}
	})
	check("a loss", func() {
		for i := 0; i < 100; i++ {
			w.Append(msg)
		}
		for {
			_, err := r.TryCopy(buf)
			if errors.Is(err, ErrEmpty) {
				break
			}
			if err != nil && !errors.Is(err, ErrLost) {
				t.Fatal(err)
			}
		}
	})
	if r.Lost() == 0 {
		t.Fatal("no loss")
	}

	// Waits, woken by a goroutine that appends on request.
	var req, quit atomic.Int32
	go func() {
		for quit.Load() == 0 {
			if req.CompareAndSwap(1, 0) {
				time.Sleep(200 * time.Microsecond)
				w.Append(msg)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	defer quit.Store(1)
	check("CopyTimeout that waits", func() {
		req.Store(1)
		if _, err := r.CopyTimeout(buf, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	check("CopyContext that waits", func() {
		req.Store(1)
		if _, err := r.CopyContext(ctx, buf); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNoAllocsCell(t *testing.T) {
	c := Config{Name: testName(t), Size: 64}
	c.AddCell(64)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cell, err := m.Cell(0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := cell.Writer()
	if err != nil {
		t.Fatal(err)
	}
	var v [8]uint64
	b := make([]byte, 64)
	check := func(what string, f func()) {
		t.Helper()
		f()
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations", what, n)
		}
	}
	check("Store+Load", func() {
		if err := w.Store(b); err != nil {
			t.Fatal(err)
		}
		if _, err := cell.Load(b); err != nil {
			t.Fatal(err)
		}
	})
	check("StoreValue+LoadValue", func() {
		v[0]++
		if err := StoreValue(w, &v); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadValue(cell, &v); err != nil {
			t.Fatal(err)
		}
	})
	var req, quit atomic.Int32
	go func() {
		for quit.Load() == 0 {
			if req.CompareAndSwap(1, 0) {
				time.Sleep(200 * time.Microsecond)
				w.Store(b)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	defer quit.Store(1)
	check("WaitTimeout that waits", func() {
		ver, _ := cell.Version()
		req.Store(1)
		if _, err := cell.WaitTimeout(ver, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}
