package shm

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// The queue's send, receive, claim, commit, copy and release paths allocate
// nothing: neither when the other side keeps up nor when a call must wait
// (for a message, or for room).

const (
	qaCapacity = 1024
	qaCtrl     = 4096 // the control page, then queue a, then queue b
)

// queueAllocCtrl is the control page of TestNoAllocsQueueBlocking: the test
// consumes queue a and produces into queue b; the helper process does the
// other side of each, on request.
type queueAllocCtrl struct {
	send     uint32 // requests: send one message into a after a pause
	recv     uint32 // requests: receive (and release) one message of b after a pause
	attached uint32 // the helper is b's consumer
	quit     uint32
}

func queueAllocSegment(t *testing.T) (*Segment, *queueAllocCtrl, *Queue, *Queue) {
	t.Helper()
	size := qaCtrl + 2*QueueSize(qaCapacity, 0)
	seg, err := Create(testName(t), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	ctrl, err := View[queueAllocCtrl](seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	b := seg.Bytes()[qaCtrl:]
	qa, err := FormatQueue(b[:QueueSize(qaCapacity, 0)], qaCapacity, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	qb, err := FormatQueue(b[QueueSize(qaCapacity, 0):], qaCapacity, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qa.Close(); qb.Close() })
	return seg, ctrl, qa, qb
}

func init() {
	registerChild("queue-alloc-helper", func(args []string) error {
		seg, err := Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		ctrl, err := View[queueAllocCtrl](seg.Bytes())
		if err != nil {
			return err
		}
		b := seg.Bytes()[qaCtrl:]
		qa, err := AttachQueue(b[:QueueSize(qaCapacity, 0)])
		if err != nil {
			return err
		}
		defer qa.Close()
		qb, err := AttachQueue(b[QueueSize(qaCapacity, 0):])
		if err != nil {
			return err
		}
		defer qb.Close()
		cb, err := qb.Consumer()
		if err != nil {
			return err
		}
		atomic.StoreUint32(&ctrl.attached, 1)
		msg := make([]byte, 48)
		deadline := time.Now().Add(time.Minute)
		for atomic.LoadUint32(&ctrl.quit) == 0 {
			if time.Now().After(deadline) {
				return errors.New("the test did not finish within a minute")
			}
			did := false
			if atomic.LoadUint32(&ctrl.send) != 0 {
				time.Sleep(2 * time.Millisecond) // the waiter is past spinning
				atomic.StoreUint32(&ctrl.send, 0)
				if err := qa.Send(msg); err != nil {
					return err
				}
				did = true
			}
			if atomic.LoadUint32(&ctrl.recv) != 0 {
				time.Sleep(2 * time.Millisecond)
				atomic.StoreUint32(&ctrl.recv, 0)
				m, err := cb.Receive()
				if err != nil {
					return err
				}
				if err := cb.Release(m); err != nil {
					return err
				}
				did = true
			}
			if !did {
				time.Sleep(50 * time.Microsecond)
			}
		}
		return nil
	})
}

func TestNoAllocsQueueFastPaths(t *testing.T) {
	_, _, q, _ := queueAllocSegment(t)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	p, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const long = time.Minute
	msg := make([]byte, 100)
	buf := make([]byte, 512)
	recvRelease := func() {
		m, err := c.TryReceive()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Release(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Claim+Commit+Receive+Release", func() {
			cl, _ := q.Claim(64)
			cl.Bytes()[0] = 1
			cl.Commit()
			m, _ := c.Receive()
			c.Release(m)
		}},
		{"TryClaim+Abort", func() {
			cl, _ := q.TryClaim(64)
			cl.Abort()
			c.TryReceive() // skips the aborted record, releasing it
		}},
		{"ClaimTimeout+Commit", func() { cl, _ := q.ClaimTimeout(8, long); cl.Commit(); recvRelease() }},
		{"ClaimContext+Commit", func() { cl, _ := q.ClaimContext(ctx, 8); cl.Commit(); recvRelease() }},
		{"Send+ReceiveTimeout", func() {
			q.Send(msg)
			m, _ := c.ReceiveTimeout(long)
			c.Release(m)
		}},
		{"TrySend+ReceiveContext", func() {
			q.TrySend(msg)
			m, _ := c.ReceiveContext(ctx)
			c.Release(m)
		}},
		{"SendTimeout+Copy", func() { q.SendTimeout(msg, long); c.Copy(buf) }},
		{"SendContext+CopyTimeout", func() { q.SendContext(ctx, msg); c.CopyTimeout(buf, long) }},
		{"Producer.Send+TryCopy", func() { p.Send(msg); c.TryCopy(buf) }},
		{"Producer.Claim+Commit+CopyContext", func() {
			cl, _ := p.Claim(32)
			cl.Commit()
			c.CopyContext(ctx, buf)
		}},
		{"Producer.TryClaim+Commit", func() { cl, _ := p.TryClaim(0); cl.Commit(); recvRelease() }},
		{"Producer.TrySend+SendTimeout+SendContext", func() {
			p.TrySend(msg)
			p.SendTimeout(msg, long)
			p.SendContext(ctx, msg)
			for i := 0; i < 3; i++ {
				recvRelease()
			}
		}},
		{"batch: 4 Receive, 1 Release", func() {
			for i := 0; i < 4; i++ {
				q.Send(msg[:16])
			}
			var m Message
			for i := 0; i < 4; i++ {
				m, _ = c.Receive()
			}
			c.Release(m)
		}},
		{"TryReceive on an empty queue", func() {
			if _, err := c.TryReceive(); !errors.Is(err, ErrEmpty) {
				t.Fatal(err)
			}
		}},
	} {
		assertNoAllocs(t, "Queue "+tc.name, tc.f)
	}
	if s, err := q.Stats(); err != nil || s.Tail != s.Head {
		t.Fatalf("after the cases: %+v, %v", s, err)
	}
	for q.TrySend(msg) == nil {
	}
	assertNoAllocs(t, "Queue TrySend and TryClaim on a full queue", func() {
		if err := q.TrySend(msg); !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
		if _, err := p.TryClaim(8); !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
	})
}

// TestNoAllocsQueueBlocking makes the consumer wait for a message and a
// producer wait for room, each woken by a helper process (see
// TestNoAllocsBlocking for why another process), with spinning off and with
// the default spin.
func TestNoAllocsQueueBlocking(t *testing.T) {
	seg, ctrl, qa, qb := queueAllocSegment(t)
	c, err := qa.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	h := startChild(t, "queue-alloc-helper", seg.Name())
	defer func() {
		atomic.StoreUint32(&ctrl.quit, 1)
		h.wait(10 * time.Second)
	}()
	for atomic.LoadUint32(&ctrl.attached) == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const long = time.Minute
	msg := make([]byte, qb.MaxMessage())
	for qb.TrySend(msg) == nil { // fill b: every send below waits for room
	}
	for _, spin := range []int{0, -1} {
		old := SetSpin(spin)
		setting := map[int]string{0: ", spin off", -1: ", default spin"}[spin]
		for _, tc := range []struct {
			name string
			f    func() (Message, error)
		}{
			{"Receive", c.Receive},
			{"ReceiveTimeout", func() (Message, error) { return c.ReceiveTimeout(long) }},
			{"ReceiveContext", func() (Message, error) { return c.ReceiveContext(ctx) }},
		} {
			assertNoAllocs(t, "Consumer."+tc.name+" blocking"+setting, func() {
				atomic.StoreUint32(&ctrl.send, 1)
				m, err := tc.f()
				if err != nil {
					t.Fatal(err)
				}
				c.Release(m)
			})
		}
		for _, tc := range []struct {
			name string
			f    func() error
		}{
			{"Send", func() error { return qb.Send(msg) }},
			{"SendTimeout", func() error { return qb.SendTimeout(msg, long) }},
			{"SendContext", func() error { return qb.SendContext(ctx, msg) }},
			{"Claim+Commit", func() error {
				cl, err := qb.Claim(len(msg))
				if err != nil {
					return err
				}
				return cl.Commit()
			}},
		} {
			assertNoAllocs(t, "Queue."+tc.name+" blocking on a full queue"+setting, func() {
				atomic.StoreUint32(&ctrl.recv, 1)
				if err := tc.f(); err != nil {
					t.Fatal(err)
				}
			})
		}
		SetSpin(old)
	}
}
