//go:build linux

package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Round 8: a reader that starts while the record at last is stored and not
// published (tail < its end), the writer dead there; then a successor.

// b8Die leaves an append of n bytes half done, as a writer killed between
// its store of last (and, if newest, of newest) and its store of tail
// would. abort: the record is an aborted claim.
func b8Die(w *LogWriter, n uint64, abort, newest bool) {
	l := w.l
	start, _ := w.begin(n)
	copyToShared(l.ring, start&l.mask+qRecHeader, b6Msg(w.seq, int(n)))
	st := uint64(recCommitted)
	if abort {
		st = recAborted
	}
	storeOrdered(l.sq(start), w.seq)
	storeOrdered(l.hd(start), recHeader(n, st, 0))
	storeOrdered(l.last, start)
	if newest && !abort {
		storeOrdered(l.newest, start)
	}
}

// b8Event is what a reader got: a message (its number) or a loss.
type b8Event struct {
	seq   uint64
	count uint64 // 0: a message
}

func (e b8Event) String() string {
	if e.count == 0 {
		return fmt.Sprintf("m%d", e.seq)
	}
	return fmt.Sprintf("lost%d@%d", e.count, e.seq)
}

// b8Read reads r until it received the message numbered final (untimed
// Copy), and returns what it got.
func b8Read(r *LogReader, final uint64) ([]b8Event, error) {
	var got []b8Event
	buf := make([]byte, 4096)
	for len(got) < 10000 {
		n, err := r.Copy(buf)
		var le *LostError
		switch {
		case errors.As(err, &le):
			got = append(got, b8Event{le.Seq, le.Count})
			continue
		case err != nil:
			return got, err
		}
		if n < 8 {
			return got, fmt.Errorf("a message of %d bytes", n)
		}
		s := binary.LittleEndian.Uint64(buf)
		got = append(got, b8Event{seq: s})
		if s == final {
			return got, nil
		}
	}
	return got, fmt.Errorf("never got %d", final)
}

// b8CheckEvents checks that got covers the numbers from first to final
// without a gap or overlap, and reports received and lost.
func b8CheckEvents(got []b8Event, first, final uint64) (rec, lost uint64, err error) {
	next := first
	for _, e := range got {
		if e.seq != next {
			return rec, lost, fmt.Errorf("%v at %d: %v", got, next, e)
		}
		if e.count == 0 {
			rec++
			next++
		} else {
			lost += e.count
			next += e.count
		}
	}
	if next != final+1 {
		return rec, lost, fmt.Errorf("%v: ends at %d, want %d", got, next, final+1)
	}
	return rec, lost, nil
}

