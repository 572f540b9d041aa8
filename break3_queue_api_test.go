package shm

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// Break3 tests of the queue that need one process only.

// newRawQueue makes a segment of size bytes and formats a queue at offset
// off of it.
func newRawQueue(t testing.TB, size, off, capacity, maxMsg, producers int) (*Segment, *Queue) {
	t.Helper()
	seg, err := Create(testName(t), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	q, err := FormatQueue(seg.Bytes()[off:], capacity, maxMsg, producers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return seg, q
}

// TestBreak3QueueReleaseAfterSkipDeadlock: the consumer holds a message
// (received, not released) when it skips a record that is not a message
// (aborted here; a dead producer's claim or a padding record do the same).
// skipTo leaves head alone while a message is held, which is right; but the
// Release of the held message then stores head at the message's end only,
// not at the consumer's read position past the skipped record, and nothing
// ever releases the skipped space: next() at read == tail returns "wait"
// without a skipTo. The ring is empty (every byte claimed was received or
// skipped), yet a producer needing the skipped space waits for room that
// never comes while the consumer waits for a message that cannot be sent:
// both block for ever.
func TestBreak3QueueReleaseAfterSkipDeadlock(t *testing.T) {
	_, q := newQueue(t, 256, 0) // largest message 112 (a 128-byte record)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Send(nil); err != nil { // [0, 16)
		t.Fatal(err)
	}
	m1, err := c.Receive()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := q.Claim(q.MaxMessage()) // [16, 144)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryReceive(); !errors.Is(err, ErrEmpty) { // skips the aborted record, m1 held
		t.Fatalf("TryReceive: %v, want ErrEmpty", err)
	}
	if err := c.Release(m1); err != nil {
		t.Fatal(err)
	}
	// Nothing is in the queue now. A message of the largest size (a claim
	// of 240 bytes with the padding to the end of the ring) fits in the
	// 256-byte ring.
	st, _ := q.Stats()
	done := make(chan error, 1)
	go func() { done <- q.SendTimeout(make([]byte, q.MaxMessage()), 2*time.Second) }()
	m2, rerr := c.ReceiveTimeout(2 * time.Second)
	if err := <-done; err != nil {
		t.Fatalf("a send into an empty queue: %v (consumer: %v); the consumer had received or skipped everything, yet head %d, tail %d", err, rerr, st.Head, st.Tail)
	}
	if rerr != nil {
		t.Fatalf("receive: %v", rerr)
	}
	// The message came after a padding record [144, 256), skipped with no
	// message held: released at once.
	if st, _ := q.Stats(); st.Head != m2.pos {
		t.Errorf("after a padding record skipped with no message held: head %d, want %d", st.Head, m2.pos)
	}
	if err := c.Release(m2); err != nil {
		t.Fatal(err)
	}
	cl, err = q.Claim(q.MaxMessage())
	if err != nil {
		t.Fatal(err)
	}
	cl.Abort()
	if _, err := c.TryReceive(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryReceive: %v, want ErrEmpty", err)
	}
	if st, _ := q.Stats(); st.Head != st.Tail {
		t.Errorf("an aborted record skipped with no message held is not released: head %d, tail %d", st.Head, st.Tail)
	}
}

