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
	"unsafe"
)

// Many producer processes on a tiny ring (256 bytes: two of the largest
// records), so that it wraps all the time and is full nearly always; every
// few tens of milliseconds one producer is killed (SIGKILL, wherever it is:
// in a claim, between its slot store and its CAS, waiting for room) and a
// new one started. The consumer checks every message: per-producer order,
// no gap (a gap is a committed message lost: a producer only ever commits
// its sequence numbers in order), no duplicate; the queue never stops
// moving for long while live producers want to send; at the end every
// message a producer recorded as committed was delivered.

const b3MaxProducers = 1024

type b3Area struct {
	committed [b3MaxProducers]int64 // last sequence committed, as the producer recorded it (+1; 0: none)
	inClaim   [b3MaxProducers]int32 // the producer holds a claim (between its claim and its commit)
	stop      int32
}

func b3Open(name string) (*Managed, *Queue, *b3Area, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, nil, err
	}
	q, err := m.Queue(0)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	a, err := View[b3Area](m.Data())
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return m, q, a, nil
}

func init() {
	// args: name, producer id: send checked messages of random sizes until
	// told to stop, recording every commit. A claim that waits more than
	// 20 s is an error (the queue stopped moving).
	registerChild("brk3-q-churn", func(args []string) error {
		m, q, a, err := b3Open(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		id := atoi(args[1])
		r := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
		var p *Producer
		if id%2 == 1 {
			if p, err = q.Producer(); err != nil {
				return err
			}
		}
		for seq := int64(0); atomic.LoadInt32(&a.stop) == 0; seq++ {
			n := 13 + r.IntN(q.MaxMessage()-12)
			if r.IntN(4) == 0 {
				n = q.MaxMessage()
			}
			var c Claim
			if p != nil {
				c, err = p.ClaimTimeout(n, 20*time.Second)
			} else {
				c, err = q.ClaimTimeout(n, 20*time.Second)
			}
			if err != nil {
				if atomic.LoadInt32(&a.stop) != 0 && errors.Is(err, ErrTimeout) {
					return nil
				}
				return fmt.Errorf("message %d: %w\n%s", seq, err, q.debugState())
			}
			atomic.StoreInt32(&a.inClaim[id], 1)
			qmsg(c.Bytes(), uint32(id), uint64(seq))
			if r.IntN(2) == 0 {
				time.Sleep(time.Duration(r.IntN(1000)) * time.Microsecond) // a slow claim
			}
			if err := c.Commit(); err != nil {
				return err
			}
			atomic.StoreInt32(&a.inClaim[id], 0)
			atomic.StoreInt64(&a.committed[id], seq+1)
		}
		return nil
	})
}

func TestBreak3QueueChurnTinyRing(t *testing.T) {
	dur, nprod := 2*time.Second, 16
	if long() {
		dur, nprod = 60*time.Second, 24
	}
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b3Area{}))}
	cfg.AddQueue(256, 0)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q, _ := m.Queue(0)
	a, err := View[b3Area](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}

	// The consumer: checks and counts; holds up to 3 messages before
	// releasing them together.
	var next [b3MaxProducers]int64
	var lastMsg atomic.Int64 // unix nanoseconds of the last message received
	lastMsg.Store(time.Now().UnixNano())
	var received atomic.Int64
	fail := make(chan string, 1)
	consDone := make(chan struct{})
	var quit atomic.Bool
	go func() {
		defer close(consDone)
		r := rand.New(rand.NewPCG(1, 2))
		var held []Message
		for !quit.Load() {
			msg, err := cons.ReceiveTimeout(20 * time.Millisecond)
			if err != nil {
				if len(held) > 0 {
					cons.Release(held[len(held)-1])
					held = held[:0]
				}
				if !errors.Is(err, ErrTimeout) {
					fail <- fmt.Sprintf("receive: %v", err)
					return
				}
				continue
			}
			lastMsg.Store(time.Now().UnixNano())
			received.Add(1)
			p, seq, err := qcheck(msg.Bytes())
			if err != nil || p >= b3MaxProducers {
				fail <- fmt.Sprintf("corrupt message at %d: %v", msg.pos, err)
				return
			}
			if int64(seq) != next[p] {
				what := "lost"
				if int64(seq) < next[p] {
					what = "delivered again"
				}
				fail <- fmt.Sprintf("producer %d: message %d, want %d (messages %s)", p, seq, next[p], what)
				return
			}
			next[p]++
			held = append(held, msg)
			if len(held) > r.IntN(3) {
				cons.Release(msg)
				held = held[:0]
			}
		}
		if len(held) > 0 {
			cons.Release(held[len(held)-1])
		}
	}()

	id := 0
	live := map[int]*child{}
	for ; id < nprod; id++ {
		live[id] = startChild(t, "brk3-q-churn", cfg.Name, strconv.Itoa(id))
	}
	kills, worst := 0, time.Duration(0)
	end := time.Now().Add(dur)
	stuck := func(why string) {
		quit.Store(true)
		<-consDone
		for i, c := range live {
			select {
			case <-c.done:
				t.Logf("producer %d exited: %v\n%s", i, c.err, c.output())
			default:
			}
		}
		t.Fatalf("%s after %d kills, %d messages:\n%s", why, kills, received.Load(), q.b3State())
	}
	for time.Now().Before(end) && id < b3MaxProducers {
		time.Sleep(time.Duration(10+rand.IntN(30)) * time.Millisecond)
		select {
		case f := <-fail:
			stuck(f)
		default:
		}
		if gap := time.Duration(time.Now().UnixNano() - lastMsg.Load()); gap > worst {
			worst = gap
		}
		if gap := time.Duration(time.Now().UnixNano() - lastMsg.Load()); gap > 1500*time.Millisecond {
			stuck(fmt.Sprintf("no message for %v while %d producers want to send", gap, len(live)))
		}
		for i, c := range live {
			select {
			case <-c.done:
				stuck(fmt.Sprintf("producer %d failed: %v\n%s", i, c.err, c.output()))
			default:
			}
		}
		// Kill one in the middle of a claim if there is one, else now and
		// then one at random; start another.
		victim := -1
		for i := range live {
			if atomic.LoadInt32(&a.inClaim[i]) != 0 || victim < 0 && rand.IntN(4*len(live)) == 0 {
				victim = i
			}
		}
		if victim < 0 {
			continue
		}
		live[victim].kill()
		delete(live, victim)
		kills++
		live[id] = startChild(t, "brk3-q-churn", cfg.Name, strconv.Itoa(id))
		id++
	}
	atomic.StoreInt32(&a.stop, 1)
	// Every live producer's claim in progress ends within a few seconds
	// (they wait for room 20 s at most, so a queue that stopped moving
	// shows here).
	for i, c := range live {
		if err := c.waitErr(5 * time.Second); err != nil {
			stuck(fmt.Sprintf("producer %d, told to stop: %v\n%s", i, err, c.output()))
		}
	}
	drain := time.Now()
	for {
		st, _ := q.Stats()
		if st.Head == st.Tail {
			break
		}
		select {
		case f := <-fail:
			stuck(f)
		default:
		}
		if time.Since(drain) > 5*time.Second {
			stuck("the queue did not drain")
		}
		time.Sleep(time.Millisecond)
	}
	quit.Store(true)
	<-consDone
	select {
	case f := <-fail:
		t.Fatal(f)
	default:
	}
	for p := 0; p < id; p++ {
		if c := atomic.LoadInt64(&a.committed[p]); next[p] < c {
			t.Errorf("producer %d committed %d messages, %d delivered", p, c, next[p])
		}
	}
	st, _ := q.Stats()
	t.Logf("%d producers (%d killed), %d messages; longest time without a message %v; %d dead claims skipped", id, kills, received.Load(), worst, st.Skipped)
}
