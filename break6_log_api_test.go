package shm

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
)

// Round 6, in one process: the Log's bookkeeping at its edges — a writer
// that died between storing last and storing tail, a reader overrun
// before it read anything, Check called twice, an aborted claim as the
// newest record.

// b6Drain reads r with TryCopy until ErrEmpty and returns the payload
// sequence numbers (first 8 bytes) of the messages received. Any error but
// ErrLost or ErrEmpty fails the test.
func b6Drain(t *testing.T, r *LogReader) []uint64 {
	t.Helper()
	var got []uint64
	buf := make([]byte, 4096)
	for i := 0; i < 1<<20; i++ {
		n, err := r.TryCopy(buf)
		switch {
		case errors.Is(err, ErrEmpty):
			return got
		case errors.Is(err, ErrLost):
			continue
		case err != nil:
			t.Fatalf("drain: %v", err)
		}
		if n < 8 {
			t.Fatalf("drain: message of %d bytes", n)
		}
		got = append(got, binary.LittleEndian.Uint64(buf))
	}
	t.Fatal("drain: never empty")
	return nil
}

func b6Msg(seq uint64, n int) []byte {
	b := make([]byte, max(n, 8))
	binary.LittleEndian.PutUint64(b, seq)
	return b
}

// TestBreak6LogWriterDiedAfterLast: a writer killed after it stored last
// (the record it was publishing) and before it stored tail leaves
// last == tail. That is a state the protocol's own writer produces (publish
// stores last, then tail), so the next writer must take the place and go
// on; it must not call the log corrupt, which would leave it without a
// writer for ever.
func TestBreak6LogWriterDiedAfterLast(t *testing.T) {
	_, l := newLog(t, 1024, 0)
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Reader(LogOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := uint64(0); i < 3; i++ {
		if err := w.Append(b6Msg(i, 20)); err != nil {
			t.Fatal(err)
		}
	}
	// The dying writer's publish of message 3, as publish does it, up to
	// the store of last: begin (intent), payload, sequence, header, last.
	start, wk := w.begin(32)
	_ = wk
	copyToShared(l.ring, start&l.mask+qRecHeader, b6Msg(3, 32))
	storeOrdered(l.sq(start), w.seq)
	storeOrdered(l.hd(start), recHeader(32, recCommitted, 0))
	storeOrdered(l.last, start)
	// ... dead here: tail not stored. Its place is free (the token of a
	// dead process, or none).
	atomic.StoreUint64(l.writer, 0)

	l2, err := AttachLog(l.mem)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := l2.Writer()
	if err != nil {
		t.Fatalf("the successor of a writer that died between last and tail: %v", err)
	}
	defer w2.Close()
	if w2.Seq() != 4 {
		t.Errorf("successor's Seq %d, want 4 (message 3 lost or kept)", w2.Seq())
	}
	if err := w2.Append(b6Msg(4, 20)); err != nil {
		t.Fatal(err)
	}
	got := b6Drain(t, r)
	if n := uint64(len(got)) + r.Lost(); n != 5 || r.Received()+r.Lost() != 5 {
		t.Fatalf("received %v (%d), lost %d: want 5 in all", got, r.Received(), r.Lost())
	}
}

// TestBreak6LogUnsyncedOverrun: a reader made before any message (LogNext,
// LogOldest on an empty log) and overrun before its first read must still
// be told what it lost: received + lost == appended since it was made.
func TestBreak6LogUnsyncedOverrun(t *testing.T) {
	for _, from := range []LogStart{LogNext, LogOldest, LogNewest} {
		for _, pre := range []int{0, 3} {
			_, l := newLog(t, 512, 0)
			w, err := l.Writer()
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < pre; i++ {
				w.Append(b6Msg(uint64(i), 8))
			}
			r, err := l.Reader(from)
			if err != nil {
				t.Fatal(err)
			}
			// What the reader is owed: everything appended after it was
			// made, plus what was there for LogOldest (all), LogNewest (the
			// newest).
			owed := uint64(0)
			switch {
			case from == LogOldest:
				owed = uint64(pre)
			case from == LogNewest && pre > 0:
				owed = 1
			}
			for i := pre; i < pre+40; i++ {
				w.Append(b6Msg(uint64(i), 8))
				owed++
			}
			got := b6Drain(t, r)
			if r.Received()+r.Lost() != owed || uint64(len(got)) != r.Received() {
				t.Errorf("from %d after %d messages: received %d (%v) + lost %d != %d appended for it", from, pre, r.Received(), got, r.Lost(), owed)
			}
			r.Close()
			w.Close()
		}
	}
}

// TestBreak6LogCheckTwice: Check of an overwritten message counts it lost
// once; calling it again (the same message) must not count it again, nor
// take it off Received twice.
func TestBreak6LogCheckTwice(t *testing.T) {
	_, l := newLog(t, 512, 0)
	w, _ := l.Writer()
	r, _ := l.Reader(LogOldest)
	w.Append(b6Msg(0, 8))
	m, err := r.Receive()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 20; i++ {
		w.Append(b6Msg(uint64(i), 8))
	}
	if err := r.Check(m); !errors.Is(err, ErrLost) {
		t.Fatalf("first Check: %v", err)
	}
	err = r.Check(m)
	if r.Received() != 0 || r.Lost() != 1 {
		t.Fatalf("after Check twice (second: %v): received %d, lost %d; want 0 and 1", err, r.Received(), r.Lost())
	}
}

// TestBreak6LogNewestAfterAbort: an aborted claim is not a message. A
// reader starting at LogNewest must get the newest message, and Stats must
// count the messages, after an Abort as before it.
func TestBreak6LogNewestAfterAbort(t *testing.T) {
	_, l := newLog(t, 1024, 0)
	w, _ := l.Writer()
	for i := uint64(0); i < 3; i++ {
		w.Append(b6Msg(i, 8))
	}
	if _, err := w.Claim(8); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 3 || w.Seq() != 3 {
		t.Errorf("Stats.Messages %d, writer Seq %d after 3 messages and an abort; want 3", st.Messages, w.Seq())
	}
	r, _ := l.Reader(LogNewest)
	defer r.Close()
	got := b6Drain(t, r)
	if len(got) != 1 || got[0] != 2 {
		t.Errorf("LogNewest after an abort read %v, want [2] (the newest message)", got)
	}
}

// TestBreak6LogTooLargeKeepsCount: Copy into a buffer too small does not
// receive, and the next call returns the same message; the counts stay
// right through overruns in between.
func TestBreak6LogTooLargeKeepsCount(t *testing.T) {
	_, l := newLog(t, 512, 0)
	w, _ := l.Writer()
	r, _ := l.Reader(LogOldest)
	w.Append(b6Msg(0, 8))
	if _, err := r.TryCopy(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	w.Append(b6Msg(1, 40))
	n, err := r.TryCopy(make([]byte, 10))
	if !errors.Is(err, ErrTooLarge) || n != 40 {
		t.Fatalf("small buffer: %d %v", n, err)
	}
	for i := 2; i < 30; i++ {
		w.Append(b6Msg(uint64(i), 8))
	}
	got := b6Drain(t, r)
	if r.Received()+r.Lost() != 30 || uint64(len(got))+1 != r.Received() {
		t.Fatalf("received %d (%v) + lost %d, want 30", r.Received(), got, r.Lost())
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("out of order: %v", got)
		}
	}
}

// TestBreak6LogSuccessorSeqAfterPadding: a writer that dies in an append
// that needed padding (the record starts at the ring's beginning)
// overwrites the oldest records with its payload. (When a record could
// take half the ring, padding and record together took nearly all of it,
// and the payload reached the header of the last record, from which the
// successor read its sequence number: a record is now at most an eighth of
// the ring, so an append writes at most a quarter of it, and last, the
// newest record, is out of its reach.) The successor must number on from
// the messages before, the dead one's counted lost.
func TestBreak6LogSuccessorSeqAfterPadding(t *testing.T) {
	_, l := newLog(t, 512, 0) // records of 16..64 bytes
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := l.Reader(LogOldest)
	defer r.Close()
	for i := 0; i < 14; i++ {
		w.Append(b6Msg(uint64(i), 16)) // [32i, 32i+32)
	}
	w.Append(b6Msg(14, 32)) // [448, 496): last = 448
	// The dying append: 48 bytes (64 with the header) do not fit in
	// [496, 512): padding there, the record at 512 (ring offset 0), whose
	// payload covers ring offsets 16..64: messages 0 and 1. The writer
	// wrote its payload, then died.
	start, _ := w.begin(48)
	if start != 512 {
		t.Fatalf("record at %d", start)
	}
	junk := make([]byte, 48)
	for i := range junk {
		junk[i] = byte(0xa0 + i)
	}
	copyToShared(l.ring, start&l.mask+qRecHeader, junk)
	atomic.StoreUint64(l.writer, 0) // dead

	l2, err := AttachLog(l.mem)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := l2.Writer()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if w2.Seq() != 16 {
		t.Errorf("successor's Seq %d (%#x), want 16: messages 0 to 14, then the one lost with the writer", w2.Seq(), w2.Seq())
	}
	w2.Append(b6Msg(w2.Seq(), 8))
	got := b6Drain(t, r)
	if r.Received()+r.Lost() != 17 {
		t.Errorf("reader: received %v (%d) + lost %d, want 17", got, r.Received(), r.Lost())
	}
	st, err := l2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 17 {
		t.Errorf("Stats.Messages %d, want 17", st.Messages)
	}
}
