package shm

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Kill -9 of producers and consumers of a queue at random moments: every
// message a producer committed is delivered, in order per producer, at
// least once; a message a consumer released is never delivered again; no
// run hangs.

const (
	qtProducers = 3
	qtMessages  = 3000 // per producer and trial
)

// qtArea is the user data of the torture segment.
type qtArea struct {
	committed [qtProducers]int64 // last sequence committed, as the producer recorded it
	done      [qtProducers]int32 // the producer finished
	stop      int32              // the consumer is to drain and exit
	dups      int32              // a released message seen again
	order     int32              // a message out of order within one consumer's run
	corrupt   int32
	received  [qtProducers][qtMessages / 8]byte // bit per message: some consumer received it
	released  [qtProducers][qtMessages / 8]byte // bit per message: released
}

func qtBit(b []byte, i int64) (*uint32, uint32) {
	w := (*uint32)(unsafe.Pointer(&b[(i/32)*4]))
	return w, 1 << (i % 32)
}

func qtSet(b []byte, i int64) (was bool) {
	w, bit := qtBit(b, i)
	return atomic.OrUint32(w, bit)&bit != 0
}

func qtGet(b []byte, i int64) bool {
	w, bit := qtBit(b, i)
	return atomic.LoadUint32(w)&bit != 0
}

func openTorture(name string) (*Managed, *Queue, *qtArea, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, nil, err
	}
	q, err := m.Queue(0)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	a, err := View[qtArea](m.Data())
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return m, q, a, nil
}

func init() {
	// args: name, producer: send qtMessages messages (random sizes,
	// checked contents), recording each commit.
	registerChild("qt-produce", func(args []string) error {
		m, q, a, err := openTorture(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		p := atoi(args[1])
		r := rand.New(rand.NewPCG(uint64(p), uint64(time.Now().UnixNano())))
		for seq := int64(0); seq < qtMessages; seq++ {
			n := 13 + r.IntN(q.MaxMessage()-12)
			c, err := q.ClaimTimeout(n, 20*time.Second)
			if err != nil {
				return err
			}
			qmsg(c.Bytes(), uint32(p), uint64(seq))
			if err := c.Commit(); err != nil {
				return err
			}
			atomic.StoreInt64(&a.committed[p], seq)
			if r.IntN(64) == 0 {
				time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
			}
		}
		atomic.StoreInt32(&a.done[p], 1)
		return nil
	})
	// args: name: consume until told to stop and the queue is drained,
	// marking what it receives and releases.
	registerChild("qt-consume", func(args []string) error {
		m, q, a, err := openTorture(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		var c *Consumer
		for deadline := time.Now().Add(20 * time.Second); ; {
			if c, err = q.Consumer(); err == nil {
				break
			}
			if !errors.Is(err, ErrInUse) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(time.Millisecond) // the dead consumer's place is taken once it is gone
		}
		consume(c, a, rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano()))))
		return nil
	})
}

// consume receives until a.stop is set and the queue is empty, checking and
// marking every message; it holds up to a few messages before releasing
// them in a batch.
func consume(c *Consumer, a *qtArea, r *rand.Rand) {
	var last [qtProducers]int64
	for i := range last {
		last[i] = -1
	}
	type heldMsg struct {
		m   Message
		p   uint32
		seq uint64
	}
	var held []heldMsg
	release := func() {
		if len(held) == 0 {
			return
		}
		if c.Release(held[len(held)-1].m) == nil {
			for _, h := range held {
				qtSet(a.released[h.p][:], int64(h.seq))
			}
		}
		held = held[:0]
	}
	for {
		m, err := c.ReceiveTimeout(5 * time.Millisecond)
		if err != nil {
			release()
			if atomic.LoadInt32(&a.stop) != 0 {
				return
			}
			continue
		}
		p, seq, err := qcheck(m.Bytes())
		if err != nil || int(p) >= qtProducers || seq >= qtMessages {
			atomic.AddInt32(&a.corrupt, 1)
			c.Release(m)
			continue
		}
		if qtSet(a.received[p][:], int64(seq)) && qtGet(a.released[p][:], int64(seq)) {
			atomic.AddInt32(&a.dups, 1)
		}
		if last[p] >= 0 && int64(seq) != last[p]+1 {
			atomic.AddInt32(&a.order, 1)
		}
		last[p] = int64(seq)
		held = append(held, heldMsg{m, p, seq})
		if len(held) > r.IntN(4) {
			release()
		}
	}
}

