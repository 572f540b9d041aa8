//go:build linux

package shm

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Zero allocations on the queue's send, receive, claim, commit and release
// paths: the fast ones, and the ones that sleep (a consumer waiting for a
// message, a producer waiting for room) until a helper process sends or
// releases.

type b3AllocArea struct {
	send    int32 // 1: the helper sends a message on queue 0 after a pause
	release int32 // 1: the helper receives and releases a message of queue 1 after a pause
	quit    int32
}

func init() {
	registerChild("brk3-q-alloc", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		q0, _ := m.Queue(0)
		q1, _ := m.Queue(1)
		a, err := View[b3AllocArea](m.Data())
		if err != nil {
			return err
		}
		c, err := q1.Consumer()
		if err != nil {
			return err
		}
		pause := func() {
			for t := time.Now(); time.Since(t) < 200*time.Microsecond; {
			}
		}
		msg := make([]byte, 24)
		for end := time.Now().Add(2 * time.Minute); atomic.LoadInt32(&a.quit) == 0 && time.Now().Before(end); {
			if atomic.LoadInt32(&a.send) != 0 {
				pause()
				atomic.StoreInt32(&a.send, 0)
				if err := q0.Send(msg); err != nil {
					return err
				}
			}
			if atomic.LoadInt32(&a.release) != 0 {
				pause()
				atomic.StoreInt32(&a.release, 0)
				m, err := c.ReceiveTimeout(time.Second)
				if err != nil {
					return err
				}
				if err := c.Release(m); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func TestBreak3QueueNoAllocs(t *testing.T) {
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b3AllocArea{}))}
	cfg.AddQueue(4096, 0)
	cfg.AddQueue(256, 0)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q0, _ := m.Queue(0)
	q1, _ := m.Queue(1)
	a, err := View[b3AllocArea](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	c0, err := q0.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	p0, err := q0.Producer()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bg := context.Background()
	const long = time.Minute
	msg := make([]byte, 40)
	buf := make([]byte, 4096)
	recvRelease := func(m Message, err error) {
		if err != nil {
			t.Fatal(err)
		}
		if err := c0.Release(m); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(c Claim, err error) {
		if err != nil {
			t.Fatal(err)
		}
		c.Bytes()[0] = 1
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	fast := []struct {
		name string
		f    func()
	}{
		{"Queue.Claim+Commit, Receive+Release", func() { commit(q0.Claim(40)); recvRelease(c0.Receive()) }},
		{"Queue.TryClaim+Abort", func() {
			c, _ := q0.TryClaim(40)
			c.Abort()
			q0.Send(nil)
			recvRelease(c0.Receive())
		}},
		{"Queue.ClaimTimeout, ReceiveTimeout", func() { commit(q0.ClaimTimeout(40, long)); recvRelease(c0.ReceiveTimeout(long)) }},
		{"Queue.ClaimContext, ReceiveContext", func() { commit(q0.ClaimContext(ctx, 40)); recvRelease(c0.ReceiveContext(ctx)) }},
		{"Queue.Send, Copy", func() { q0.Send(msg); c0.Copy(buf) }},
		{"Queue.TrySend, TryCopy", func() { q0.TrySend(msg); c0.TryCopy(buf) }},
		{"Queue.SendTimeout, CopyTimeout", func() { q0.SendTimeout(msg, long); c0.CopyTimeout(buf, long) }},
		{"Queue.SendContext, CopyContext", func() { q0.SendContext(ctx, msg); c0.CopyContext(ctx, buf) }},
		{"Producer.Claim+Commit", func() { commit(p0.Claim(40)); recvRelease(c0.Receive()) }},
		{"Producer.ClaimContext", func() { commit(p0.ClaimContext(ctx, 40)); recvRelease(c0.Receive()) }},
		{"Producer.Send, SendTimeout, TrySend, SendContext", func() {
			p0.Send(msg)
			p0.SendTimeout(msg, long)
			p0.TrySend(msg)
			p0.SendContext(ctx, msg)
			for i := 0; i < 4; i++ {
				c0.Copy(buf)
			}
		}},
	}
	for _, c := range fast {
		assertNoAllocs(t, c.name, c.f)
	}

	h := startChild(t, "brk3-q-alloc", cfg.Name)
	defer func() {
		atomic.StoreInt32(&a.quit, 1)
		h.wait(10 * time.Second)
	}()
	// Queue 1 full: its consumer is the helper.
	for q1.TrySend(make([]byte, 48)) == nil {
	}
	for _, spin := range []int{0, -1} {
		old := SetSpin(spin)
		setting := map[int]string{0: ", spin off", -1: ", default spin"}[spin]
		waits := []struct {
			name string
			f    func()
		}{
			{"Receive", func() { recvRelease(c0.Receive()) }},
			{"ReceiveTimeout", func() { recvRelease(c0.ReceiveTimeout(long)) }},
			{"ReceiveContext(Background)", func() { recvRelease(c0.ReceiveContext(bg)) }},
			{"ReceiveContext(cancellable)", func() { recvRelease(c0.ReceiveContext(ctx)) }},
			{"Copy", func() { c0.Copy(buf) }},
		}
		for _, w := range waits {
			assertNoAllocs(t, "Consumer."+w.name+" blocking"+setting, func() {
				atomic.StoreInt32(&a.send, 1)
				w.f()
			})
		}
		p1, err := q1.Producer()
		if err != nil {
			t.Fatal(err)
		}
		claims := []struct {
			name string
			f    func()
		}{
			{"Queue.Claim", func() { commit(q1.Claim(48)) }},
			{"Queue.ClaimTimeout", func() { commit(q1.ClaimTimeout(48, long)) }},
			{"Queue.ClaimContext(cancellable)", func() { commit(q1.ClaimContext(ctx, 48)) }},
			{"Queue.Send", func() { q1.Send(msg[:40]) }},
			{"Producer.Claim", func() { commit(p1.Claim(48)) }},
			{"Producer.SendContext(Background)", func() { p1.SendContext(bg, msg[:40]) }},
		}
		for _, w := range claims {
			assertNoAllocs(t, w.name+" waiting for room"+setting, func() {
				atomic.StoreInt32(&a.release, 1)
				w.f()
			})
		}
		p1.Close()
		SetSpin(old)
	}
}

// TestBreak3QueueTryPollNoAllocs: the Try forms are what a polling loop
// calls, and "nothing there" is their common answer: TryReceive and TryCopy
// on an empty queue, TryClaim and TrySend on a full one. Each of those
// answers allocates a new *Error (receive and claimIn build one per call),
// so a consumer or producer that polls allocates on every poll.
func TestBreak3QueueTryPollNoAllocs(t *testing.T) {
	_, q := newQueue(t, 256, 0)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	assertNoAllocs(t, "TryReceive on an empty queue", func() { c.TryReceive() })
	assertNoAllocs(t, "TryCopy on an empty queue", func() { c.TryCopy(buf) })
	for q.TrySend(make([]byte, 48)) == nil {
	}
	p, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	assertNoAllocs(t, "TryClaim on a full queue", func() { q.TryClaim(48) })
	assertNoAllocs(t, "TrySend on a full queue", func() { q.TrySend(buf[:48]) })
	assertNoAllocs(t, "Producer.TrySend on a full queue", func() { p.TrySend(buf[:48]) })
}
