package shm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// newQueue makes a managed segment with one queue and returns it.
func newQueue(t testing.TB, capacity, maxMsg int) (*Managed, *Queue) {
	t.Helper()
	c := Config{Name: testName(t), Size: 64}
	c.AddQueue(capacity, maxMsg)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	q, err := m.Queue(0)
	if err != nil {
		t.Fatal(err)
	}
	return m, q
}

func TestQueueBasics(t *testing.T) {
	_, q := newQueue(t, 1024, 0)
	if q.Capacity() != 1024 || q.MaxMessage() != 1024/2-16 {
		t.Fatalf("capacity %d, max %d", q.Capacity(), q.MaxMessage())
	}
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Consumer(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second consumer: %v, want ErrInUse", err)
	}
	if _, err := c.TryReceive(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryReceive on an empty queue: %v", err)
	}
	if _, err := c.ReceiveTimeout(5 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("ReceiveTimeout on an empty queue: %v", err)
	}
	// Zero-length, small, the largest, and sizes that wrap.
	sizes := []int{0, 1, 15, 16, 17, q.MaxMessage(), 100, 0, 200, 300, 7}
	for round := 0; round < 20; round++ {
		for _, n := range sizes {
			msg := bytes.Repeat([]byte{byte(n + round)}, n)
			if err := q.Send(msg); err != nil {
				t.Fatalf("round %d: Send %d: %v", round, n, err)
			}
			m, err := c.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Bytes(), msg) {
				t.Fatalf("round %d: got %d bytes, want %d", round, len(m.Bytes()), n)
			}
			if err := c.Release(m); err != nil {
				t.Fatal(err)
			}
			if err := c.Release(m); err == nil {
				t.Fatal("a second Release of one message succeeded")
			}
		}
	}
	if err := q.Send(make([]byte, q.MaxMessage()+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	// Fill it up: TrySend says full, a timed send times out.
	n := 0
	for ; ; n++ {
		if err := q.TrySend(make([]byte, 48)); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if n < 1024/64-1 || n > 1024/64 {
		t.Errorf("a 1024-byte ring took %d messages of 48 bytes (64 with the header), want 16 (or 15, the last needing the end of the ring skipped)", n)
	}
	if err := q.SendTimeout(make([]byte, 48), 5*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("SendTimeout on a full queue: %v", err)
	}
	// Claim, abort, commit; commit twice.
	var got [][]byte
	for i := 0; i < n; i++ {
		m, err := c.Receive()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Bytes())
		if i == n-1 {
			c.Release(m)
		}
	}
	cl, err := q.Claim(10)
	if err != nil {
		t.Fatal(err)
	}
	copy(cl.Bytes(), "aborted!!!")
	if err := cl.Abort(); err != nil {
		t.Fatal(err)
	}
	cl, err = q.Claim(5)
	if err != nil {
		t.Fatal(err)
	}
	copy(cl.Bytes(), "hello")
	if err := cl.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Commit(); err == nil {
		t.Fatal("a second Commit succeeded")
	}
	buf := make([]byte, 3)
	if _, err := c.Copy(buf); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Copy into a small buffer: %v", err)
	}
	buf = make([]byte, 64)
	k, err := c.Copy(buf)
	if err != nil || string(buf[:k]) != "hello" {
		t.Fatalf("Copy: %q, %v", buf[:k], err)
	}
	st, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Head != st.Tail || st.Aborted != 0 && false {
		t.Errorf("stats after everything was released: %+v", st)
	}
	c.Close()
	c2, err := q.Consumer()
	if err != nil {
		t.Fatalf("a consumer after the first closed: %v", err)
	}
	c2.Close()
}