func TestQueueTortureKills(t *testing.T) {
	trials := 8
	if long() {
		trials = 200
	}
	if testing.Short() {
		trials = 3
	}
	var skipped uint64
	var worstStall time.Duration
	for trial := 0; trial < trials; trial++ {
		c := Config{Name: testName(t), Size: int(unsafe.Sizeof(qtArea{}))}
		c.AddQueue(16<<10, 512)
		m, err := c.Create()
		if err != nil {
			t.Fatal(err)
		}
		q, _ := m.Queue(0)
		a, err := View[qtArea](m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for i := range a.committed {
			a.committed[i] = -1
		}
		var prods []*child
		for p := 0; p < qtProducers; p++ {
			prods = append(prods, startChild(t, "qt-produce", c.Name, strconv.Itoa(p)))
		}
		cons := startChild(t, "qt-consume", c.Name)
		r := rand.New(rand.NewPCG(uint64(trial), 99))
		// Kill the consumer a few times, and one producer once, at random
		// moments.
		victim := r.IntN(qtProducers)
		killAt := time.Duration(r.IntN(150)) * time.Millisecond
		start := time.Now()
		killedProducer := false
		for k := 0; k < 3; k++ {
			time.Sleep(time.Duration(5+r.IntN(60)) * time.Millisecond)
			if !killedProducer && time.Since(start) > killAt {
				prods[victim].kill()
				killedProducer = true
			}
			cons.kill()
			cons = startChild(t, "qt-consume", c.Name)
		}
		if !killedProducer {
			prods[victim].kill()
		}
		for p, pc := range prods {
			if p != victim {
				if err := pc.waitErr(60 * time.Second); err != nil {
					cons.waitErr(time.Second)
					t.Fatalf("trial %d: producer %d: %v\n%s\n%s\nconsumer: %s", trial, p, err, pc.output(), q.debugState(), cons.output())
				}
			}
		}
		// The queue must drain: the dead producer's unfinished claim, if
		// any, skipped within a liveness slice or so.
		drainStart := time.Now()
		for {
			st, _ := q.Stats()
			if st.Head == st.Tail {
				break
			}
			if time.Since(drainStart) > 10*time.Second {
				t.Fatalf("trial %d: the queue did not drain: %+v", trial, st)
			}
			time.Sleep(time.Millisecond)
		}
		if el := time.Since(drainStart); el > worstStall {
			worstStall = el
		}
		atomic.StoreInt32(&a.stop, 1)
		cons.wait(30 * time.Second)
		if a.corrupt != 0 || a.dups != 0 || a.order != 0 {
			t.Fatalf("trial %d: %d corrupt, %d released messages delivered again, %d out of order", trial, a.corrupt, a.dups, a.order)
		}
		for p := 0; p < qtProducers; p++ {
			for seq := int64(0); seq <= a.committed[p]; seq++ {
				if !qtGet(a.received[p][:], seq) {
					t.Fatalf("trial %d: producer %d's message %d was committed (up to %d) and never delivered", trial, p, seq, a.committed[p])
				}
			}
		}
		st, _ := q.Stats()
		skipped += st.Skipped
		m.Close()
	}
	t.Logf("%d trials: %d unfinished claims of killed producers skipped; longest drain after the last producer finished %v", trials, skipped, worstStall)
}
