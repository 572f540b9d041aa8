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

// The sleep mark against processes that die: consumers killed while
// marked, producers killed at random while the consumer sleeps and wakes,
// and damaged tail words under a sleeping consumer.

func init() {
	// args: name: attach as the consumer, spinning off, and wait for a
	// message (the queue is empty: it sleeps marked) until killed.
	registerChild("brk4-q-sleeper", func(args []string) error {
		SetSpin(0)
		q, f, err := b4Open(args[0])
		if err != nil {
			return err
		}
		c, err := q.Consumer()
		if err != nil {
			return err
		}
		atomic.AddInt32(&f.ready, 1)
		for {
			if m, err := c.Receive(); err != nil {
				return err
			} else {
				c.Release(m)
			}
		}
	})
	// args: name, id: send stamped messages (sizes 20 to fastSend+1,
	// Send or Claim and Commit, random pauses up to 400 µs before half of them) until killed.
	registerChild("brk4-q-storm", func(args []string) error {
		q, f, err := b4Open(args[0])
		if err != nil {
			return err
		}
		id := atoi(args[1])
		atomic.AddInt32(&f.ready, 1)
		r := rand.New(rand.NewPCG(uint64(id), 4))
		b := make([]byte, fastSend+1)
		sizes := []int{20, 64, 1000, fastSend, fastSend + 1}
		for seq := uint64(0); ; seq++ {
			if r.IntN(2) == 0 {
				time.Sleep(time.Duration(r.IntN(400)) * time.Microsecond)
			}
			n := sizes[r.IntN(len(sizes))]
			b4Stamp(b[:n], uint32(id), seq)
			if r.IntN(3) == 0 {
				c, err := q.Claim(n)
				if err != nil {
					return err
				}
				copy(c.Bytes(), b[:n])
				if err := c.Commit(); err != nil {
					return err
				}
			} else if err := q.Send(b[:n]); err != nil {
				return err
			}
		}
	})
}

// TestBreak4QueueConsumerKilledMarked: a consumer process sleeps marked on
// an empty queue and is killed there: tail keeps its mark, cwake its bit 0.
// The next claim must take both off (one wake-up, for nobody), and no
// later Send or Commit may find either again (a system call each, for
// ever); a new consumer then receives every message, and its own sleeps
// are woken on time.
func TestBreak4QueueConsumerKilledMarked(t *testing.T) {
	name, _, q, f := newB4Queue(t, 1<<16)
	sl := startChild(t, "brk4-q-sleeper", name)
	if !b4Until(&f.ready, 1, 20*time.Second) {
		t.Fatalf("consumer not ready: %s", sl.output())
	}
	for end := time.Now().Add(5 * time.Second); atomic.LoadUint64(q.tail)&tailSleep == 0 || atomic.LoadUint32(q.cwake)&1 == 0; {
		if time.Now().After(end) {
			t.Fatalf("the consumer did not sleep marked: %s", q.debugState())
		}
		time.Sleep(100 * time.Microsecond)
	}
	sl.kill()
	b := make([]byte, 64)
	for i := 0; i < 200; i++ {
		b4Stamp(b, 0, uint64(i))
		var err error
		switch i % 3 {
		case 0:
			err = q.Send(b)
		case 1:
			var c Claim
			if c, err = q.Claim(len(b)); err == nil {
				copy(c.Bytes(), b)
				err = c.Commit()
			}
		case 2:
			big := make([]byte, fastSend+1)
			copy(big, b)
			err = q.Send(big)
		}
		if err != nil {
			t.Fatal(err)
		}
		if tl, w := atomic.LoadUint64(q.tail), atomic.LoadUint32(q.cwake); tl&tailSleep != 0 || w&1 != 0 {
			t.Fatalf("after message %d: tail %#x cwake %#x: the dead consumer's mark or bit stays, every commit wakes nobody", i, tl, w)
		}
		if i%10 == 9 {
			// Make room: a new consumer takes the dead one's place.
			c, err := q.Consumer()
			if err != nil {
				t.Fatal(err)
			}
			for {
				m, err := c.TryReceive()
				if errors.Is(err, ErrEmpty) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				c.Release(m)
			}
			c.Close()
		}
	}
	// A consumer in this process: every message left, then its sleeps.
	old := SetSpin(0)
	defer SetSpin(old)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		m, err := c.TryReceive()
		if errors.Is(err, ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Release(m)
	}
	send := startChild(t, "brk4-q-stamp", name, "0", "mix", "64", "100", "2000")
	if !b4Until(&f.ready, 2, 20*time.Second) {
		t.Fatal("producer not ready")
	}
	atomic.StoreInt32(&f.sendGo, 1)
	ds := b4Delays(t, q, c, 100, 1)
	send.wait(10 * time.Second)
	s, over := b4Summary(ds, 5*time.Millisecond)
	t.Log(s)
	if over > 3 {
		t.Errorf("the consumer after a dead marked one: %s", s)
	}
}