func b8CPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBreak8LogStartUnpublished: readers started (LogNext, LogNewest,
// LogOldest) while a dead writer's record is stored, last pointing at it,
// and not published; with and without padding before it, committed or
// aborted, newest stored or not. In that state: TryCopy is empty, waits
// of 1ns..1ms and 200 ms time out on time without burning a CPU, a
// cancelled context ends a wait at once, nothing is corrupt. Then a
// successor: every reader gets numbers from its start to the successor's
// last without a gap, the dead message lost at most once, and
// received + lost == the messages appended since its start (as Stats
// counts them).
func TestBreak8LogStartUnpublished(t *testing.T) {
	const k = 5 // the successor's messages
	for _, abort := range []bool{false, true} {
		for _, newest := range []bool{false, true} {
			for _, before := range []int{0, 3, 10} { // 10: padding before the dead record
				if abort && newest {
					continue
				}
				name := fmt.Sprintf("abort=%v/newest=%v/before=%d", abort, newest, before)
				t.Run(name, func(t *testing.T) {
					_, l := newLog(t, 512, 0)
					w, err := l.Writer()
					if err != nil {
						t.Fatal(err)
					}
					for i := 0; i < before; i++ {
						if err := w.Append(b6Msg(uint64(i), 24)); err != nil {
							t.Fatal(err)
						}
					}
					b8Die(w, 48, abort, newest)
					tl, last := atomic.LoadUint64(l.tail), atomic.LoadUint64(l.last)
					if before == 10 && last == tl {
						t.Fatal("no padding before the dead record")
					}
					st, _ := l.Stats()
					if st.Messages != uint64(before) {
						t.Errorf("stats in the dead state: %d messages, want %d", st.Messages, before)
					}
					// The writer dead: its process's place freed (the
					// successor will take it; the readers see no writer).
					l.wr.Store(nil)
					atomic.StoreUint64(l.writer, 0)

					froms := []LogStart{LogNext, LogNewest, LogOldest, LogNext, LogNewest, LogOldest}
					var rs []*LogReader
					var firsts []uint64
					for _, f := range froms {
						m0, _ := l.Stats()
						r, err := l.Reader(f)
						if err != nil {
							t.Fatalf("reader %v: %v", f, err)
						}
						defer r.Close()
						m1, _ := l.Stats()
						if f == LogNext && r.seq < m0.Messages {
							t.Errorf("reader %v starts at number %d, %d messages were appended before", f, r.seq, m0.Messages)
						}
						if f == LogNext && r.seq > m1.Messages+1 {
							t.Errorf("reader %v starts at number %d, %d messages after", f, r.seq, m1.Messages)
						}
						rs = append(rs, r)
						firsts = append(firsts, r.seq)
					}
					// Readers that went through what is published first
					// (LogOldest, LogNewest before the dead record).
					buf := make([]byte, 4096)
					pre := make([][]b8Event, len(rs))
					for i, r := range rs {
						for j := 0; j < 100; j++ {
							n, err := r.TryCopy(buf)
							if errors.Is(err, ErrEmpty) {
								break
							}
							var le *LostError
							if errors.As(err, &le) {
								pre[i] = append(pre[i], b8Event{le.Seq, le.Count})
								continue
							}
							if err != nil {
								t.Fatalf("reader %v: %v", froms[i], err)
							}
							pre[i] = append(pre[i], b8Event{seq: binary.LittleEndian.Uint64(buf[:n])})
						}
					}
					// Waits in the dead state.
					for i, r := range rs {
						for _, d := range []time.Duration{1, 100, time.Microsecond, 50 * time.Microsecond, time.Millisecond} {
							t0 := time.Now()
							_, err := r.CopyTimeout(buf, d)
							if !errors.Is(err, ErrTimeout) {
								t.Fatalf("reader %v: wait of %v: %v, want a timeout", froms[i], d, err)
							}
							if e := time.Since(t0); e > d+20*time.Millisecond {
								t.Errorf("reader %v: wait of %v took %v", froms[i], d, e)
							}
							_, err = r.ReceiveTimeout(d)
							if !errors.Is(err, ErrTimeout) {
								t.Fatalf("reader %v: receive of %v: %v, want a timeout", froms[i], d, err)
							}
						}
						ctx, cancel := context.WithCancel(context.Background())
						cancel()
						if _, err := r.CopyContext(ctx, buf); !errors.Is(err, context.Canceled) {
							t.Fatalf("reader %v: cancelled context: %v", froms[i], err)
						}
						ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
						t0 := time.Now()
						_, err := r.ReceiveContext(ctx)
						cancel()
						if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 100*time.Millisecond {
							t.Fatalf("reader %v: context of 30ms: %v after %v", froms[i], err, time.Since(t0))
						}
						if _, err := r.TryCopy(buf); !errors.Is(err, ErrEmpty) {
							t.Fatalf("reader %v: try: %v", froms[i], err)
						}
					}
					// A 200 ms wait: on time, and asleep (not spinning).
					c0, t0 := b8CPU(), time.Now()
					_, err = rs[0].CopyTimeout(buf, 200*time.Millisecond)
					el, cpu := time.Since(t0), b8CPU()-c0
					if !errors.Is(err, ErrTimeout) || el < 200*time.Millisecond || el > 300*time.Millisecond {
						t.Errorf("a 200ms wait: %v after %v", err, el)
					}
					if cpu > 60*time.Millisecond {
						t.Errorf("a 200ms wait in the dead state used %v of CPU", cpu)
					}

					// Readers asleep (untimed) when the successor comes.
					final := uint64(before) + k // the successor's last message
					type res struct {
						got []b8Event
						err error
					}
					out := make([]chan res, len(rs))
					for i, r := range rs {
						out[i] = make(chan res, 1)
						go func() {
							g, err := b8Read(r, final)
							out[i] <- res{g, err}
						}()
					}
					time.Sleep(20 * time.Millisecond)
					w2, err := l.Writer()
					if err != nil {
						t.Fatal(err)
					}
					defer w2.Close()
					// The dead message is numbered (and lost); an aborted
					// claim takes no number.
					want := uint64(before) + 1
					if abort {
						want = uint64(before)
					}
					if w2.Seq() != want {
						t.Errorf("the successor numbers from %d, want %d", w2.Seq(), want)
					}
					for w2.Seq() <= final {
						if err := w2.Append(b6Msg(w2.Seq(), 16)); err != nil {
							t.Fatal(err)
						}
					}
					st, _ = l.Stats()
					for i := range rs {
						select {
						case g := <-out[i]:
							all := append(pre[i], g.got...)
							if g.err != nil {
								t.Fatalf("reader %v: %v after %v", froms[i], g.err, all)
							}
							rec, lost, err := b8CheckEvents(all, firsts[i], final)
							if err != nil {
								t.Errorf("reader %v: %v", froms[i], err)
							}
							if rec+lost != st.Messages-firsts[i] {
								t.Errorf("reader %v: received %d + lost %d, %d appended since its start (%d)", froms[i], rec, lost, st.Messages-firsts[i], firsts[i])
							}
							if rs[i].Received() != rec || rs[i].Lost() != lost {
								t.Errorf("reader %v: counts %d %d, events %d %d", froms[i], rs[i].Received(), rs[i].Lost(), rec, lost)
							}
							var deadLost uint64
							for _, e := range all {
								if e.count != 0 && e.seq <= uint64(before) && e.seq+e.count > uint64(before) {
									deadLost++
								}
							}
							if deadLost > 1 {
								t.Errorf("reader %v: the dead message reported lost %d times: %v", froms[i], deadLost, all)
							}
							t.Logf("reader %v from %d: %v", froms[i], firsts[i], all)
						case <-time.After(3 * time.Second):
							t.Fatalf("reader %v: hangs", froms[i])
						}
					}
				})
			}
		}
	}
}

// TestBreak8LogDiedAborting: a writer killed in Abort, after it stored the
// aborted record and last and before tail. An aborted claim takes no
// number, and the package says readers see "at most the message it was
// writing" lost; but the successor covers [tail, intent) with a record of
// state 5 numbered as a message: readers are told of a lost message that
// was never one, WriterLost and Messages count it. Fails on purpose.
func TestBreak8LogDiedAborting(t *testing.T) {
	_, l := newLog(t, 512, 0)
	w, _ := l.Writer()
	w.Append(b6Msg(0, 16))
	r, _ := l.Reader(LogNext)
	defer r.Close()
	b8Die(w, 48, true, false)
	l.wr.Store(nil)
	atomic.StoreUint64(l.writer, 0)
	w2, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	w2.Append(b6Msg(w2.Seq(), 16))
	buf := make([]byte, 64)
	_, err = r.CopyTimeout(buf, time.Second)
	st, _ := l.Stats()
	if err != nil || st.WriterLost != 0 || st.Messages != 2 {
		t.Errorf("a writer that died aborting a claim: first read %v; stats %d messages, %d lost with writers (want nil, 2, 0)", err, st.Messages, st.WriterLost)
	}
}
