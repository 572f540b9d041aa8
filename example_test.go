package shm_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"sync/atomic"
	"time"

	"github.com/go-shm/shm"
)

// Two processes share a segment by name. Here both ends run in one process
// for the sake of the example; in real use the second half runs elsewhere.
func Example() {
	seg, err := shm.Create("", 4096) // "" picks a random name
	if err != nil {
		log.Fatal(err)
	}
	defer seg.Close() // the creator owns it: Close removes the name
	copy(seg.Bytes(), "hello from the creator")

	// Another process opens it by name.
	peer, err := shm.Open(seg.Name())
	if err != nil {
		log.Fatal(err)
	}
	defer peer.Close()
	fmt.Println(string(peer.Bytes()[:22]), peer.Size())
	// Output: hello from the creator 4096
}

// A struct of your own, laid over shared memory, with a lock inside it.
func ExampleView() {
	type Shared struct {
		Mu    shm.Mutex
		Count uint64
	}
	seg, err := shm.Create("", 4096)
	if err != nil {
		log.Fatal(err)
	}
	defer seg.Close()
	s, err := shm.View[Shared](seg.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s.Mu.Lock()
		s.Count++
		s.Mu.Unlock()
	}
	fmt.Println(s.Count)

	// View refuses types that cannot live in shared memory.
	_, err = shm.View[struct{ P *int }](seg.Bytes())
	fmt.Println(err != nil)
	// Output:
	// 3
	// true
}

// Peers that start in any order: the first creates, the others open.
func ExampleOpenOrCreate() {
	name := fmt.Sprintf("example-%d", time.Now().UnixNano())
	a, created, err := shm.OpenOrCreate(name, 1024)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, created2, err := shm.OpenOrCreate(name, 1024)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	fmt.Println(created, created2, a.IsOwner(), b.IsOwner())
	// Output: true false true false
}

// A managed segment: the header tells openers where the locks and events
// are, so they need no configuration.
func ExampleConfig_Create() {
	conf := shm.Config{Size: 4096}
	conf.AddLock(shm.LockRW, 0, 4096)
	conf.AddEvent(shm.EventAuto)
	m, err := conf.Create()
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	// Another process would open it by name (or by link file).
	peer, err := shm.OpenManaged(m.Name())
	if err != nil {
		log.Fatal(err)
	}
	defer peer.Close()
	fmt.Println(peer.NumLocks(), "lock,", peer.NumEvents(), "event")

	g, err := m.Lock(0)
	if err != nil {
		log.Fatal(err)
	}
	copy(g.Bytes(), "ping")
	g.Unlock()
	ev, _ := m.Event(0)
	ev.Set()

	pev, _ := peer.Event(0)
	if err := pev.WaitTimeout(time.Second); err != nil {
		log.Fatal(err)
	}
	r, err := peer.RLock(0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(r.Bytes()[:4]))
	r.Unlock()
	// Output:
	// 1 lock, 1 event
	// ping
}

// A waiter that finds the lock's holder dead gets the lock and
// ErrOwnerDead, repairs the data, and marks the lock consistent.
func ExampleMutex_LockTimeout() {
	var mu shm.Mutex // in real use: inside a segment
	switch err := mu.LockTimeout(time.Second); {
	case errors.Is(err, shm.ErrOwnerDead):
		// The lock is held; the data it guards may be half-updated.
		// Repair it, then:
		mu.MarkConsistent()
	case errors.Is(err, shm.ErrTimeout):
		fmt.Println("busy")
		return
	case err != nil:
		log.Fatal(err)
	}
	defer mu.Unlock()
	fmt.Println("locked")
	// Output: locked
}

// An auto-reset event: one Set releases one waiter, and a Set with nobody
// waiting is kept for the next Wait.
func ExampleAutoEvent() {
	var ev shm.AutoEvent // in real use: inside a segment
	var done atomic.Bool
	go func() {
		done.Store(true)
		ev.Set()
	}()
	if err := ev.WaitTimeout(5 * time.Second); err != nil {
		log.Fatal(err)
	}
	fmt.Println(done.Load())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	fmt.Println(ev.WaitContext(ctx)) // consumed: nothing left to take
	// Output:
	// true
	// context deadline exceeded
}

// Create fails with fs.ErrExist when the name is taken.
func ExampleCreate() {
	seg, err := shm.Create("", 64)
	if err != nil {
		log.Fatal(err)
	}
	defer seg.Close()
	_, err = shm.Create(seg.Name(), 64)
	fmt.Println(errors.Is(err, fs.ErrExist))
	// Output: true
}

// A queue: any number of producers, one consumer; each message is taken
// once.
func ExampleQueue() {
	conf := shm.Config{Size: 64}
	conf.AddQueue(1<<16, 0) // a ring of 64 KiB
	m, err := conf.Create()
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	q, _ := m.Queue(0) // in the producer process (any number of them)
	for _, s := range []string{"order 1", "order 2"} {
		if err := q.Send([]byte(s)); err != nil {
			log.Fatal(err)
		}
	}

	c, err := q.Consumer() // in the consumer process: one at a time
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 2; i++ {
		msg, err := c.ReceiveTimeout(time.Second) // in place, in the ring
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(msg.Bytes()))
		c.Release(msg) // its space goes back to the producers
	}
	// Output:
	// order 1
	// order 2
}

// A broadcast log: one writer, any number of readers, each reading every
// message from its own position; the writer never waits for them.
func ExampleLog() {
	conf := shm.Config{Size: 64}
	conf.AddLog(1<<20, 0) // a ring of 1 MiB
	m, err := conf.Create()
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	l, _ := m.Log(0)

	w, err := l.Writer() // in the publishing process: one writer at a time
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	r, err := l.Reader(shm.LogOldest) // in each subscribing process
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	w.Append([]byte("tick 1"))
	w.Append([]byte("tick 2"))
	buf := make([]byte, l.MaxMessage())
	for i := 0; i < 2; i++ {
		n, err := r.CopyTimeout(buf, time.Second)
		var lost *shm.LostError
		if errors.As(err, &lost) {
			fmt.Println("fell behind: lost", lost.Count)
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// tick 1
	// tick 2
}

// A latest-value cell: one writer stores a struct, readers load it whole,
// never half written, and can wait for the next store.
func ExampleCell() {
	type Quote struct {
		Bid, Ask int64
		Time     int64
	}
	conf := shm.Config{Size: 64}
	conf.AddCell(24) // the size of a Quote
	m, err := conf.Create()
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	c, _ := m.Cell(0)

	w, err := c.Writer() // in the writing process
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	if err := shm.StoreValue(w, &Quote{Bid: 100, Ask: 101, Time: 1}); err != nil {
		log.Fatal(err)
	}

	var q Quote // in any reading process
	version, err := shm.LoadValue(c, &q)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(version, q.Bid, q.Ask)
	go shm.StoreValue(w, &Quote{Bid: 102, Ask: 103, Time: 2})
	if _, err := c.WaitTimeout(version, time.Second); err != nil { // the next store
		log.Fatal(err)
	}
	shm.LoadValue(c, &q)
	fmt.Println(q.Bid, q.Ask)
	// Output:
	// 1 100 101
	// 102 103
}
