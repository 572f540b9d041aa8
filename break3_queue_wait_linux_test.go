//go:build linux

package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Timeouts, cancellations and Close against wake-ups.

// TestBreak3QueueTinyTimeoutsRace: producers and the consumer use timeouts
// of a few microseconds (and cancelled contexts) on a ring that is full and
// empty in turn: a give-up racing with a commit or a release must neither
// lose a message nor deliver one twice, nor claim space it then leaves
// unfilled; and each call returns about on time.
func TestBreak3QueueTinyTimeoutsRace(t *testing.T) {
	per := 10000
	if long() {
		per = 100000
	}
	const producers = 3
	_, q := newQueue(t, 256, 0)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	var late atomic.Int64 // calls that returned more than 100 ms after their deadline
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(p), 11))
			var prod *Producer
			if p == 0 {
				prod, _ = q.Producer()
			}
			buf := make([]byte, q.MaxMessage())
			for seq := 0; seq < per; {
				n := 13 + r.IntN(q.MaxMessage()-12)
				qmsg(buf[:n], uint32(p), uint64(seq))
				d := time.Duration(r.IntN(20)) * time.Microsecond
				start := time.Now()
				var err error
				switch r.IntN(3) {
				case 0:
					if prod != nil {
						err = prod.SendTimeout(buf[:n], d)
					} else {
						err = q.SendTimeout(buf[:n], d)
					}
				case 1:
					ctx, cancel := context.WithTimeout(context.Background(), d)
					var cl Claim
					if cl, err = q.ClaimContext(ctx, n); err == nil {
						copy(cl.Bytes(), buf[:n])
						err = cl.Commit()
					}
					cancel()
				case 2:
					ctx, cancel := context.WithCancel(context.Background())
					go func() { time.Sleep(d); cancel() }()
					err = q.SendContext(ctx, buf[:n])
					cancel()
				}
				if time.Since(start) > d+100*time.Millisecond {
					late.Add(1)
				}
				if err == nil {
					seq++
					continue
				}
				if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
					t.Errorf("producer %d: %v", p, err)
					return
				}
			}
		}(p)
	}
	r := rand.New(rand.NewPCG(9, 9))
	next := make([]uint64, producers)
	buf := make([]byte, q.MaxMessage())
	deadline := time.Now().Add(60 * time.Second)
	for got := 0; got < producers*per; {
		if time.Now().After(deadline) {
			t.Fatalf("after %d messages (next %v): the queue stopped moving:\n%s", got, next, q.b3State())
		}
		d := time.Duration(r.IntN(20)) * time.Microsecond
		start := time.Now()
		var b []byte
		var err error
		switch r.IntN(3) {
		case 0:
			var m Message
			if m, err = c.ReceiveTimeout(d); err == nil {
				b = append(buf[:0], m.Bytes()...)
				err = c.Release(m)
			}
		case 1:
			ctx, cancel := context.WithTimeout(context.Background(), d)
			var n int
			if n, err = c.CopyContext(ctx, buf); err == nil {
				b = buf[:n]
			}
			cancel()
		case 2:
			ctx, cancel := context.WithCancel(context.Background())
			go func() { time.Sleep(d); cancel() }()
			var m Message
			if m, err = c.ReceiveContext(ctx); err == nil {
				b = append(buf[:0], m.Bytes()...)
				err = c.Release(m)
			}
			cancel()
		}
		if time.Since(start) > d+100*time.Millisecond {
			late.Add(1)
		}
		if err != nil {
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Fatalf("consumer: %v", err)
			}
			continue
		}
		p, seq, err := qcheck(b)
		if err != nil || p >= producers {
			t.Fatalf("corrupt message: %v", err)
		}
		if seq != next[p] {
			t.Fatalf("producer %d: message %d, want %d", p, seq, next[p])
		}
		next[p]++
		got++
	}
	wg.Wait()
	if _, err := c.TryReceive(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("after the last message: %v", err)
	}
	st, _ := q.Stats()
	if st.Skipped != 0 || st.Head != st.Tail {
		t.Fatalf("stats %+v: a timed-out claim left space behind", st)
	}
	if n := late.Load(); n > 3 {
		t.Errorf("%d calls returned more than 100 ms after their deadline", n)
	}
}

