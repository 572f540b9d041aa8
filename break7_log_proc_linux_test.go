//go:build linux

package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Round 7: the log across processes, aimed at the check against tail.
// Writers hold claims open for long (the payload written a few bytes at a
// time, with yields and sleeps, intent stored and tail not) between bursts
// of appends flat out, into a 512-byte ring; some die with such a claim
// half filled, others are killed. Readers (more processes than CPUs) read
// in place a few bytes at a time, yielding, then Check; copy; sleep with
// timeouts of 1ns..1ms and contexts; others start late, at LogNewest or
// LogNext, in the middle of it. Every message is checked: its number is
// the one expected, its bytes its own, and in the end received + lost ==
// the messages appended after the reader's start.

func init() {
	// args: name, mode (run, final, dieclaim), count, seed.
	registerChild("b7-logw", func(args []string) error {
		m, l, f, err := b6OpenLog(args[0])
		if err != nil {
			return err
		}
		mode := args[1]
		count, _ := strconv.Atoi(args[2])
		seed, _ := strconv.Atoi(args[3])
		rnd := rand.New(rand.NewPCG(uint64(seed), 7))
		var w *LogWriter
		for end := time.Now().Add(5 * time.Second); ; {
			w, err = l.Writer()
			if err == nil {
				break
			}
			if !errors.Is(err, ErrInUse) || time.Now().After(end) {
				return fmt.Errorf("writer: %w", err)
			}
			time.Sleep(time.Millisecond)
		}
		buf := make([]byte, l.MaxMessage())
		slowFill := func(b []byte, seq uint64, upto int) {
			b6Fill(buf[:len(b)], seq)
			for j := 0; j < upto; j++ {
				b[j] = buf[j]
				if j%8 == 7 {
					switch rnd.IntN(4) {
					case 0:
						runtime.Gosched()
					case 1:
						time.Sleep(time.Duration(rnd.IntN(40)) * time.Microsecond)
					}
				}
			}
		}
		for i := 0; mode == "run" || i < count; i++ {
			seq := w.Seq()
			n := b6Size(rnd, l.MaxMessage())
			if rnd.IntN(3) == 0 {
				n = l.MaxMessage()
			}
			switch rnd.IntN(16) {
			case 0, 1: // a long-open claim
				b, err := w.Claim(n)
				if err != nil {
					return err
				}
				slowFill(b, seq, n)
				if rnd.IntN(4) == 0 {
					err = w.Abort()
				} else {
					err = w.Commit()
				}
				if err != nil {
					return err
				}
			default:
				b6Fill(buf[:n], seq)
				if err := w.Append(buf[:n]); err != nil {
					return err
				}
			}
			atomic.StoreUint64(&f.wseq, w.Seq())
			if rnd.IntN(200) == 0 {
				time.Sleep(time.Duration(rnd.IntN(300)) * time.Microsecond)
			}
		}
		switch mode {
		case "final":
			b6Fill(buf[:16], w.Seq())
			if err := w.Append(buf[:16]); err != nil {
				return err
			}
			atomic.StoreUint64(&f.total, w.Seq())
			atomic.StoreInt32(&f.final, 1)
			w.Close()
			m.Close()
			return nil
		case "dieclaim":
			n := b6Size(rnd, l.MaxMessage())
			b, err := w.Claim(n)
			if err != nil {
				return err
			}
			slowFill(b, w.Seq(), rnd.IntN(n+1))
			os.Exit(0) // dead with the claim open
		}
		return fmt.Errorf("mode %q", mode)
	})

	// args: name, kind (slow, copy, sleep, newest, next), seed. Reads
	// until the total is known and reached; prints its counts.
	registerChild("b7-logr", func(args []string) error {
		m, l, f, err := b6OpenLog(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		kind := args[1]
		seed, _ := strconv.Atoi(args[2])
		rnd := rand.New(rand.NewPCG(uint64(seed), 77))
		from := LogOldest
		switch kind {
		case "newest":
			from = LogNewest
		case "next":
			from = LogNext
		}
		r, err := l.Reader(from)
		if err != nil {
			return err
		}
		defer r.Close()
		late := from != LogOldest
		if !late {
			atomic.AddInt32(&f.ready, 1)
		}
		buf := make([]byte, l.MaxMessage())
		var next, start, got, lost uint64 // next: expected number
		synced := !late                   // a late reader takes its start from its first report
		note := func(s uint64) error {
			if !synced {
				synced, next, start = true, s, s
			}
			if s != next {
				return fmt.Errorf("%s: reported %d, expected %d", kind, s, next)
			}
			return nil
		}
		durs := []time.Duration{1, 10, time.Microsecond, 20 * time.Microsecond, 300 * time.Microsecond, time.Millisecond}
		deadline := time.Now().Add(40 * time.Second)
		chunk := make([]byte, l.MaxMessage())
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not done: next %d, final %d, total %d", kind, next, atomic.LoadInt32(&f.final), atomic.LoadUint64(&f.total))
			}
			d := durs[rnd.IntN(len(durs))]
			var n int
			var msg LogMessage
			inPlace := kind == "slow" || (kind != "copy" && rnd.IntN(2) == 0)
			if inPlace {
				if kind == "sleep" && rnd.IntN(2) == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), d)
					msg, err = r.ReceiveContext(ctx)
					cancel()
				} else {
					msg, err = r.ReceiveTimeout(d)
				}
			} else {
				n, err = r.CopyTimeout(buf, d)
			}
			var le *LostError
			switch {
			case errors.As(err, &le):
				if le.Count == 0 {
					return fmt.Errorf("%s: a loss of 0", kind)
				}
				if err := note(le.Seq); err != nil {
					return err
				}
				next += le.Count
				lost += le.Count
				continue
			case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
				if atomic.LoadInt32(&f.final) == 1 {
					total := atomic.LoadUint64(&f.total)
					if synced && next > total {
						return fmt.Errorf("%s: expected %d, beyond the total %d", kind, next, total)
					}
					if synced && next == total {
						if got+lost != total-start || r.Received() != got || r.Lost() != lost {
							return fmt.Errorf("%s: received %d (own count %d) + lost %d (own %d) != %d sent from %d", kind, r.Received(), got, r.Lost(), lost, total-start, start)
						}
						fmt.Printf("%s: got %d lost %d from %d\n", kind, got, lost, start)
						return nil
					}
				}
				continue
			case err != nil:
				return fmt.Errorf("%s: read at %d: %w", kind, next, err)
			}
			if inPlace {
				if err := note(msg.Seq()); err != nil {
					return err
				}
				b := msg.Bytes()
				c := chunk[:len(b)]
				for j := 0; j < len(b); j += 8 {
					copy(c[j:], b[j:min(j+8, len(b))])
					if kind == "slow" && rnd.IntN(8) == 0 {
						if rnd.IntN(2) == 0 {
							runtime.Gosched()
						} else {
							time.Sleep(time.Duration(rnd.IntN(20)) * time.Microsecond)
						}
					}
				}
				cerr := r.Check(msg)
				next++
				got++
				if cerr != nil {
					if !errors.As(cerr, &le) || le.Count != 1 || le.Seq != msg.Seq() {
						return fmt.Errorf("%s: Check of %d: %v", kind, msg.Seq(), cerr)
					}
					got--
					lost++
					continue
				}
				if s, verr := b6Verify(c); verr != nil || s != msg.Seq() {
					return fmt.Errorf("%s: in place, Check said whole: message %d (%d): %v", kind, msg.Seq(), s, verr)
				}
				continue
			}
			s, verr := b6Verify(buf[:n])
			if verr != nil {
				return fmt.Errorf("%s: copied, expected %d: %v", kind, next, verr)
			}
			if err := note(s); err != nil {
				return err
			}
			next++
			got++
		}
	})
}