// TestBreak3QueueDoubleCommitAfterWrap: "a Claim commits once: a second
// Commit returns an error". finish tells a committed claim by its commit
// word only (written). Once the consumer released the record and the ring
// wrapped, the commit word at that place is another lap's: a second Commit
// of the old Claim passes the check, returns nil, and stores its header
// and commit word over the record that now lives there. That record (a
// live producer's committed message) no longer looks written; it is
// skipped as a dead claim: a committed message is lost, silently. (A pool
// claim also puts its slot back a second time, so that two claims can
// share one producer slot.)
func TestBreak3QueueDoubleCommitAfterWrap(t *testing.T) {
	_, q := newQueue(t, 256, 0)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	old, err := q.Claim(16) // [0, 32)
	if err != nil {
		t.Fatal(err)
	}
	copy(old.Bytes(), "the first message")
	if err := old.Commit(); err != nil {
		t.Fatal(err)
	}
	m, err := c.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(m); err != nil {
		t.Fatal(err)
	}
	// 8 messages of 32-byte records: [32, 288), the last at ring offset 0.
	for i := 0; i < 8; i++ {
		if err := q.TrySend(bytes.Repeat([]byte{byte('a' + i)}, 16)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	cerr := old.Commit()
	got := 0
	for i := 0; i < 8; i++ {
		m, err := c.ReceiveTimeout(time.Second)
		if err != nil {
			break
		}
		if want := bytes.Repeat([]byte{byte('a' + i)}, 16); !bytes.Equal(m.Bytes(), want) {
			t.Errorf("message %d: %q, want %q", i, m.Bytes(), want)
		}
		c.Release(m)
		got++
	}
	st, _ := q.Stats()
	if cerr == nil {
		t.Errorf("a second Commit of a claim the consumer released a lap ago returned nil")
	}
	if got != 8 {
		t.Errorf("received %d of the 8 messages sent after it (skipped records: %d)", got, st.Skipped)
	}
}

// TestBreak3QueueFormatOverOldQueue: FormatQueue "lays out an empty queue"
// and clears "the headers' states in case the memory held other data"; but
// it clears the hd words, while whether a record is written is told by its
// commit word hc (written), which it leaves. Memory that held a queue
// before (a program that formats its raw segment again after a restart)
// still has, at every record of the old first lap, the commit word of that
// very position: the new queue's consumer takes a claim in progress there
// for a written record, reads the cleared hd (state 0) and fails with
// ErrCorrupt on a healthy queue.
func TestBreak3QueueFormatOverOldQueue(t *testing.T) {
	seg, q := newRawQueue(t, QueueSize(256, 4), 0, 256, 0, 4)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := q.Send([]byte("old message")); err != nil {
			t.Fatal(err)
		}
		m, err := c.Receive()
		if err != nil {
			t.Fatal(err)
		}
		c.Release(m)
	}
	q.Close()
	q2, err := FormatQueue(seg.Bytes(), 256, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	c2, err := q2.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := q2.Claim(5) // in progress at position 0
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.TryReceive(); !errors.Is(err, ErrEmpty) {
		t.Errorf("TryReceive on a newly formatted queue with a claim in progress: %v, want ErrEmpty", err)
	}
	copy(cl.Bytes(), "hello")
	if err := cl.Commit(); err != nil {
		t.Fatal(err)
	}
	m, err := c2.TryReceive()
	if err != nil || string(m.Bytes()) != "hello" {
		t.Fatalf("TryReceive after the commit: %q, %v", m.Bytes(), err)
	}
}

// TestBreak3QueueReleaseAfterConsumerClose: a Consumer closed (detached)
// still releases: Release checks neither that the consumer is attached nor
// anything but its own positions, and stores head. Once another consumer
// attached in its place (and was handed the old one's unreleased messages
// again), the detached one's Release moves head past messages the new one
// has not read: producers overwrite them, and the new consumer finds the
// ring overwritten (ErrCorrupt) or reads another lap's bytes.
func TestBreak3QueueReleaseAfterConsumerClose(t *testing.T) {
	_, q := newQueue(t, 256, 0)
	c1, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := q.Send(bytes.Repeat([]byte{byte('a' + i)}, 48)); err != nil { // 64-byte records
			t.Fatal(err)
		}
	}
	if _, err := c1.Receive(); err != nil {
		t.Fatal(err)
	}
	m2, err := c1.Receive()
	if err != nil {
		t.Fatal(err)
	}
	c1.Close()
	c2, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	rerr := c1.Release(m2)
	if rerr == nil {
		t.Errorf("Release by a closed consumer returned nil")
	}
	// Producers now take what head says is free.
	for i := 0; i < 4; i++ {
		q.TrySend(bytes.Repeat([]byte{'x'}, 48))
	}
	for i := 0; i < 2; i++ {
		m, err := c2.TryReceive()
		if err != nil {
			t.Fatalf("the new consumer's message %d (redelivered): %v", i, err)
		}
		if want := bytes.Repeat([]byte{byte('a' + i)}, 48); !bytes.Equal(m.Bytes(), want) {
			t.Fatalf("the new consumer's message %d: %q, want %q", i, m.Bytes(), want)
		}
	}
}

// TestBreak3QueueSecondConsumerSameProcess: a second consumer is refused
// only when it is another process's, or this Queue handle's own. Two
// handles of one queue in one process (the segment opened twice, by two
// parts of a program) both attach: Consumer sees its own token in the
// consumer word and, its own handle having no consumer, takes it. Both
// then receive the same messages (a duplicate delivery) and both store
// head.
func TestBreak3QueueSecondConsumerSameProcess(t *testing.T) {
	m1, q1 := newQueue(t, 1024, 0)
	m2, err := OpenManaged(m1.Segment().Name())
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	q2, err := m2.Queue(0)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := q1.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := q2.Consumer()
	if err == nil {
		defer c2.Close()
		q1.Send([]byte("once"))
		a, err1 := c1.TryReceive()
		b, err2 := c2.TryReceive()
		t.Fatalf("a second consumer attached while the first is attached and alive; both receive: %q (%v) and %q (%v)", a.Bytes(), err1, b.Bytes(), err2)
	}
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second consumer: %v, want ErrInUse", err)
	}
}

