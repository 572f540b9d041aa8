package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// Round 7, in one process: the reader's check against tail (whole) at its
// edges, walked exhaustively in one goroutine with an append stopped in
// the middle (a claim open, its payload written); Stats().Messages as the
// writer publishes and as a dead writer leaves it; Check after a Copy
// into a buffer too small; LogNewest and Stats after a lap of aborts.

// TestBreak7LogWholeEdges: a reader holds a message received in place;
// the writer appends k records, then opens a claim (padding written if
// needed, intent stored) and fills it; Check must say lost whenever the
// message's bytes changed. Sizes are drawn to land readers at exactly
// tail - p == safe, safe + 16, at padding, with records of the largest
// size.
func TestBreak7LogWholeEdges(t *testing.T) {
	for _, capacity := range []int{256, 512, 1024} {
		_, l := newLog(t, capacity, 0)
		w, err := l.Writer()
		if err != nil {
			t.Fatal(err)
		}
		r, err := l.Reader(LogOldest)
		if err != nil {
			t.Fatal(err)
		}
		rnd := rand.New(rand.NewPCG(uint64(capacity), 7))
		max := l.MaxMessage()
		size := func() int {
			switch rnd.IntN(4) {
			case 0:
				return max
			case 1:
				return max - rnd.IntN(16)
			case 2:
				return rnd.IntN(16)
			}
			return rnd.IntN(max + 1)
		}
		seq := uint64(0)
		msg := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(seq*7 + uint64(i))
			}
			if n >= 8 {
				binary.LittleEndian.PutUint64(b, seq)
			}
			return b
		}
		edges := map[int64]int{}
		for round := 0; round < 20000; round++ {
			// Catch up, then hold the next message.
			for {
				if _, err := r.TryCopy(make([]byte, max)); err != nil {
					if errors.Is(err, ErrEmpty) {
						break
					}
					if !errors.Is(err, ErrLost) {
						t.Fatal(err)
					}
				}
			}
			if err := w.Append(msg(size())); err != nil {
				t.Fatal(err)
			}
			seq++
			m, err := r.TryReceive()
			if err != nil {
				t.Fatal(err)
			}
			off := m.pos&l.mask + qRecHeader
			snap := bytes.Clone(l.ring[m.pos&l.mask : off+uint64(m.n)])
			for k := rnd.IntN(capacity / 16); k > 0; k-- {
				if err := w.Append(msg(size())); err != nil {
					t.Fatal(err)
				}
				seq++
			}
			n := size()
			b, err := w.Claim(n)
			if err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] = 0xee
			}
			edge := int64(atomic.LoadUint64(l.tail)-m.pos) - int64(l.safe)
			if edge >= -32 && edge <= 32 {
				edges[edge]++
			}
			now := l.ring[m.pos&l.mask : off+uint64(m.n)]
			changed := !bytes.Equal(now, snap)
			err = r.Check(m)
			if err == nil && changed {
				t.Fatalf("capacity %d: Check passed a message whose bytes changed: tail %d, intent %d, message at %d (%d bytes), tail-p-safe %d", capacity, *l.tail, *l.intent, m.pos, m.n, edge)
			}
			if err != nil && !errors.Is(err, ErrLost) {
				t.Fatal(err)
			}
			if rnd.IntN(4) == 0 {
				err = w.Abort()
			} else {
				err = w.Commit()
				seq++
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if edges[0] == 0 || edges[16] == 0 || edges[-16] == 0 {
			t.Errorf("capacity %d: edges not reached: %v", capacity, edges)
		}
		t.Logf("capacity %d: claims at tail - p - safe (-32..32): %v", capacity, edges)
		r.Close()
		w.Close()
	}
}

// TestBreak7LogStatsMessagesDeadWriter: a writer that died after storing
// last (its record at tail, unpublished) leaves last == tail. Stats takes
// the number of messages from the record at last only if it is before
// tail, and otherwise says 0: 3 messages appended, Stats says none (and
// every registered reader's Behind is computed from that).
func TestBreak7LogStatsMessagesDeadWriter(t *testing.T) {
	_, l := newLog(t, 1024, 0)
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 3; i++ {
		if err := w.Append(b6Msg(i, 20)); err != nil {
			t.Fatal(err)
		}
	}
	start, _ := w.begin(32)
	copyToShared(l.ring, start&l.mask+qRecHeader, b6Msg(3, 32))
	storeOrdered(l.sq(start), w.seq)
	storeOrdered(l.hd(start), recHeader(32, recCommitted, 0))
	storeOrdered(l.last, start)
	// Dead here, before tail.
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 3 {
		t.Errorf("Stats().Messages %d with 3 messages published (the 4th's writer dead before tail), want 3", st.Messages)
	}
}