// TestQueueRandomSizes: one producer, one consumer, in one process, random
// sizes with sequence numbers and checksums, wrap-arounds included.
func TestQueueRandomSizes(t *testing.T) {
	_, q := newQueue(t, 16384, 2000)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	const total = 20000
	done := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < total; i++ {
			n := 8 + r.IntN(q.MaxMessage()-8)
			if i%10 == 0 {
				n = 8
			}
			cl, err := q.Claim(n)
			if err != nil {
				done <- err
				return
			}
			fillMessage(cl.Bytes(), uint64(i))
			if err := cl.Commit(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < total; i++ {
		m, err := c.ReceiveTimeout(10 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		seq, err := checkMessage(m.Bytes())
		if err != nil || seq != uint64(i) {
			t.Fatalf("message %d: seq %d, %v", i, seq, err)
		}
		// Release most at once, some two at a time (a batch).
		if i%7 != 0 || i == total-1 {
			if err := c.Release(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// fillMessage writes seq and a checksum of the rest into b (at least 8
// bytes): seq, then bytes derived from seq, with the last byte a sum.
func fillMessage(b []byte, seq uint64) {
	for i := 0; i < 8 && i < len(b); i++ {
		b[i] = byte(seq >> (8 * i))
	}
	var sum byte
	for i := 8; i < len(b)-1; i++ {
		b[i] = byte(seq*31 + uint64(i))
		sum += b[i]
	}
	if len(b) > 8 {
		b[len(b)-1] = sum
	}
}

func checkMessage(b []byte) (uint64, error) {
	if len(b) < 8 {
		return 0, fmt.Errorf("%d bytes", len(b))
	}
	var seq uint64
	for i := 0; i < 8; i++ {
		seq |= uint64(b[i]) << (8 * i)
	}
	var sum byte
	for i := 8; i < len(b)-1; i++ {
		if b[i] != byte(seq*31+uint64(i)) {
			return seq, fmt.Errorf("message %d: byte %d corrupt", seq, i)
		}
		sum += b[i]
	}
	if len(b) > 8 && b[len(b)-1] != sum {
		return seq, fmt.Errorf("message %d: checksum", seq)
	}
	return seq, nil
}

// BenchmarkQueueClaimCommitReceiveRelease: one message through the queue
// in one goroutine, uncontended: the bookkeeping cost of a message.
func BenchmarkQueueClaimCommitReceiveRelease(b *testing.B) {
	_, q := newQueue(b, 1<<16, 0)
	c, err := q.Consumer()
	if err != nil {
		b.Fatal(err)
	}
	p, err := q.Producer()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		cl, err := p.Claim(64)
		if err != nil {
			b.Fatal(err)
		}
		cl.Bytes()[0] = byte(i)
		cl.Commit()
		m, err := c.TryReceive()
		if err != nil {
			b.Fatal(err)
		}
		c.Release(m)
	}
}

// TestQueueSlotsExhausted: with every producer slot held (by Producers),
// TryClaim and TrySend fail at once with ErrFull, the Timeout forms with
// ErrTimeout, Producer with ErrInUse; a slot given back serves the next.
func TestQueueSlotsExhausted(t *testing.T) {
	seg, err := Create(testName(t), QueueSize(1024, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	q, err := FormatQueue(seg.Bytes(), 1024, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p1, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := q.TryClaim(8); !errors.Is(err, ErrFull) {
		t.Fatalf("TryClaim with every slot held: %v, want ErrFull", err)
	}
	if err := q.TrySend(nil); !errors.Is(err, ErrFull) {
		t.Fatalf("TrySend with every slot held: %v, want ErrFull", err)
	}
	if _, err := q.Producer(); !errors.Is(err, ErrInUse) {
		t.Fatalf("Producer with every slot held: %v, want ErrInUse", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the Try forms and Producer waited %v", d)
	}
	if err := q.SendTimeout(nil, 20*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("SendTimeout with every slot held: %v, want ErrTimeout", err)
	}
	p1.Close()
	if err := q.TrySend([]byte("x")); err != nil {
		t.Fatalf("TrySend after a Producer closed: %v", err)
	}
	if err := p2.TrySend([]byte("y")); err != nil {
		t.Fatal(err)
	}
	p2.Close()
}

// TestQueueCommitTwiceAfterWrap: a Claim committed again after its message
// was consumed and the ring wrapped over its place is refused; it must not
// write into the claim that now holds that place.
func TestQueueCommitTwiceAfterWrap(t *testing.T) {
	_, q := newQueue(t, 256, 0)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	old, err := q.Claim(40)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Commit(); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Receive(); err != nil {
		t.Fatal(err)
	} else {
		c.Release(m)
	}
	for i := 0; i < 7; i++ { // the ring wraps (4 records a lap): old's place is reused
		if err := q.Send(make([]byte, 40)); err != nil {
			t.Fatal(err)
		}
		m, err := c.Receive()
		if err != nil {
			t.Fatal(err)
		}
		c.Release(m)
	}
	cur, err := q.Claim(40) // at old's place, one lap on
	if err != nil {
		t.Fatal(err)
	}
	if cur.pos&q.mask != old.pos&q.mask {
		t.Fatalf("the test expected claim positions %d and %d at one place", old.pos, cur.pos)
	}
	if err := old.Commit(); !errors.Is(err, ErrRange) {
		t.Fatalf("a second Commit after a wrap: %v, want ErrRange", err)
	}
	if err := old.Abort(); !errors.Is(err, ErrRange) {
		t.Fatalf("an Abort after the Commit: %v, want ErrRange", err)
	}
	copy(cur.Bytes(), "fresh")
	if err := cur.Commit(); err != nil {
		t.Fatalf("the claim now at that place: %v", err)
	}
	m, err := c.Receive()
	if err != nil || string(m.Bytes()[:5]) != "fresh" {
		t.Fatalf("after the refused commit: %v %q", err, m.Bytes())
	}
}

// TestQueueTailNearWrap: a damaged tail near 2^64 (head far below it) is
// ErrCorrupt for every claim size: the room check's t+total overflowed,
// and a claim that wrapped past 2^64 was taken (a Send returned nil, and
// the consumer skipped its record as a dead claim).
func TestQueueTailNearWrap(t *testing.T) {
	seg, err := Create(testName(t), QueueSize(16384, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	q, err := FormatQueue(seg.Bytes(), 16384, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, n := range []int{0, 64, 4097, q.MaxMessage()} {
		atomic.StoreUint64(q.head, 96)
		atomic.StoreUint64(q.tail, 1<<64-16)
		q.headCache.Store(96)
		if err := q.TrySend(make([]byte, n)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("TrySend of %d bytes at tail 2^64-16, head 96: %v, want ErrCorrupt", n, err)
		}
		if got := atomic.LoadUint64(q.tail); got != 1<<64-16 {
			t.Errorf("TrySend of %d bytes moved tail to %d", n, got)
		}
	}
}

// TestQueueOtherGoroutinesRun: goroutines asleep in a queue's waits (two
// consumers on empty queues, a producer on a full one) do not keep the
// process's only P: with GOMAXPROCS 1 and spinning off, other goroutines
// and timers go on.
func TestQueueOtherGoroutinesRun(t *testing.T) {
	const capacity = 1024
	var qs [3]*Queue
	for i := range qs {
		seg, err := Create(testName(t)+fmt.Sprint(i), QueueSize(capacity, 2))
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
		if qs[i], err = FormatQueue(seg.Bytes(), capacity, 0, 2); err != nil {
			t.Fatal(err)
		}
		defer qs[i].Close()
	}
	var cs [3]*Consumer
	for i := range cs {
		var err error
		if cs[i], err = qs[i].Consumer(); err != nil {
			t.Fatal(err)
		}
	}
	msg := make([]byte, 64)
	for qs[2].TrySend(msg) == nil {
	}
	old := SetSpin(0)
	defer SetSpin(old)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	errs := make(chan error, 3)
	for i := 0; i < 2; i++ {
		go func() {
			m, err := cs[i].ReceiveTimeout(10 * time.Second)
			if err == nil {
				err = cs[i].Release(m)
			}
			errs <- err
		}()
	}
	go func() { errs <- qs[2].SendTimeout(msg, 10*time.Second) }()
	// With one P, a waiter that kept it while asleep in the kernel would
	// let this goroutine run only between two of its sleeps (slices of up
	// to 20 ms): count the 1 ms naps it gets through in 100 ms.
	time.Sleep(5 * time.Millisecond) // the waiters go to sleep
	naps := 0
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; naps++ {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 2; i++ {
		if err := qs[i].Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	m, err := cs[2].Receive()
	if err != nil {
		t.Fatal(err)
	}
	if err := cs[2].Release(m); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Errorf("a waiter: %v", err)
		}
	}
	t.Logf("%d naps of 1 ms in 100 ms", naps)
	if naps < 20 {
		t.Fatalf("with three goroutines asleep in queue waits and GOMAXPROCS 1, another got through %d naps of 1 ms in 100 ms", naps)
	}
}
