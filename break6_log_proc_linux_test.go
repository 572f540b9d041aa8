//go:build linux

package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Round 6: a broadcast log across processes. Writers in children appending
// numbered, checksummed messages of every size into a tiny ring; SIGKILLed
// at random, or dying on purpose in the middle of an append (intent
// stored, payload half written, header written but not published);
// successors continuing. Readers in children read with every form (copying,
// in place and Check, tiny timeouts, cancelled contexts, Try), and check
// every message: its number is the one expected, its bytes are its own,
// nothing comes twice, and in the end received + reported lost == sent.
// Victim readers are killed in the middle of it all, and the writer checks
// that no append ever waited.

type b6LogFlags struct {
	ready    int32  // verifying readers synced on message 0
	final    int32  // 1: total is set
	total    uint64 // messages (sequence numbers) in the log in the end
	slowest  int64  // the slowest Append of any writer, ns
	appended int64  // appends by all writers
	wseq     uint64 // the writers' Seq after their last complete append
}

func newB6Log(t *testing.T, capacity int) (string, *Managed, *Log, *b6LogFlags) {
	t.Helper()
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b6LogFlags{}))}
	cfg.AddLog(capacity, 0)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l, err := m.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := View[b6LogFlags](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Name, m, l, f
}

func b6OpenLog(name string) (*Managed, *Log, *b6LogFlags, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := m.Log(0)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	f, err := View[b6LogFlags](m.Data())
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return m, l, f, nil
}

// b6Fill makes b (16 bytes at least) message seq: the number, the length,
// a CRC of the rest, bytes that depend on seq.
func b6Fill(b []byte, seq uint64) {
	binary.LittleEndian.PutUint64(b, seq)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)))
	for i := 16; i < len(b); i++ {
		b[i] = byte(seq*131 + uint64(i)*7)
	}
	binary.LittleEndian.PutUint32(b[12:], b6Sum(b))
}

func b6Sum(b []byte) uint32 {
	s := crc32.ChecksumIEEE(b[:12])
	return crc32.Update(s, crc32.IEEETable, b[16:])
}

// b6Verify checks that b is a whole message; it returns its number.
func b6Verify(b []byte) (uint64, error) {
	if len(b) < 16 {
		return 0, fmt.Errorf("message of %d bytes", len(b))
	}
	if n := binary.LittleEndian.Uint32(b[8:]); int(n) != len(b) {
		return 0, fmt.Errorf("message of %d bytes says %d", len(b), n)
	}
	if binary.LittleEndian.Uint32(b[12:]) != b6Sum(b) {
		return 0, fmt.Errorf("message %d of %d bytes: bad checksum", binary.LittleEndian.Uint64(b), len(b))
	}
	return binary.LittleEndian.Uint64(b), nil
}

func b6Size(rnd *rand.Rand, max int) int { return 16 + rnd.IntN(max-16+1) }