// TestBreak7LogStatsMessagesRace: Stats().Messages sampled while the
// writer appends flat out must never go back, and must lie between the
// messages appended before and after the call. Stats loads tail, then
// last: a publish in between (last stored at the old tail) makes it say 0.
func TestBreak7LogStatsMessagesRace(t *testing.T) {
	_, l := newLog(t, 512, 0)
	bw := b7StartWriter(t, l, 48)
	if !bw.waitSent(10) {
		t.Fatal("writer does not run")
	}
	var prev uint64
	bad := 0
	var first string
	deadline := time.Now().Add(300 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		before := bw.sent.Load()
		st, err := l.Stats()
		if err != nil {
			t.Fatal(err)
		}
		after := bw.sent.Load() + 1
		if st.Messages < before || st.Messages > after || st.Messages < prev {
			if bad == 0 {
				first = "Messages " + itoa(st.Messages) + " between " + itoa(before) + " and " + itoa(after) + " appended, " + itoa(prev) + " before"
			}
			bad++
		}
		prev = max(prev, st.Messages)
	}
	if bad > 0 {
		t.Errorf("%d samples of Stats().Messages out of bounds; first: %s", bad, first)
	}
}

// TestBreak7LogCheckAfterTooLarge: Receive returns m; a Copy into a buffer
// too small does not receive the next message (Copy's doc: the next call
// returns it again), so m is still the last message received, and Check
// of m must still answer for it.
func TestBreak7LogCheckAfterTooLarge(t *testing.T) {
	_, l := newLog(t, 512, 0)
	w, _ := l.Writer()
	r, _ := l.Reader(LogOldest)
	defer r.Close()
	w.Append(b6Msg(0, 8))
	w.Append(b6Msg(1, 40))
	m, err := r.TryReceive()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.TryCopy(make([]byte, 10)); !errors.Is(err, ErrTooLarge) || n != 40 {
		t.Fatalf("small buffer: %d %v", n, err)
	}
	if err := r.Check(m); err != nil {
		t.Errorf("Check of the last message received, after a Copy that received nothing: %v", err)
	}
	if r.Received() != 1 {
		t.Errorf("received %d, want 1", r.Received())
	}
}

// TestBreak7LogAbortLaps: laps of aborted claims between messages: Stats,
// Seq, LogNewest, LogOldest and a running reader all agree on the count.
func TestBreak7LogAbortLaps(t *testing.T) {
	_, l := newLog(t, 512, 0)
	w, _ := l.Writer()
	run, _ := l.Reader(LogOldest)
	defer run.Close()
	sent := uint64(0)
	for lap := 0; lap < 20; lap++ {
		for i := 0; i < lap%4; i++ {
			w.Append(b6Msg(sent, 8+lap))
			sent++
		}
		for i := 0; i < lap*3; i++ { // up to 57 aborts of 48 bytes: 3 laps
			if _, err := w.Claim(48); err != nil {
				t.Fatal(err)
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
		}
		st, _ := l.Stats()
		if st.Messages != sent || w.Seq() != sent {
			t.Fatalf("lap %d: Stats.Messages %d, Seq %d, sent %d", lap, st.Messages, w.Seq(), sent)
		}
		for _, from := range []LogStart{LogOldest, LogNewest, LogNext} {
			r, err := l.Reader(from)
			if err != nil {
				t.Fatal(err)
			}
			s0 := r.seq // (a reader knows its start's number from Reader on)
			switch {
			case from == LogNext && s0 != sent,
				from == LogNewest && s0 != sent && s0+1 != sent,
				s0 > sent:
				t.Fatalf("lap %d from %d: starts at %d with %d sent", lap, from, s0, sent)
			}
			w.Append(b6Msg(sent, 8))
			sent++
			got := b6Drain(t, r)
			if len(got) == 0 || got[len(got)-1] != sent-1 {
				t.Fatalf("lap %d from %d: read %v, want ... %d", lap, from, got, sent-1)
			}
			if r.Received()+r.Lost() != sent-s0 || r.Received() != uint64(len(got)) {
				t.Fatalf("lap %d from %d (start %d): %d received + %d lost for %v", lap, from, s0, r.Received(), r.Lost(), got)
			}
			for i := range got {
				if got[i] != sent-uint64(len(got)-i) {
					t.Fatalf("lap %d from %d: read %v", lap, from, got)
				}
			}
			r.Close()
		}
		b6Drain(t, run)
		if run.Received()+run.Lost() != sent {
			t.Fatalf("lap %d: running reader %d + %d != %d", lap, run.Received(), run.Lost(), sent)
		}
	}
}
