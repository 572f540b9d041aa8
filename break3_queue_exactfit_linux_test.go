//go:build linux

package shm

import (
	"strconv"
	"testing"
	"time"
)

// Records whose sizes divide the ring (16, 64, 128 bytes: payloads 0, 48
// and 112) always end exactly at the end of the ring, never needing
// padding; mixed with sizes that do need it. Empty messages carry nothing:
// the consumer counts them. 4 producer processes (Producer, pool) and a
// 256-byte ring.

func init() {
	// args: name, producer index, messages.
	registerChild("brk3-q-exact", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		q, _ := m.Queue(0)
		p := uint32(atoi(args[1]))
		n := atoi(args[2])
		var prod *Producer
		if p%2 == 0 {
			if prod, err = q.Producer(); err != nil {
				return err
			}
		}
		buf := make([]byte, q.MaxMessage())
		sizes := []int{48, 112, 0, 48, 13, 112, 0, 81}
		for seq := 0; seq < n; seq++ {
			size := sizes[seq%len(sizes)]
			if p >= 2 {
				size = sizes[seq%3] // exact fits only
			}
			qmsg(buf[:size], p, uint64(seq))
			var err error
			if prod != nil {
				err = prod.SendTimeout(buf[:size], 20*time.Second)
			} else {
				err = q.SendTimeout(buf[:size], 20*time.Second)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func TestBreak3QueueExactFitAndEmpty(t *testing.T) {
	per := 5000
	if long() {
		per = 200000
	}
	const producers = 4
	cfg := Config{Name: testName(t), Size: 64}
	cfg.AddQueue(256, 0)
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
	var cs []*child
	for p := 0; p < producers; p++ {
		cs = append(cs, startChild(t, "brk3-q-exact", cfg.Name, strconv.Itoa(p), strconv.Itoa(per)))
	}
	next := make([]uint64, producers)
	empties, wantEmpties := 0, 0
	for p := 0; p < producers; p++ {
		for seq := 0; seq < per; seq++ {
			if p < 2 && seq%8 == 2 || p < 2 && seq%8 == 6 || p >= 2 && seq%3 == 2 {
				wantEmpties++
			}
		}
	}
	advance := func(p uint32) {
		// Skip the empty ones, which carry no number.
		for {
			next[p]++
			s := next[p]
			if p < 2 && (s%8 == 2 || s%8 == 6) || p >= 2 && s%3 == 2 {
				continue
			}
			return
		}
	}
	buf := make([]byte, q.MaxMessage())
	for got := 0; got < producers*per; got++ {
		var b []byte
		if got%2 == 0 {
			n, err := c.CopyTimeout(buf, 20*time.Second)
			if err != nil {
				t.Fatalf("after %d: %v\n%s", got, err, q.b3State())
			}
			b = buf[:n]
		} else {
			msg, err := c.ReceiveTimeout(20 * time.Second)
			if err != nil {
				t.Fatalf("after %d: %v\n%s", got, err, q.b3State())
			}
			b = append(buf[:0], msg.Bytes()...)
			c.Release(msg)
		}
		if len(b) == 0 {
			empties++
			continue
		}
		p, seq, err := qcheck(b)
		if err != nil || p >= producers {
			t.Fatalf("corrupt: %v", err)
		}
		if seq != next[p] {
			t.Fatalf("producer %d: message %d, want %d", p, seq, next[p])
		}
		advance(p)
	}
	for _, ch := range cs {
		ch.wait(time.Minute)
	}
	if empties != wantEmpties {
		t.Errorf("%d empty messages, want %d", empties, wantEmpties)
	}
	st, _ := q.Stats()
	if st.Head != st.Tail || st.Skipped != 0 {
		t.Errorf("stats at the end: %+v", st)
	}
}