// TestBreak3QueueTailBeyondCapacity: tail more than capacity beyond head
// breaks the invariant tail <= head + capacity (no producer can claim it),
// but producers take it for a full queue: TrySend says ErrFull, Send waits
// for room for ever. The consumer, which checks the same invariant, says
// ErrCorrupt.
func TestBreak3QueueTailBeyondCapacity(t *testing.T) {
	_, q := newQueue(t, 256, 0)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	atomic.StoreUint64(q.tail, atomic.LoadUint64(q.head)+256+16)
	if _, err := c.TryReceive(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("consumer: %v, want ErrCorrupt", err)
	}
	if err := q.TrySend([]byte("x")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("TrySend: %v, want ErrCorrupt", err)
	}
	start := time.Now()
	if err := q.SendTimeout([]byte("x"), 300*time.Millisecond); !errors.Is(err, ErrCorrupt) {
		t.Errorf("SendTimeout: %v after %v, want ErrCorrupt at once", err, time.Since(start))
	}
}

// TestBreak3QueueClaimWaitingForSlotClose: a Claim that waits for a
// producer slot (every slot taken: here the queue's only slot, held by a
// Producer) sleeps in getSlot's loop, which neither registers with the
// queue nor looks at its closed flag. Queue.Close returns without waiting
// for it, and the Claim keeps waiting: a raw queue's Claim never returns
// (no ErrClosed), a managed one's is left touching the slots after the
// segment is unmapped.
func TestBreak3QueueClaimWaitingForSlotClose(t *testing.T) {
	t.Run("raw", func(t *testing.T) {
		_, q := newRawQueue(t, QueueSize(256, 1), 0, 256, 0, 1)
		p, err := q.Producer()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := q.Claim(8)
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		q.Close()
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Claim waiting for a slot, queue closed: %v, want ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("Claim waiting for a slot did not return within 2 s of Queue.Close")
			// Free the slot in the shared table: the waiting Claim takes it.
			atomic.StoreUint64(q.slotWord(0, 0), 0)
			<-done
		}
		p.Close()
	})
	t.Run("managed", func(t *testing.T) {
		c := Config{Name: testName(t), Size: 64}
		c.Queues = append(c.Queues, QueueSpec{Capacity: 256, Producers: 1})
		m, err := c.Create()
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		q, err := m.Queue(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Producer(); err != nil {
			t.Fatal(err)
		}
		size := len(m.Segment().Bytes())
		done := make(chan error, 1)
		go func() {
			_, err := q.Claim(8)
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		m.Close()
		// The program goes on and maps another segment: the kernel
		// usually hands out the address range just freed.
		other, err := Create(testName(t), size)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Claim waiting for a slot, Managed closed: %v, want ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("Claim waiting for a slot did not return within 2 s of Managed.Close")
		}
		nz := 0
		for _, b := range other.Bytes() {
			if b != 0 {
				nz++
			}
		}
		if nz != 0 {
			t.Errorf("the Claim left waiting by Managed.Close wrote %d bytes into another segment, mapped later", nz)
		}
	})
}

// TestBreak3QueueSlotFreedInProcessNotSeen: a Claim that found every
// producer slot taken waits in getSlot's loop, which only looks at the
// shared table for a slot free there (token 0) or a dead process's. A slot
// given back by another goroutine of the same process goes to the
// process's own free list (putSlot) and keeps the process's token in the
// table: the waiter never sees it. With one slot (Producers: 1) and two
// goroutines sending, the second one waits for ever (here: its timeout),
// even after the first one is done with the slot and sends no more.
func TestBreak3QueueSlotFreedInProcessNotSeen(t *testing.T) {
	c := Config{Name: testName(t), Size: 64}
	c.Queues = append(c.Queues, QueueSpec{Capacity: 1024, Producers: 1})
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q, err := m.Queue(0)
	if err != nil {
		t.Fatal(err)
	}
	first, err := q.Claim(8)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.SendTimeout([]byte("second"), 2*time.Second) }()
	time.Sleep(20 * time.Millisecond) // the second one is waiting for the slot
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := <-done; err != nil {
		t.Fatalf("a send waiting for the only slot, which the first claim gave back: %v after %v", err, time.Since(start))
	}
}

