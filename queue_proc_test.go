package shm

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// Queues between processes: several producer processes, one consumer,
// every message checked.

// qmsg builds a message of n bytes from producer p with sequence seq:
// producer (4 bytes), sequence (8 bytes), then bytes derived from both,
// the last one a checksum. Messages shorter than 13 bytes carry nothing.
func qmsg(b []byte, p uint32, seq uint64) {
	if len(b) < 13 {
		return
	}
	binary.LittleEndian.PutUint32(b, p)
	binary.LittleEndian.PutUint64(b[4:], seq)
	var sum byte
	for i := 12; i < len(b)-1; i++ {
		b[i] = byte(seq*7 + uint64(p)*13 + uint64(i))
		sum += b[i]
	}
	b[len(b)-1] = sum
}

// qcheck returns the producer and sequence of a message built by qmsg.
func qcheck(b []byte) (p uint32, seq uint64, err error) {
	if len(b) < 13 {
		return 0, 0, fmt.Errorf("%d bytes", len(b))
	}
	p = binary.LittleEndian.Uint32(b)
	seq = binary.LittleEndian.Uint64(b[4:])
	var sum byte
	for i := 12; i < len(b)-1; i++ {
		if b[i] != byte(seq*7+uint64(p)*13+uint64(i)) {
			return p, seq, fmt.Errorf("producer %d message %d: byte %d corrupt", p, seq, i)
		}
		sum += b[i]
	}
	if b[len(b)-1] != sum {
		return p, seq, fmt.Errorf("producer %d message %d: checksum", p, seq)
	}
	return p, seq, nil
}

// qsize is the size of message seq of a producer: random from 13 to the
// largest, with every 1000th empty, and some at the extremes.
func qsize(r *rand.Rand, seq uint64, max int) int {
	switch {
	case seq%1000 == 999:
		return 0
	case seq%97 == 0:
		return max
	case seq%89 == 0:
		return 13
	}
	return 13 + r.IntN(max-12)
}

func init() {
	// args: name, producer index, messages: send them, with sizes and
	// contents from qsize and qmsg, through a Producer (odd index) or the
	// Queue's pool with Claim and Send in turn (even index).
	registerChild("q-produce", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		q, err := m.Queue(0)
		if err != nil {
			return err
		}
		p := uint32(atoi(args[1]))
		n := uint64(atoi(args[2]))
		r := rand.New(rand.NewPCG(uint64(p), 7))
		buf := make([]byte, q.MaxMessage())
		var prod *Producer
		if p%2 == 1 {
			if prod, err = q.Producer(); err != nil {
				return err
			}
			defer prod.Close()
		}
		for seq := uint64(0); seq < n; seq++ {
			size := qsize(r, seq, q.MaxMessage())
			if prod != nil {
				c, err := prod.ClaimTimeout(size, time.Minute)
				if err != nil {
					return err
				}
				qmsg(c.Bytes(), p, seq)
				if err := c.Commit(); err != nil {
					return err
				}
				continue
			}
			if seq%2 == 0 {
				qmsg(buf[:size], p, seq)
				if err := q.SendTimeout(buf[:size], time.Minute); err != nil {
					return err
				}
				continue
			}
			c, err := q.ClaimTimeout(size, time.Minute)
			if err != nil {
				return err
			}
			qmsg(c.Bytes(), p, seq)
			if err := c.Commit(); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestQueueProducersConsumer: 4 producer processes x 200 000 messages of
// random sizes (empty up to the largest, wrap-arounds included); the
// consumer checks every message: per-producer order, nothing lost, nothing
// twice, nothing corrupt.
func TestQueueProducersConsumer(t *testing.T) {
	per := 200000
	if testing.Short() {
		per = 20000
	}
	const producers = 4
	c := Config{Name: testName(t), Size: 64}
	c.AddQueue(64<<10, 1024)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q, _ := m.Queue(0)
	cons, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	var cs []*child
	for p := 0; p < producers; p++ {
		cs = append(cs, startChild(t, "q-produce", c.Name, strconv.Itoa(p), strconv.Itoa(per)))
	}
	next := make([]uint64, producers)
	empties := 0
	wantEmpties := producers * (per / 1000)
	start := time.Now()
	buf := make([]byte, 1024)
	for got := 0; got < producers*per; got++ {
		var b []byte
		if got%3 == 0 {
			n, err := cons.CopyTimeout(buf, 30*time.Second)
			if err != nil {
				for _, ch := range cs {
					ch.waitErr(time.Second)
					t.Logf("producer: %s", ch.output())
				}
				t.Fatalf("after %d messages (next %v): %v", got, next, err)
			}
			b = buf[:n]
		} else {
			msg, err := cons.ReceiveTimeout(30 * time.Second)
			if err != nil {
				for _, ch := range cs {
					ch.waitErr(time.Second)
					t.Logf("producer: %s", ch.output())
				}
				t.Fatalf("after %d messages (next %v): %v", got, next, err)
			}
			b = msg.Bytes()
			if len(b) == 0 {
				empties++
				cons.Release(msg)
				continue
			}
			p, seq, err := qcheck(b)
			if err != nil {
				t.Fatalf("%v (message at %d, %d bytes, after %d messages)", err, msg.pos, len(b), got)
			}
			if p >= producers || seq != next[p] {
				t.Fatalf("producer %d: message %d, want %d", p, seq, next[p])
			}
			next[p] = skipEmpty(seq + 1)
			if got%5 != 0 {
				cons.Release(msg) // else released with the next one (a batch of two)
			}
			continue
		}
		if len(b) == 0 {
			empties++
			continue
		}
		p, seq, err := qcheck(b)
		if err != nil {
			t.Fatal(err)
		}
		if p >= producers || seq != next[p] {
			t.Fatalf("producer %d: message %d, want %d", p, seq, next[p])
		}
		next[p] = skipEmpty(seq + 1)
	}
	for _, ch := range cs {
		ch.wait(time.Minute)
	}
	if empties != wantEmpties {
		t.Errorf("%d empty messages, want %d", empties, wantEmpties)
	}
	if msg, err := cons.TryReceive(); err == nil {
		t.Fatalf("a message beyond the last: %d bytes", len(msg.Bytes()))
	}
	st, _ := q.Stats()
	t.Logf("%d messages from %d processes in %v; stats %+v", producers*per, producers, time.Since(start), st)
}

// skipEmpty returns the first sequence number from seq that carries one
// (every 1000th message is empty).
func skipEmpty(seq uint64) uint64 {
	for seq%1000 == 999 {
		seq++
	}
	return seq
}