// TestBreak3QueueCloseWhileWaiting: Queue.Close (and Managed.Close) while
// a consumer waits for a message (each form) and producers wait for room
// (each form): every wait ends with ErrClosed, promptly.
func TestBreak3QueueCloseWhileWaiting(t *testing.T) {
	for _, how := range []string{"Queue.Close", "Managed.Close"} {
		t.Run(how, func(t *testing.T) {
			// Queues 0 and 2 are empty: their consumers wait. Queue 1 is
			// full: its producers wait.
			cfg := Config{Name: testName(t), Size: 64}
			cfg.AddQueue(256, 0)
			cfg.AddQueue(256, 0)
			cfg.AddQueue(256, 0)
			m, err := cfg.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			q0, _ := m.Queue(0)
			q1, _ := m.Queue(1)
			q2, _ := m.Queue(2)
			c, err := q0.Consumer()
			if err != nil {
				t.Fatal(err)
			}
			c2, err := q2.Consumer()
			if err != nil {
				t.Fatal(err)
			}
			for q1.TrySend(make([]byte, 48)) == nil {
			}
			p, err := q1.Producer()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type res struct {
				who string
				err error
			}
			out := make(chan res, 16)
			run := func(who string, f func() error) { go func() { out <- res{who, f()} }() }
			run("Receive", func() error { _, err := c.Receive(); return err })
			run("ReceiveContext", func() error { _, err := c2.ReceiveContext(ctx); return err })
			run("Claim", func() error { _, err := q1.Claim(48); return err })
			run("ClaimTimeout", func() error { _, err := q1.ClaimTimeout(48, time.Minute); return err })
			run("ClaimContext", func() error { _, err := q1.ClaimContext(ctx, 48); return err })
			run("Send", func() error { return q1.Send(make([]byte, 48)) })
			run("Producer.Send", func() error { return p.Send(make([]byte, 48)) })
			const waits = 7
			time.Sleep(50 * time.Millisecond)
			start := time.Now()
			if how == "Queue.Close" {
				q0.Close()
				q1.Close()
				q2.Close()
			} else {
				m.Close()
			}
			for i := 0; i < waits; i++ {
				select {
				case r := <-out:
					if !errors.Is(r.err, ErrClosed) {
						t.Errorf("%s: %v, want ErrClosed", r.who, r.err)
					}
				case <-time.After(2 * time.Second):
					t.Fatalf("a wait did not end within 2 s of %s", how)
				}
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("the waits took %v to end", d)
			}
		})
	}
}

func init() {
	// args: name, n: send n messages of 16 bytes (two fill the ring) with
	// blocking Send, spinning off.
	registerChild("brk3-q-pingpong", func(args []string) error {
		SetSpin(0)
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		q, _ := m.Queue(0)
		n := atoi(args[1])
		b := make([]byte, 16)
		for i := 0; i < n; i++ {
			qmsg(b, 0, uint64(i))
			if err := q.Send(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestBreak3QueueBothAsleep: a producer process and the consumer on a ring
// of two records, spinning off: both sides sleep in the kernel on nearly
// every message, the producer for room and the consumer for data, often at
// once. A lost wake-up shows as a stall of a whole sleep slice (100 ms)
// before the sleeper looks again; count them.
func TestBreak3QueueBothAsleep(t *testing.T) {
	n := 20000
	if long() {
		n = 500000
	}
	old := SetSpin(0)
	defer SetSpin(old)
	cfg := Config{Name: testName(t), Size: 64}
	cfg.AddQueue(64, 16)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q, _ := m.Queue(0)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	ch := startChild(t, "brk3-q-pingpong", cfg.Name, strconv.Itoa(n))
	var stalls []string
	last := time.Now()
	start := last
	for i := 0; i < n; i++ {
		msg, err := c.ReceiveTimeout(10 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v\n%s", i, err, q.b3State())
		}
		if _, seq, err := qcheck(msg.Bytes()); err != nil || seq != uint64(i) {
			t.Fatalf("message %d: seq %d, %v", i, seq, err)
		}
		c.Release(msg)
		now := time.Now()
		if d := now.Sub(last); d > 90*time.Millisecond {
			stalls = append(stalls, fmt.Sprintf("message %d after %v", i, d))
		}
		last = now
	}
	ch.wait(10 * time.Second)
	t.Logf("%d messages in %v", n, time.Since(start))
	if len(stalls) > 2 {
		t.Errorf("%d stalls of a sleep slice (lost wake-ups?): %v", len(stalls), stalls)
	} else if len(stalls) > 0 {
		t.Logf("stalls (scheduling?): %v", stalls)
	}
}
