package shm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// newLog makes a managed segment with one broadcast log and returns it.
func newLog(t testing.TB, capacity, maxMsg int) (*Managed, *Log) {
	t.Helper()
	c := Config{Name: testName(t), Size: 64}
	c.AddLog(capacity, maxMsg)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l, err := m.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	return m, l
}

func lostCount(t testing.TB, err error) uint64 {
	t.Helper()
	var le *LostError
	if !errors.Is(err, ErrLost) || !errors.As(err, &le) {
		t.Fatalf("want a loss, got %v", err)
	}
	return le.Count
}

func TestLogBasics(t *testing.T) {
	_, l := newLog(t, 1024, 0)
	if l.Capacity() != 1024 || l.MaxMessage() != 1024/8-16 {
		t.Fatalf("capacity %d, max %d", l.Capacity(), l.MaxMessage())
	}
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Writer(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second writer: %v", err)
	}
	r, err := l.Reader(LogOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Registered() {
		t.Fatal("not registered")
	}
	if _, err := r.TryReceive(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := r.ReceiveTimeout(2 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("timeout: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	defer cancel()
	if _, err := r.ReceiveContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("context: %v", err)
	}
	if err := w.Append(make([]byte, l.MaxMessage()+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	for i := 0; i < 5; i++ {
		if err := w.Append([]byte(fmt.Sprintf("message %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		m, err := r.Receive()
		if err != nil {
			t.Fatal(err)
		}
		got := string(m.Bytes())
		if err := r.Check(m); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("message %d", i); got != want || m.Seq() != uint64(i) {
			t.Fatalf("got %q seq %d, want %q seq %d", got, m.Seq(), want, i)
		}
	}
	// Claim, Commit, Abort.
	b, err := w.Claim(3)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, "abc")
	if err := w.Append([]byte("x")); !errors.Is(err, ErrInUse) {
		t.Fatalf("append with a claim open: %v", err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil {
		t.Fatal("second commit")
	}
	if _, err := w.Claim(10); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]byte("after abort")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if n, err := r.Copy(buf); !errors.Is(err, ErrTooLarge) || n != 3 {
		t.Fatalf("short buffer: %d %v", n, err)
	}
	buf = make([]byte, 64)
	n, err := r.Copy(buf)
	if err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("copy: %q %v", buf[:n], err)
	}
	n, err = r.Copy(buf)
	if err != nil || string(buf[:n]) != "after abort" {
		t.Fatalf("copy after abort: %q %v", buf[:n], err)
	}
	if w.Seq() != 7 || r.Received() != 7 || r.Lost() != 0 {
		t.Fatalf("seq %d, received %d, lost %d", w.Seq(), r.Received(), r.Lost())
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 7 || len(st.Readers) != 1 || st.Readers[0].Behind != 0 || st.Writer.PID == 0 || !st.Writer.Alive {
		t.Fatalf("stats %+v", st)
	}
	// Newest and next.
	rn, err := l.Reader(LogNewest)
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Close()
	rx, err := l.Reader(LogNext)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	n, err = rn.Copy(buf)
	if err != nil || string(buf[:n]) != "after abort" {
		t.Fatalf("newest: %q %v", buf[:n], err)
	}
	if _, err := rx.TryCopy(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("next: %v", err)
	}
	w.Append([]byte("last"))
	for _, rr := range []*LogReader{rn, rx} {
		n, err = rr.Copy(buf)
		if err != nil || string(buf[:n]) != "last" {
			t.Fatalf("last: %q %v", buf[:n], err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if w2.Seq() != 8 {
		t.Fatalf("next writer's seq %d", w2.Seq())
	}
}

// TestLogOverrun: a reader that falls behind is told exactly how many
// messages it lost, and received + lost = sent, over many laps.
func TestLogOverrun(t *testing.T) {
	_, l := newLog(t, 4096, 0)
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Reader(LogOldest)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	sent := uint64(0)
	next := uint64(0) // the sequence number the reader expects
	for round := 0; round < 200; round++ {
		k := round%37 + 1
		for i := 0; i < k; i++ {
			msg := bytes.Repeat([]byte{byte(sent)}, int(sent*7%300))
			if err := w.Append(msg); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		for i := 0; i < round%5; i++ {
			n, err := r.TryCopy(buf)
			if errors.Is(err, ErrEmpty) {
				break
			}
			if errors.Is(err, ErrLost) {
				next += lostCount(t, err)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if n != int(next*7%300) || (n > 0 && buf[0] != byte(next)) {
				t.Fatalf("message %d: %d bytes, first %d", next, n, buf[0])
			}
			next++
		}
	}
	for {
		_, err := r.TryCopy(buf)
		if errors.Is(err, ErrEmpty) {
			break
		}
		if errors.Is(err, ErrLost) {
			lostCount(t, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if r.Received()+r.Lost() != sent {
		t.Fatalf("received %d + lost %d != sent %d", r.Received(), r.Lost(), sent)
	}
	if r.Lost() == 0 {
		t.Fatal("no loss: the test did not overrun the reader")
	}
}

// TestLogCheckAfterOverwrite: a message read in place and overwritten
// before Check is reported lost.
func TestLogCheckAfterOverwrite(t *testing.T) {
	_, l := newLog(t, 1024, 0)
	w, _ := l.Writer()
	r, _ := l.Reader(LogOldest)
	w.Append([]byte("first"))
	m, err := r.Receive()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		w.Append(make([]byte, 100))
	}
	if err := r.Check(m); lostCount(t, err) != 1 {
		t.Fatal(err)
	}
	if _, err := r.Receive(); !errors.Is(err, ErrLost) {
		t.Fatalf("after the overrun: %v", err)
	}
	for {
		_, err := r.TryReceive()
		if errors.Is(err, ErrEmpty) {
			break
		}
		if err != nil && !errors.Is(err, ErrLost) {
			t.Fatal(err)
		}
	}
	if r.Received()+r.Lost() != 101 {
		t.Fatalf("received %d + lost %d", r.Received(), r.Lost())
	}
}

// TestLogWakes: a sleeping reader is woken by an append.
func TestLogWakes(t *testing.T) {
	_, l := newLog(t, 1024, 0)
	w, _ := l.Writer()
	r, _ := l.Reader(LogNext)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		n, err := r.CopyTimeout(buf, 10*time.Second)
		if err == nil && string(buf[:n]) != "wake" {
			err = fmt.Errorf("got %q", buf[:n])
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	w.Append([]byte("wake"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("woken after %v", d)
	}
}

func TestCellBasics(t *testing.T) {
	c := Config{Name: testName(t), Size: 64}
	c.AddCell(24)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cell, err := m.Cell(0)
	if err != nil {
		t.Fatal(err)
	}
	type val struct{ A, B, C uint64 }
	var v val
	if ver, err := LoadValue(cell, &v); err != nil || ver != 0 || v != (val{}) {
		t.Fatalf("%v %d %+v", err, ver, v)
	}
	w, err := cell.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cell.Writer(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second writer: %v", err)
	}
	if err := StoreValue(w, &val{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if ver, err := LoadValue(cell, &v); err != nil || ver != 1 || v != (val{1, 2, 3}) {
		t.Fatalf("%v %d %+v", err, ver, v)
	}
	var small struct{ A uint64 }
	if _, err := LoadValue(cell, &small); !errors.Is(err, ErrRange) {
		t.Fatalf("wrong size: %v", err)
	}
	if _, err := cell.WaitTimeout(1, 2*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("wait: %v", err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		StoreValue(w, &val{4, 5, 6})
	}()
	ver, err := cell.WaitTimeout(1, 10*time.Second)
	if err != nil || ver != 2 {
		t.Fatalf("wait: %d %v", ver, err)
	}
	st, err := m.CellStats(0)
	if err != nil || st.Version != 2 || st.Size != 24 || !st.Writer.Alive {
		t.Fatalf("%+v %v", st, err)
	}
}

// TestLogCheckExact: a message read in place stays whole until the append
// that overwrites its first byte, and not one append longer: Check says so
// exactly, at the edge where it must ask the writer's intent.
func TestLogCheckExact(t *testing.T) {
	_, l := newLog(t, 1024, 0)
	w, _ := l.Writer()
	r, _ := l.Reader(LogOldest)
	w.Append([]byte("first")) // [0, 32)
	m, err := r.Receive()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 31; i++ { // 31 records of 32 bytes: [32, 1024)
		w.Append(make([]byte, 16))
	}
	if err := r.Check(m); err != nil {
		t.Fatalf("the ring is full, nothing overwritten: %v", err)
	}
	b, err := w.Claim(16) // [1024, 1056): intent announces the overwrite
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(m); !errors.Is(err, ErrLost) {
		t.Fatalf("overwritten by the open claim: %v", err)
	}
	b[0] = 1
	w.Commit()
}