func init() {
	// args: name, mode, count, seed. Modes: run (append until killed),
	// final (count appends, then set the total), die0 (count appends, then
	// die holding a claim), die1 (... with the payload half written), die2
	// (... with header and sequence written, last and tail not).
	registerChild("b6-logw", func(args []string) error {
		m, l, f, err := b6OpenLog(args[0])
		if err != nil {
			return err
		}
		mode := args[1]
		count, _ := strconv.Atoi(args[2])
		seed, _ := strconv.Atoi(args[3])
		rnd := rand.New(rand.NewPCG(uint64(seed), 6))
		var w *LogWriter
		before := fmt.Sprintf("tail %d intent %d head %d last %d ring % x", atomic.LoadUint64(l.tail), atomic.LoadUint64(l.intent), atomic.LoadUint64(l.head), atomic.LoadUint64(l.last), l.ring[:min(len(l.ring), 256)])
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
		if ws := atomic.LoadUint64(&f.wseq); w.Seq() != ws && w.Seq() != ws+1 {
			return fmt.Errorf("successor's Seq %d after a writer at %d; before: %s", w.Seq(), ws, before)
		}
		// This writer's Seq from the start: a writer killed after its
		// first append and before it stored wseq must not leave its
		// predecessor's there, which, when this one's recovery counted a
		// lost message, is two behind (a successor then found ws+2).
		atomic.StoreUint64(&f.wseq, w.Seq())
		buf := make([]byte, l.MaxMessage())
		pace := rnd.IntN(3) // 0: flat out; 1: pauses now and then; 2: a pause after every message
		appendOne := func() error {
			seq := w.Seq()
			n := b6Size(rnd, l.MaxMessage())
			t0 := time.Now()
			switch rnd.IntN(8) {
			case 0: // a claim filled in place and committed
				b, err := w.Claim(n)
				if err != nil {
					return err
				}
				b6Fill(b, seq)
				err = w.Commit()
				if err != nil {
					return err
				}
			case 1: // an aborted claim: takes no number
				b, err := w.Claim(n)
				if err != nil {
					return err
				}
				clear(b)
				if err := w.Abort(); err != nil {
					return err
				}
			default:
				b6Fill(buf[:n], seq)
				if err := w.Append(buf[:n]); err != nil {
					return err
				}
			}
			d := int64(time.Since(t0))
			for {
				s := atomic.LoadInt64(&f.slowest)
				if d <= s || atomic.CompareAndSwapInt64(&f.slowest, s, d) {
					break
				}
			}
			atomic.AddInt64(&f.appended, 1)
			atomic.StoreUint64(&f.wseq, w.Seq())
			switch {
			case pace == 1 && rnd.IntN(64) == 0:
				time.Sleep(time.Duration(rnd.IntN(200)) * time.Microsecond)
			case pace == 2:
				for t1 := time.Now(); time.Since(t1) < time.Duration(rnd.IntN(30))*time.Microsecond; {
				}
			}
			return nil
		}
		for i := 0; mode == "run" || i < count; i++ {
			if err := appendOne(); err != nil {
				return err
			}
		}
		switch mode {
		case "final":
			// The last one a message, not an abort (see
			// TestBreak6LogNewestAfterAbort for Stats after an abort).
			b6Fill(buf[:16], w.Seq())
			if err := w.Append(buf[:16]); err != nil {
				return err
			}
			atomic.StoreUint64(&f.total, w.Seq())
			atomic.StoreInt32(&f.final, 1)
			w.Close()
			m.Close()
			return nil
		case "die0":
			b, err := w.Claim(b6Size(rnd, l.MaxMessage()))
			if err != nil {
				return err
			}
			b6Fill(b, w.Seq())
		case "die1":
			n := b6Size(rnd, l.MaxMessage())
			start, _ := w.begin(uint64(n))
			b6Fill(buf[:n], w.Seq())
			copyToShared(l.ring, start&l.mask+qRecHeader, buf[:n/2&^7])
		case "die2":
			n := b6Size(rnd, l.MaxMessage())
			start, _ := w.begin(uint64(n))
			b6Fill(buf[:n], w.Seq())
			copyToShared(l.ring, start&l.mask+qRecHeader, buf[:n])
			storeOrdered(l.sq(start), w.seq)
			storeOrdered(l.hd(start), recHeader(uint64(n), recCommitted, 0))
		default:
			return fmt.Errorf("mode %q", mode)
		}
		os.Exit(0) // dead in the middle: no Close
		return nil
	})

	// args: name, id, seed, victim. Reads until the total is known and
	// reached; prints its counts. A victim reads (in place, mostly, and
	// slowly) until killed.
	registerChild("b6-logr", func(args []string) error {
		m, l, f, err := b6OpenLog(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		seed, _ := strconv.Atoi(args[2])
		victim := args[3] == "1"
		rnd := rand.New(rand.NewPCG(uint64(seed), 66))
		r, err := l.Reader(LogOldest)
		if err != nil {
			return err
		}
		defer r.Close()
		buf := make([]byte, l.MaxMessage())
		if victim {
			for {
				m, err := r.ReceiveTimeout(time.Duration(rnd.IntN(1000)) * time.Microsecond)
				if err == nil {
					_ = append([]byte(nil), m.Bytes()...)
					time.Sleep(time.Duration(rnd.IntN(300)) * time.Microsecond)
					r.Check(m)
				}
			}
		}
		// Message 0, appended before the readers started: it syncs the
		// reader's count.
		n, err := r.CopyTimeout(buf, 10*time.Second)
		if err != nil {
			return fmt.Errorf("message 0: %w", err)
		}
		if s, err := b6Verify(buf[:n]); err != nil || s != 0 {
			return fmt.Errorf("message 0: %d %v", s, err)
		}
		atomic.AddInt32(&f.ready, 1)
		next := uint64(1) // the number expected next
		var got, lost uint64 = 1, 0
		lostErr := func(err error, checked uint64, isCheck bool) error {
			var le *LostError
			if !errors.As(err, &le) || le.Count == 0 {
				return fmt.Errorf("ErrLost without a count: %v", err)
			}
			if isCheck {
				if le.Count != 1 || le.Seq != checked {
					return fmt.Errorf("Check of %d: %v", checked, err)
				}
				got--
				lost++
				return nil
			}
			if le.Seq != next {
				return fmt.Errorf("lost %d from %d, expected next %d", le.Count, le.Seq, next)
			}
			next += le.Count
			lost += le.Count
			return nil
		}
		durs := []time.Duration{1, time.Microsecond, 50 * time.Microsecond, time.Millisecond, 5 * time.Millisecond}
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		deadline := time.Now().Add(30 * time.Second)
		var lastErr error
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("not done: next %d, final %d, total %d; reader pos %d seq %d tail %d; log tail %d intent %d head %d last %d; last error %v", next, atomic.LoadInt32(&f.final), atomic.LoadUint64(&f.total),
					r.pos, r.seq, r.tail, atomic.LoadUint64(l.tail), atomic.LoadUint64(l.intent), atomic.LoadUint64(l.head), atomic.LoadUint64(l.last), lastErr)
			}
			var n int
			var err error
			var inPlace bool
			var msg LogMessage
			t0 := time.Now()
			d := durs[rnd.IntN(len(durs))]
			switch rnd.IntN(6) {
			case 0:
				n, err = r.CopyTimeout(buf, d)
			case 1:
				ctx, cancel := context.WithTimeout(context.Background(), d)
				n, err = r.CopyContext(ctx, buf)
				cancel()
			case 2:
				n, err = r.CopyContext(cancelled, buf)
				if err != nil && !errors.Is(err, context.Canceled) {
					return fmt.Errorf("cancelled context: %v", err)
				}
			case 3:
				n, err = r.TryCopy(buf)
			default:
				inPlace = true
				msg, err = r.ReceiveTimeout(d)
			}
			lastErr = err
			if el := time.Since(t0); el > d+2*time.Second {
				return fmt.Errorf("a wait of %v took %v", d, el)
			}
			switch {
			case errors.Is(err, ErrLost):
				if err := lostErr(err, 0, false); err != nil {
					return err
				}
				continue
			case errors.Is(err, ErrTimeout), errors.Is(err, ErrEmpty), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
				if atomic.LoadInt32(&f.final) == 1 {
					total := atomic.LoadUint64(&f.total)
					if next > total {
						return fmt.Errorf("expected %d, beyond the total %d", next, total)
					}
					if next == total {
						if _, err := r.TryCopy(buf); !errors.Is(err, ErrEmpty) {
							return fmt.Errorf("after the total: %v", err)
						}
						if got+lost != total || r.Received() != got || r.Lost() != lost {
							return fmt.Errorf("received %d (own count %d) + lost %d (own %d) != %d sent", r.Received(), got, r.Lost(), lost, total)
						}
						fmt.Printf("got %d lost %d\n", got, lost)
						return nil
					}
				}
				continue
			case err != nil:
				return fmt.Errorf("read at %d: %w", next, err)
			}
			if inPlace {
				b := append([]byte(nil), msg.Bytes()...)
				if rnd.IntN(4) == 0 {
					time.Sleep(time.Duration(rnd.IntN(100)) * time.Microsecond)
				}
				cerr := r.Check(msg)
				if msg.Seq() != next {
					return fmt.Errorf("in place: message numbered %d, expected %d", msg.Seq(), next)
				}
				next++
				got++
				if cerr != nil {
					if !errors.Is(cerr, ErrLost) {
						return fmt.Errorf("Check: %v", cerr)
					}
					if err := lostErr(cerr, msg.Seq(), true); err != nil {
						return err
					}
					continue
				}
				s, verr := b6Verify(b)
				if verr != nil || s != msg.Seq() {
					return fmt.Errorf("in place, Check said whole: message %d (%v): %v", msg.Seq(), s, verr)
				}
				continue
			}
			s, verr := b6Verify(buf[:n])
			if verr != nil {
				return fmt.Errorf("copied, expected %d: %v", next, verr)
			}
			if s != next {
				return fmt.Errorf("copied message %d, expected %d", s, next)
			}
			next++
			got++
		}
	})
}