// TestBreak4QueueProducerStorm: producer processes send stamped messages
// of every kind (short and long Sends, Claim and Commit) with pauses, so
// that the consumer (spinning off) sleeps and marks tail between them,
// while the test kills a producer with SIGKILL every few milliseconds and
// starts another. Every producer's messages arrive in order without gaps
// (the last one of a killed producer may be lost); no message waits much
// longer than a dead claim may hold it (20 ms).
func TestBreak4QueueProducerStorm(t *testing.T) {
	dur := 3 * time.Second
	if long() {
		dur = 30 * time.Second
	}
	old := SetSpin(0)
	defer SetSpin(old)
	name, _, q, _ := newB4Queue(t, 1<<16)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const live = 3
	var procs []*child
	id := 0
	start := func() {
		procs = append(procs, startChild(t, "brk4-q-storm", name, strconv.Itoa(id)))
		id++
	}
	for i := 0; i < live; i++ {
		start()
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	var kills atomic.Int32
	go func() {
		r := rand.New(rand.NewPCG(7, 7))
		for {
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(time.Duration(5+r.IntN(30)) * time.Millisecond):
			}
			k := r.IntN(len(procs))
			procs[k].kill()
			kills.Add(1)
			procs[k] = procs[len(procs)-1]
			procs = procs[:len(procs)-1]
			start()
		}
	}()
	next := map[uint32]uint64{}
	var slow []string
	n := 0
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		m, err := c.ReceiveTimeout(2 * time.Second)
		now := time.Now()
		if err != nil {
			close(stop)
			<-done
			t.Fatalf("after %d messages: %v\n%s", n, err, q.b3State())
		}
		p, seq, at := b4Unstamp(m.Bytes())
		if want := next[p]; seq != want {
			close(stop)
			<-done
			t.Fatalf("producer %d: message %d, want %d", p, seq, want)
		}
		next[p] = seq + 1
		if d := now.Sub(at); d > 60*time.Millisecond {
			slow = append(slow, fmt.Sprintf("%d/%d after %v", p, seq, d))
		}
		c.Release(m)
		n++
	}
	close(stop)
	<-done
	st, _ := q.Stats()
	t.Logf("%d messages from %d producers, %d killed; skipped %d; slow: %v", n, id, kills.Load(), st.Skipped, slow)
	if n < 1000 {
		t.Errorf("only %d messages in %v", n, dur)
	}
	if len(slow) > 3 {
		t.Errorf("%d messages took more than 60 ms: %v", len(slow), slow)
	}
}

func init() {
	// args: name: send 5 short messages and 1 long one (each with a
	// timeout), then Claim and Commit one, printing each error.
	registerChild("brk4-q-damsend", func(args []string) error {
		q, f, err := b4Open(args[0])
		if err != nil {
			return err
		}
		atomic.AddInt32(&f.ready, 1)
		for atomic.LoadInt32(&f.sendGo) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
		for i := 0; i < 6; i++ {
			n := 32
			if i == 5 {
				n = fastSend + 1
			}
			fmt.Println("send:", q.SendTimeout(make([]byte, n), 300*time.Millisecond))
		}
		c, err := q.ClaimTimeout(32, 300*time.Millisecond)
		if err == nil {
			err = c.Commit()
		}
		fmt.Println("claim:", err)
		atomic.StoreInt32(&f.sent, 1)
		return nil
	})
}