// b3State describes the queue for a failure message: head, tail, the
// written records between them, and the slots whose claim ends past head,
// with whether their process lives.
func (q *Queue) b3State() string {
	h, tl := atomic.LoadUint64(q.head), atomic.LoadUint64(q.tail)
	s := fmt.Sprintf("head %d tail %d cwake %#x pwake %#x skipped %d", h, tl, atomic.LoadUint32(q.cwake), atomic.LoadUint32(q.pwake), atomic.LoadUint64(q.skipped))
	for p := h; p < tl && p-h <= uint64(len(q.ring)); p += qRecHeader {
		if q.written(p) {
			hd := atomic.LoadUint64(q.hd(p))
			s += fmt.Sprintf("\n  written at %d: state %d, length %d", p, recState(hd), recLen(hd))
		}
	}
	for i := 0; i < q.nsl; i++ {
		tok := atomic.LoadUint64(q.slotWord(i, 0))
		st, tot := atomic.LoadUint64(q.slotWord(i, 1)), atomic.LoadUint64(q.slotWord(i, 2))
		if tok != 0 && st+tot > h {
			s += fmt.Sprintf("\n  slot %d: claim [%d, %d), process alive %v", i, st, st+tot, owner.Alive(unsafe.Pointer(q.slotWord(i, 0)), owner.Token(tok)))
		}
	}
	return s
}

// TestBreak3QueueCommitAfterClose: Release refuses to run on a closed queue
// (ErrClosed), Commit and Abort do not look: finish writes the record's
// header and commit word through the Queue's pointers whatever happened.
// After Managed.Close unmapped the segment, and the program mapped another
// one (the kernel hands out the freed range again), a Commit of a Claim
// taken before the Close returns nil and writes into the other segment.
func TestBreak3QueueCommitAfterClose(t *testing.T) {
	m, q := newQueue(t, 256, 0)
	size := len(m.Segment().Bytes())
	cl, err := q.Claim(16)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	other, err := Create(testName(t), size)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var cerr error
	func() {
		defer func() {
			if r := recover(); r != nil {
				cerr = fmt.Errorf("PANIC %v", r)
			}
		}()
		cerr = cl.Commit()
	}()
	if !errors.Is(cerr, ErrClosed) {
		t.Errorf("Commit after Managed.Close: %v, want ErrClosed", cerr)
	}
	nz := 0
	for _, b := range other.Bytes() {
		if b != 0 {
			nz++
		}
	}
	if nz != 0 {
		t.Errorf("the Commit wrote %d bytes into another segment mapped after the Close", nz)
	}
}

// TestBreak3QueueClaimAbandonedByCloseReopen: a process closes its Managed
// with a claim in progress (it can never be committed now) and opens the
// segment again (a reconnect). Queue.Close gives back only the free slots:
// the claim's slot still holds the process's token, which is alive again
// once it reopened. The consumer, finding the claim unwritten, waits for
// that live process for ever: nothing after the abandoned claim is ever
// delivered.
func TestBreak3QueueClaimAbandonedByCloseReopen(t *testing.T) {
	m, q := newQueue(t, 1024, 0)
	name := m.Segment().Name()
	mp, err := OpenManaged(name) // the producing part of the program
	if err != nil {
		t.Fatal(err)
	}
	qp, err := mp.Queue(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qp.Claim(16); err != nil { // [0, 32), abandoned
		t.Fatal(err)
	}
	mp.Close()
	mp2, err := OpenManaged(name) // it reconnects
	if err != nil {
		t.Fatal(err)
	}
	defer mp2.Close()
	qp2, err := mp2.Queue(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := qp2.Send([]byte("after")); err != nil { // [32, 64)
		t.Fatal(err)
	}
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	msg, err := c.ReceiveTimeout(2 * time.Second)
	if err != nil || string(msg.Bytes()) != "after" {
		t.Fatalf("the message after a claim abandoned by Close: %q, %v after %v\n%s", msg.Bytes(), err, time.Since(start), q.b3State())
	}
}