func b6LogTorture(t *testing.T, capacity, rounds int) {
	b6FastExit(t)
	name, _, l, f := newB6Log(t, capacity)
	t0 := time.Now()
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 16)
	b6Fill(msg, 0)
	if err := w.Append(msg); err != nil {
		t.Fatal(err)
	}
	w.Close()
	const readers = 3
	var rs []*child
	for i := 0; i < readers; i++ {
		rs = append(rs, startChild(t, "b6-logr", name, strconv.Itoa(i), strconv.Itoa(rand.IntN(1<<30)), "0"))
	}
	for end := time.Now().Add(20 * time.Second); atomic.LoadInt32(&f.ready) < readers; {
		if time.Now().After(end) {
			t.Fatal("readers not ready")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("readers ready after %v", time.Since(t0))
	var victims []*child
	modes := []string{"run", "run", "die0", "die1", "die1", "die2", "die2"}
	for i := 0; i < rounds; i++ {
		if len(victims) < 2 {
			victims = append(victims, startChild(t, "b6-logr", name, "v", strconv.Itoa(rand.IntN(1<<30)), "1"))
		}
		mode := modes[rand.IntN(len(modes))]
		c := startChild(t, "b6-logw", name, mode, strconv.Itoa(rand.IntN(300)), strconv.Itoa(rand.IntN(1<<30)))
		if mode == "run" {
			time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
			c.kill()
			if c.err != nil && !c.killed {
				t.Fatalf("writer: %v\n%s", c.err, c.output())
			}
			if s := c.output(); s != "" {
				t.Fatalf("killed writer said: %s", s)
			}
		} else {
			c.wait(20 * time.Second)
		}
		if rand.IntN(2) == 0 {
			victims[0].kill()
			victims = victims[1:]
		}
	}
	startChild(t, "b6-logw", name, "final", "200", strconv.Itoa(rand.IntN(1<<30))).wait(20 * time.Second)
	for _, v := range victims {
		v.kill()
	}
	t.Logf("writers done after %v", time.Since(t0))
	for _, r := range rs {
		r.wait(60 * time.Second)
		t.Logf("reader: %s", r.output())
	}
	t.Logf("%d messages, %d appends; slowest append %v", f.total, f.appended, time.Duration(f.slowest))
	if time.Duration(f.slowest) > time.Second {
		t.Errorf("an append took %v: the writer waited", time.Duration(f.slowest))
	}
	t.Logf("readers done after %v", time.Since(t0))
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != f.total {
		t.Errorf("Stats.Messages %d, total %d", st.Messages, f.total)
	}
}

func TestBreak6LogProcTorture(t *testing.T) {
	rounds := 24
	if os.Getenv("SHM_TORTURE") != "" {
		rounds = 200
	}
	for _, capacity := range []int{512, 1024} {
		t.Run(strconv.Itoa(capacity), func(t *testing.T) { b6LogTorture(t, capacity, rounds) })
	}
}

// b6FastExit spares children the race detector's second of sleep at exit
// (the children of these tests exit, and die, a lot).
func b6FastExit(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}