func TestBreak7LogProcSlowClaims(t *testing.T) {
	b6FastExit(t)
	rounds := 12
	if os.Getenv("SHM_TORTURE") != "" {
		rounds = 150
	}
	name, _, l, f := newB6Log(t, 512)
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 16)
	b6Fill(msg, 0)
	w.Append(msg)
	w.Close()
	kinds := []string{"slow", "slow", "copy", "sleep", "sleep"}
	var rs []*child
	for i, k := range kinds {
		rs = append(rs, startChild(t, "b7-logr", name, k, strconv.Itoa(i*1000+rand.IntN(1000))))
	}
	for end := time.Now().Add(20 * time.Second); atomic.LoadInt32(&f.ready) < int32(len(kinds)); {
		if time.Now().After(end) {
			t.Fatal("readers not ready")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < rounds; i++ {
		if i%3 == 1 {
			k := []string{"newest", "next"}[rand.IntN(2)]
			rs = append(rs, startChild(t, "b7-logr", name, k, strconv.Itoa(rand.IntN(1<<30))))
		}
		if rand.IntN(3) == 0 {
			startChild(t, "b7-logw", name, "dieclaim", strconv.Itoa(rand.IntN(200)), strconv.Itoa(rand.IntN(1<<30))).wait(20 * time.Second)
			continue
		}
		c := startChild(t, "b7-logw", name, "run", "0", strconv.Itoa(rand.IntN(1<<30)))
		time.Sleep(time.Duration(30+rand.IntN(120)) * time.Millisecond)
		c.kill()
		if c.err != nil && !c.killed {
			t.Fatalf("writer: %v\n%s", c.err, c.output())
		}
		if s := c.output(); s != "" {
			t.Fatalf("killed writer said: %s", s)
		}
	}
	startChild(t, "b7-logw", name, "final", "300", strconv.Itoa(rand.IntN(1<<30))).wait(20 * time.Second)
	for _, r := range rs {
		r.wait(60 * time.Second)
		t.Logf("%s", r.output())
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != f.total {
		t.Errorf("Stats.Messages %d, total %d", st.Messages, f.total)
	}
}