// TestBreak4QueueDamagedTailWhileMarked: the consumer sleeps marked at r;
// tail is overwritten with damaged values (bit 0 set or not, positions
// that are not multiples of 16, behind r, far ahead, near 2^64); a
// producer process then sends. Every call must end (ErrCorrupt, a
// timeout, or a message) within its time: no panic, no hang.
func TestBreak4QueueDamagedTailWhileMarked(t *testing.T) {
	old := SetSpin(0)
	defer SetSpin(old)
	for _, tc := range []struct {
		name string
		v    func(r, capacity uint64) uint64
	}{
		{"r+2", func(r, _ uint64) uint64 { return r + 2 }},
		{"r+3", func(r, _ uint64) uint64 { return r + 3 }},
		{"r+9", func(r, _ uint64) uint64 { return r + 9 }},
		{"r+17", func(r, _ uint64) uint64 { return r + 17 }},
		{"r-16|1", func(r, _ uint64) uint64 { return (r - 16) | 1 }},
		{"r-1", func(r, _ uint64) uint64 { return r - 1 }},
		{"r+cap|1", func(r, c uint64) uint64 { return (r + c) | 1 }},
		{"r+4cap|1", func(r, c uint64) uint64 { return (r + 4*c) | 1 }},
		{"2^64-15", func(_, _ uint64) uint64 { return 1<<64 - 15 }},
		{"2^64-1", func(_, _ uint64) uint64 { return 1<<64 - 1 }},
		{"2^64-16", func(_, _ uint64) uint64 { return 1<<64 - 16 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, _, q, f := newB4Queue(t, 1<<14)
			c, err := q.Consumer()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := 0; i < 3; i++ { // r = 96
				q.Send(make([]byte, 16))
				m, _ := c.Receive()
				c.Release(m)
			}
			r := c.read // the consumer's position, before it runs in its goroutine
			ch := startChild(t, "brk4-q-damsend", name)
			if !b4Until(&f.ready, 1, 20*time.Second) {
				t.Fatal("producer not ready")
			}
			type res struct {
				err error
				n   int
			}
			out := make(chan res, 1)
			go func() {
				n := 0
				for {
					m, err := c.ReceiveTimeout(time.Second)
					if err != nil {
						out <- res{err, n}
						return
					}
					n++
					c.Release(m)
				}
			}()
			for end := time.Now().Add(5 * time.Second); atomic.LoadUint64(q.tail)&tailSleep == 0; {
				if time.Now().After(end) {
					t.Fatalf("the consumer did not mark tail: %s", q.debugState())
				}
				time.Sleep(20 * time.Microsecond)
			}
			atomic.StoreUint64(q.tail, tc.v(r, uint64(q.Capacity())))
			atomic.StoreInt32(&f.sendGo, 1)
			start := time.Now()
			select {
			case rs := <-out:
				t.Logf("consumer: %d messages, then %v after %v", rs.n, rs.err, time.Since(start))
				if !errors.Is(rs.err, ErrCorrupt) && !errors.Is(rs.err, ErrTimeout) {
					t.Errorf("consumer: %v", rs.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the consumer hangs: %s", q.debugState())
			}
			if err := ch.waitErr(10 * time.Second); err != nil {
				t.Fatalf("producer: %v\n%s", err, ch.output())
			}
			t.Logf("producer: %s", ch.output())
		})
	}
}

// TestBreak4QueueCloseRacesMarkedSleep: a consumer (another handle of the
// segment, in this process) sleeps marked; a producer process sends 3
// messages while the handle is closed, at random moments (0 to 1.5 ms) around the first
// claim, which takes the mark. Close must end the wait at once; when it
// returns, the closed consumer's mark is off tail (or a claim took it),
// and a new consumer receives every message the closed one did not
// release, in order, without a stall.
func TestBreak4QueueCloseRacesMarkedSleep(t *testing.T) {
	old := SetSpin(0)
	defer SetSpin(old)
	trials := 30
	if long() {
		trials = 300
	}
	r := rand.New(rand.NewPCG(3, 3))
	var hist [4]int
	defer func() { t.Logf("messages the closed consumer released, 0 to 3: %v trials", hist) }()
	for trial := 0; trial < trials; trial++ {
		name, _, q, f := newB4Queue(t, 4096)
		m2, err := OpenManaged(name)
		if err != nil {
			t.Fatal(err)
		}
		q2, _ := m2.Queue(0)
		c2, err := q2.Consumer()
		if err != nil {
			t.Fatal(err)
		}
		ch := startChild(t, "brk4-q-stamp", name, "0", "send", "64", "3", "0")
		if !b4Until(&f.ready, 1, 20*time.Second) {
			t.Fatal("producer not ready")
		}
		released := make(chan int, 1)
		go func() {
			n := 0
			for {
				m, err := c2.Receive()
				if err != nil {
					released <- n
					return
				}
				if _, seq, _ := b4Unstamp(m.Bytes()); seq != uint64(n) {
					t.Errorf("trial %d: the first consumer got %d, want %d", trial, seq, n)
				}
				if c2.Release(m) != nil {
					released <- n
					return
				}
				n++
			}
		}()
		for end := time.Now().Add(5 * time.Second); atomic.LoadUint64(q.tail)&tailSleep == 0; {
			if time.Now().After(end) {
				t.Fatalf("the consumer did not mark tail: %s", q.debugState())
			}
			time.Sleep(20 * time.Microsecond)
		}
		atomic.StoreInt32(&f.sendGo, 1)
		for end := time.Now().Add(time.Duration(r.IntN(1500)) * time.Microsecond); time.Now().Before(end); {
		}
		start := time.Now()
		q2.Close()
		var n int
		select {
		case n = <-released:
		case <-time.After(2 * time.Second):
			t.Fatalf("trial %d: the wait did not end after Close", trial)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("trial %d: Close took %v", trial, d)
		}
		hist[min(n, 3)]++
		ch.wait(10 * time.Second)
		if tl := atomic.LoadUint64(q.tail); tl&tailSleep != 0 {
			t.Fatalf("trial %d: the closed consumer's mark stays on tail: %s", trial, q.debugState())
		}
		m2.Close()
		c, err := q.Consumer()
		if err != nil {
			t.Fatal(err)
		}
		for seq := n; seq < 3; seq++ {
			m, err := c.ReceiveTimeout(time.Second)
			if err != nil {
				t.Fatalf("trial %d: message %d (the first consumer released %d): %v\n%s", trial, seq, n, err, q.b3State())
			}
			if _, s, _ := b4Unstamp(m.Bytes()); s != uint64(seq) {
				t.Fatalf("trial %d: got %d, want %d", trial, s, seq)
			}
			c.Release(m)
		}
		if _, err := c.TryReceive(); !errors.Is(err, ErrEmpty) {
			t.Fatalf("trial %d: after the last: %v", trial, err)
		}
		c.Close()
	}
}
