//go:build linux

package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Round 8 across processes: writers killed between their store of last
// and of tail, or after tail and before the wake; Stats().Messages beside
// a writer appending flat out, killed again and again.

type b8Ctr struct {
	Started  uint64 // the number after the message being appended: stored before Append
	Done     uint64 // stored after
	AttachNs uint64 // when the writer attached (unix ns)
	State    uint64 // 1: the child's dead state is made
}

func b8NewLog(t *testing.T, capacity int) (*Log, *b8Ctr, string) {
	t.Helper()
	c := Config{Name: testName(t), Size: 64}
	c.AddLog(capacity, 0)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l, err := m.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := View[b8Ctr](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	return l, f, c.Name
}

func b8Open(name string) (*Log, *b8Ctr, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, err
	}
	l, err := m.Log(0)
	if err != nil {
		return nil, nil, err
	}
	f, err := View[b8Ctr](m.Data())
	return l, f, err
}

func b8Writer(l *Log) (*LogWriter, error) {
	for end := time.Now().Add(5 * time.Second); ; {
		w, err := l.Writer()
		if err == nil || !errors.Is(err, ErrInUse) || time.Now().After(end) {
			return w, err
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func init() {
	// args: name, mode, count, seed.
	registerChild("b8-logw", func(args []string) error {
		l, f, err := b8Open(args[0])
		if err != nil {
			return err
		}
		count, _ := strconv.Atoi(args[2])
		seed, _ := strconv.Atoi(args[3])
		w, err := b8Writer(l)
		if err != nil {
			return err
		}
		atomic.StoreUint64(&f.AttachNs, uint64(time.Now().UnixNano()))
		atomic.StoreUint64(&f.Started, w.Seq())
		atomic.StoreUint64(&f.Done, w.Seq())
		for i := 0; i < count; i++ {
			if err := w.Append(b6Msg(w.Seq(), 24)); err != nil {
				return err
			}
		}
		switch args[1] {
		case "dielast": // killed between last and tail
			b8Die(w, 48, false, seed&1 == 1)
		case "diewake": // killed between tail and the wake
			start, wk := w.begin(24)
			if !wk {
				return fmt.Errorf("no sleeper seen")
			}
			copyToShared(l.ring, start&l.mask+qRecHeader, b6Msg(w.seq, 24))
			w.publish(start, 24, recCommitted, false)
		case "attach":
		case "flat":
			rnd := rand.New(rand.NewPCG(uint64(seed), 8))
			buf := make([]byte, l.MaxMessage())
			for {
				s := w.Seq()
				if rnd.IntN(8) == 0 {
					// A claim dies lost: count it begun.
					atomic.StoreUint64(&f.Started, s+1)
					b, err := w.Claim(rnd.IntN(len(buf)))
					if err != nil {
						return err
					}
					copy(b, b6Msg(s, len(b)))
					if rnd.IntN(2) == 0 {
						if err := w.Abort(); err != nil {
							return err
						}
						continue
					}
					atomic.StoreUint64(&f.Started, s+1)
					if err := w.Commit(); err != nil {
						return err
					}
				} else {
					atomic.StoreUint64(&f.Started, s+1)
					if err := w.Append(b6Msg(s, 8+rnd.IntN(len(buf)-8))); err != nil {
						return err
					}
				}
				atomic.StoreUint64(&f.Done, s+1)
			}
		}
		atomic.StoreUint64(&f.State, 1)
		time.Sleep(time.Minute)
		return nil
	})
}

func b8WaitState(t *testing.T, f *b8Ctr, c *child) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); atomic.LoadUint64(&f.State) == 0; {
		if time.Now().After(end) {
			c.kill()
			t.Fatalf("the child never made its state: %s", c.output())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestBreak8LogProcDiedAfterLast: a writer process killed between its
// store of last and of tail, with readers asleep (they started before)
// and readers that start after (LogNext, LogNewest, LogOldest). The
// readers wait without spinning (a 200 ms wait times out on time, using
// little CPU); the successor (this process) reports the dead message lost
// to the sleepers within a few ms of attaching, and every reader gets
// every number from its start on.
func TestBreak8LogProcDiedAfterLast(t *testing.T) {
	for seed := 0; seed < 4; seed++ {
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			l, f, name := b8NewLog(t, 512)
			before := []int{3, 10}[seed/2]
			sl, err := l.Reader(LogNext) // asleep before the writer comes
			if err != nil {
				t.Fatal(err)
			}
			defer sl.Close()
			type res struct {
				got []b8Event
				at  time.Time
				err error
			}
			final := uint64(before) + 5
			slOut := make(chan res, 1)
			firstAt := make(chan time.Time, 1)
			go func() {
				var got []b8Event
				buf := make([]byte, 64)
				for {
					n, err := sl.Copy(buf)
					if len(got) == 0 {
						firstAt <- time.Now()
					}
					var le *LostError
					if errors.As(err, &le) {
						got = append(got, b8Event{le.Seq, le.Count})
						continue
					}
					if err != nil {
						slOut <- res{got, time.Now(), err}
						return
					}
					s := b6Seq(buf[:n])
					got = append(got, b8Event{seq: s})
					if s == final {
						slOut <- res{got, time.Now(), nil}
						return
					}
				}
			}()
			c := startChild(t, "b8-logw", name, "dielast", strconv.Itoa(before), strconv.Itoa(seed))
			b8WaitState(t, f, c)
			{
				// The writer alive, frozen between last and tail: a
				// reader started now waits in short slices, but asleep.
				r, err := l.Reader(LogNext)
				if err != nil {
					t.Fatal(err)
				}
				c0, t0 := b8CPU(), time.Now()
				_, err = r.CopyTimeout(make([]byte, 64), 200*time.Millisecond)
				el, cpu := time.Since(t0), b8CPU()-c0
				r.Close()
				if !errors.Is(err, ErrTimeout) || el > 300*time.Millisecond || cpu > 60*time.Millisecond {
					t.Errorf("a 200ms wait, the writer alive and stuck: %v after %v, %v of CPU", err, el, cpu)
				}
			}
			c.kill()
			// The sleeper got the messages before the dead one by now.
			time.Sleep(20 * time.Millisecond)
			var rs []*LogReader
			froms := []LogStart{LogNext, LogNewest, LogOldest}
			var firsts []uint64
			for _, fr := range froms {
				r, err := l.Reader(fr)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				rs = append(rs, r)
				firsts = append(firsts, r.seq)
			}
			buf := make([]byte, 64)
			c0, t0 := b8CPU(), time.Now()
			_, err = rs[0].CopyTimeout(buf, 200*time.Millisecond)
			el, cpu := time.Since(t0), b8CPU()-c0
			if !errors.Is(err, ErrTimeout) || el < 200*time.Millisecond || el > 300*time.Millisecond {
				t.Errorf("a 200ms wait: %v after %v", err, el)
			}
			// The whole process: the sleeper too.
			if cpu > 60*time.Millisecond {
				t.Errorf("a 200ms wait (and a sleeper) with the writer dead used %v of CPU", cpu)
			}
			for i := 1; i < len(rs); i++ {
				for {
					_, err := rs[i].TryCopy(buf)
					if errors.Is(err, ErrEmpty) {
						break
					}
					if err != nil && !errors.Is(err, ErrLost) {
						t.Fatal(err)
					}
				}
			}
			outs := make([]chan res, len(rs))
			for i, r := range rs {
				outs[i] = make(chan res, 1)
				go func() {
					g, err := b8Read(r, final)
					outs[i] <- res{g, time.Now(), err}
				}()
			}
			time.Sleep(10 * time.Millisecond)
			t1 := time.Now()
			w, err := l.Writer()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			select {
			case at := <-firstAt:
				if d := at.Sub(t1); d > 5*time.Millisecond {
					t.Errorf("the sleeper heard of the lost message %v after the successor attached", d)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the sleeper never woke")
			}
			for w.Seq() <= final {
				if err := w.Append(b6Msg(w.Seq(), 16)); err != nil {
					t.Fatal(err)
				}
			}
			st, _ := l.Stats()
			g := <-slOut
			if g.err != nil {
				t.Fatal(g.err)
			}
			if _, _, err := b8CheckEvents(g.got, 0, final); err != nil {
				t.Errorf("sleeper: %v", err)
			}
			for i := range rs {
				select {
				case g := <-outs[i]:
					if g.err != nil {
						t.Fatalf("reader %v: %v", froms[i], g.err)
					}
					// rs[i] drained what was there before: check the tail
					// of its events and its counts.
					if rs[i].Received()+rs[i].Lost() != st.Messages-firsts[i] {
						t.Errorf("reader %v: received %d + lost %d, %d appended since its start", froms[i], rs[i].Received(), rs[i].Lost(), st.Messages-firsts[i])
					}
					if len(g.got) == 0 || g.got[len(g.got)-1].seq != final {
						t.Errorf("reader %v: %v", froms[i], g.got)
					}
				case <-time.After(3 * time.Second):
					t.Fatalf("reader %v hangs", froms[i])
				}
			}
		})
	}
}

func b6Seq(b []byte) uint64 {
	var s uint64
	for i := 7; i >= 0 && i < len(b); i-- {
		s = s<<8 | uint64(b[i])
	}
	return s
}

// TestBreak8LogProcWakeAfterPublish: readers asleep across a writer
// process that published a message and was killed before its wake; the
// successor, another process, attaches: the readers get the message within
// a few ms of its attaching (not when their sleep slice ends).
func TestBreak8LogProcWakeAfterPublish(t *testing.T) {
	l, f, name := b8NewLog(t, 512)
	var rs []*LogReader
	for i := 0; i < 4; i++ {
		r, err := l.Reader(LogNext)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rs = append(rs, r)
	}
	got := make(chan time.Time, len(rs))
	errs := make(chan error, len(rs))
	for i, r := range rs {
		go func() {
			buf := make([]byte, 64)
			for {
				var err error
				switch i {
				case 0:
					_, err = r.Copy(buf)
				case 1:
					_, err = r.CopyTimeout(buf, 10*time.Second)
				case 2:
					_, err = r.CopyTimeout(buf, time.Duration(rand.IntN(1000)))
				case 3:
					var m LogMessage
					m, err = r.Receive()
					if err == nil {
						err = r.Check(m)
					}
				}
				if errors.Is(err, ErrTimeout) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				got <- time.Now()
				return
			}
		}()
	}
	b7Sleeping(t, l)
	c := startChild(t, "b8-logw", name, "diewake", "0", "0")
	b8WaitState(t, f, c)
	c.kill()
	time.Sleep(5 * time.Millisecond)
	atomic.StoreUint64(&f.AttachNs, 0)
	c2 := startChild(t, "b8-logw", name, "attach", "0", "0")
	b8WaitState(t, f, c2) // State stays 1: wait for AttachNs instead
	for end := time.Now().Add(5 * time.Second); atomic.LoadUint64(&f.AttachNs) == 0; {
		if time.Now().After(end) {
			t.Fatal("the successor never attached")
		}
		time.Sleep(100 * time.Microsecond)
	}
	att := time.Unix(0, int64(atomic.LoadUint64(&f.AttachNs)))
	for range rs {
		select {
		case at := <-got:
			// A reader on a 1 us..1 ms timeout may have found it itself,
			// before the successor: that is fine.
			if d := at.Sub(att); d > 5*time.Millisecond {
				t.Errorf("a reader got the published message %v after the successor attached", d)
			}
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(3 * time.Second):
			t.Fatal("a reader never got the message")
		}
	}
	c2.kill()
}

// TestBreak8LogProcMessagesRace: Stats().Messages while a writer process
// appends flat out (appends, claims committed and aborted) into a 256-byte
// ring, killed at random times and replaced: never below the messages
// published before the call, never above those begun after, never going
// back; readers started meanwhile start at a number in those bounds.
func TestBreak8LogProcMessagesRace(t *testing.T) {
	l, f, name := b8NewLog(t, 256)
	var prev uint64
	calls, zeros := 0, 0
	for round := 0; round < 6; round++ {
		atomic.StoreUint64(&f.AttachNs, 0)
		c := startChild(t, "b8-logw", name, "flat", "0", strconv.Itoa(round))
		for atomic.LoadUint64(&f.AttachNs) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
		end := time.Now().Add(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		killed := false
		for time.Now().Before(end) || !killed {
			if !killed && !time.Now().Before(end) {
				c.kill()
				killed = true
			}
			lo := atomic.LoadUint64(&f.Done)
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			hi := atomic.LoadUint64(&f.Started)
			calls++
			if st.Messages == 0 {
				zeros++
			}
			if st.Messages < lo || st.Messages > hi {
				t.Fatalf("round %d: %d messages, published before %d, begun after %d", round, st.Messages, lo, hi)
			}
			if st.Messages < prev {
				t.Fatalf("round %d: %d messages after %d", round, st.Messages, prev)
			}
			prev = st.Messages
			if calls%64 == 0 {
				// A reader starting at LogNext: its first number is
				// between the published before and the begun after (+1:
				// the end of a record stored, not yet published).
				fr := LogStart(calls / 64 % 3)
				lo := atomic.LoadUint64(&f.Done)
				r, err := l.Reader(fr)
				if err != nil {
					t.Fatalf("round %d: reader %v: %v", round, fr, err)
				}
				hi := atomic.LoadUint64(&f.Started)
				if fr == LogNext && (r.seq < lo || r.seq > hi+1) {
					t.Errorf("round %d: LogNext reader starts at %d, published before %d, begun after %d", round, r.seq, lo, hi)
				}
				if fr != LogNext && r.seq > hi+1 {
					t.Errorf("round %d: reader %v starts at %d, begun after %d", round, fr, r.seq, hi)
				}
				if _, err := r.TryCopy(make([]byte, 64)); err != nil && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrLost) {
					t.Errorf("round %d: reader %v: %v", round, fr, err)
				}
				r.Close()
			}
		}
		// Dead: Stats stays put.
		st, _ := l.Stats()
		if st.Messages < atomic.LoadUint64(&f.Done) || st.Messages > atomic.LoadUint64(&f.Started) {
			t.Fatalf("dead writer: %d messages, done %d, started %d", st.Messages, f.Done, f.Started)
		}
	}
	t.Logf("%d calls, %d messages, %d lost with writers", calls, prev, func() uint64 { s, _ := l.Stats(); return s.WriterLost }())
}
