package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-shm/shm"
)

func init() {
	register(&command{
		name:    "demo",
		args:    "[-workers N] [-count M] [-rounds R] [-messages Q]",
		summary: "run worker processes that share a counter, bounce an event and send messages",
		help: `
Creates a managed segment with a mutex, events and a queue, starts N worker
processes of this program that open it by name, and has each add 1 to a
shared counter M times under the mutex. Then one worker and this process
bounce an event R times, and the round trip is timed. Then every worker
sends Q messages of 16 to 127 bytes into the queue, and this process
receives them, checking each one (per-worker order, length, contents). It
reports the final count against the expected N*M, the wall time, the event
round-trip time between two processes (median and 99th percentile), and
the messages received and checked of the N*Q sent, with the rate. The exit
status is 1 if the count is wrong or a message is lost, repeated or
damaged. The segment is removed on exit, Ctrl-C included.`,
		flags: func(fs *flag.FlagSet) {
			fs.Int("workers", 4, "worker processes")
			fs.Int("count", 100000, "increments per worker")
			fs.Int("rounds", 10000, "event round trips to time")
			fs.Int("messages", 200000, "messages each worker sends through the queue")
			fs.String("worker", "", "internal: run as a worker of the demo segment `NAME`")
			fs.Int("index", 0, "internal: the worker's index")
		},
		run: runDemo,
	})
}

// demoState is the demo's shared data, guarded by lock 0.
type demoState struct {
	Counter  uint64
	Ready    uint32 // workers that opened the segment (atomic)
	Finished uint32 // workers done counting (atomic)
}

const (
	demoLock    = 0
	demoPing    = 0 // event: this process -> worker 0
	demoPong    = 1 // event: worker 0 -> this process
	demoStart   = 2 // manual event: go
	demoQueueGo = 3 // manual event: send the messages
	demoQueue   = 0 // the queue: workers -> this process
	demoTimeout = 60 * time.Second
)

func flagInt(e *env, name string) int {
	return e.flags.Lookup(name).Value.(flag.Getter).Get().(int)
}

func runDemo(e *env, args []string) error {
	if len(args) != 0 {
		return usageErrorf("demo takes no arguments")
	}
	workers, count, rounds := flagInt(e, "workers"), flagInt(e, "count"), flagInt(e, "rounds")
	messages := flagInt(e, "messages")
	if name := e.flags.Lookup("worker").Value.String(); name != "" {
		return demoWorker(name, flagInt(e, "index"), count, rounds, messages)
	}
	if workers < 1 || workers > 64 || count < 0 || rounds < 0 || messages < 0 {
		return usageErrorf("need 1 <= workers <= 64, count >= 0, rounds >= 0 and messages >= 0")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	conf := shm.Config{Size: 64}
	conf.AddLock(shm.LockMutex, 0, 64)
	conf.AddEvent(shm.EventAuto)
	conf.AddEvent(shm.EventAuto)
	conf.AddEvent(shm.EventManual)
	conf.AddEvent(shm.EventManual)
	conf.AddQueue(1<<20, 0)
	m, err := conf.Create()
	if err != nil {
		return err
	}
	defer m.Close()
	st, err := shm.View[demoState](m.Data())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "shm demo: %d worker processes x %d increments on segment %q\n", workers, count, m.Name())

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var cmds []*exec.Cmd
	done := make(chan error, workers)
	for i := 0; i < workers; i++ {
		c := exec.CommandContext(ctx, self, "demo", "-worker", m.Name(), "-index", strconv.Itoa(i),
			"-count", strconv.Itoa(count), "-rounds", strconv.Itoa(rounds), "-messages", strconv.Itoa(messages))
		c.Stdout, c.Stderr = e.stderr, e.stderr
		if err := c.Start(); err != nil {
			return fmt.Errorf("starting worker %d: %w", i, err)
		}
		cmds = append(cmds, c)
		go func() { done <- c.Wait() }()
	}
	defer func() {
		for _, c := range cmds {
			c.Process.Kill()
		}
	}()

	// Wait for every worker to open the segment, then start them together.
	deadline := time.Now().Add(demoTimeout)
	for atomic.LoadUint32(&st.Ready) < uint32(workers) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("only %d of %d workers opened the segment", atomic.LoadUint32(&st.Ready), workers)
		}
		time.Sleep(time.Millisecond)
	}
	startEv, _ := m.Event(demoStart)
	ping, _ := m.Event(demoPing)
	pong, _ := m.Event(demoPong)
	begin := time.Now()
	startEv.Set()

	for atomic.LoadUint32(&st.Finished) < uint32(workers) {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("a worker failed: %w", err)
			}
			done <- nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Since(begin) > demoTimeout {
			return errors.New("workers did not finish counting in time")
		}
	}
	wall := time.Since(begin)

	// Now that the machine is quiet again, bounce the event with worker 0.
	rtts := make([]time.Duration, 0, rounds)
	for i := 0; i < rounds; i++ {
		t0 := time.Now()
		ping.Set()
		if err := pong.WaitTimeout(demoTimeout); err != nil {
			return fmt.Errorf("round trip %d: %w", i, err)
		}
		rtts = append(rtts, time.Since(t0))
	}

	// Then the workers send their messages, and this process checks them.
	q, err := m.Queue(demoQueue)
	if err != nil {
		return err
	}
	cons, err := q.Consumer()
	if err != nil {
		return err
	}
	queueGo, _ := m.Event(demoQueueGo)
	queueGo.Set()
	qbegin := time.Now()
	received, qerr := demoReceive(ctx, cons, workers, messages)
	qwall := time.Since(qbegin)

	for range workers {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("a worker failed: %w", err)
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(demoTimeout):
			return errors.New("workers did not exit in time")
		}
	}

	g, err := m.Lock(demoLock)
	if err != nil {
		return err
	}
	got := st.Counter
	g.Unlock()
	want := uint64(workers) * uint64(count)
	verdict := "OK"
	if got != want {
		verdict = "WRONG"
	}
	fmt.Fprintf(e.stdout, "  final count %d (expected %d): %s\n", got, want, verdict)
	per := time.Duration(0)
	if want > 0 {
		per = wall / time.Duration(want)
	}
	fmt.Fprintf(e.stdout, "  wall time %v (%v per increment, all processes together)\n", wall.Round(time.Millisecond), per)
	if len(rtts) > 0 {
		slices.Sort(rtts)
		fmt.Fprintf(e.stdout, "  event round trip between two processes (%d rounds, auto-reset event): median %v, p99 %v\n",
			len(rtts), rtts[len(rtts)/2], rtts[len(rtts)*99/100])
	}
	qverdict := "OK"
	if qerr != nil {
		qverdict = "WRONG: " + qerr.Error()
	}
	fmt.Fprintf(e.stdout, "  queue: %d messages received and checked (expected %d) in %v, %.0f messages/s: %s\n",
		received, workers*messages, qwall.Round(time.Millisecond), float64(received)/qwall.Seconds(), qverdict)
	if got != want {
		return fmt.Errorf("the counter is %d, not %d: increments were lost", got, want)
	}
	return qerr
}

// demoMessage fills b (16 to 127 bytes) with message seq of worker w.
func demoMessage(b []byte, w int, seq uint64) {
	binary.LittleEndian.PutUint64(b, uint64(w))
	binary.LittleEndian.PutUint64(b[8:], seq)
	for i := 16; i < len(b); i++ {
		b[i] = byte(seq) + byte(w)
	}
}

func demoLen(seq uint64) int { return 16 + int(seq%112) }

// demoReceive receives and checks the workers' messages: each worker's
// arrive in order, complete, and none is missing or repeated.
func demoReceive(ctx context.Context, c *shm.Consumer, workers, messages int) (int, error) {
	next := make([]uint64, workers)
	total := workers * messages
	for n := 0; n < total; n++ {
		m, err := c.TryReceive()
		if errors.Is(err, shm.ErrEmpty) {
			wait, cancel := context.WithTimeout(ctx, demoTimeout)
			m, err = c.ReceiveContext(wait)
			cancel()
		}
		if err != nil {
			return n, err
		}
		b := m.Bytes()
		if len(b) < 16 {
			return n, fmt.Errorf("a message of %d bytes", len(b))
		}
		w, seq := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		if w >= uint64(workers) || seq != next[w] {
			return n, fmt.Errorf("message %d of worker %d, expected %d: lost or repeated", seq, w, next[min(w, uint64(workers-1))])
		}
		if len(b) != demoLen(seq) {
			return n, fmt.Errorf("message %d of worker %d has %d bytes, not %d", seq, w, len(b), demoLen(seq))
		}
		for _, x := range b[16:] {
			if x != byte(seq)+byte(w) {
				return n, fmt.Errorf("message %d of worker %d is damaged", seq, w)
			}
		}
		next[w]++
		if err := c.Release(m); err != nil {
			return n, err
		}
	}
	return total, nil
}

func demoWorker(name string, index, count, rounds, messages int) error {
	m, err := shm.OpenManaged(name)
	if err != nil {
		return err
	}
	defer m.Close()
	st, err := shm.View[demoState](m.Data())
	if err != nil {
		return err
	}
	startEv, err := m.Event(demoStart)
	if err != nil {
		return err
	}
	atomic.AddUint32(&st.Ready, 1)
	if err := startEv.WaitTimeout(demoTimeout); err != nil {
		return fmt.Errorf("worker %d: never started: %w", index, err)
	}
	mu, err := m.Mutex(demoLock)
	if err != nil {
		return err
	}
	for i := 0; i < count; i++ {
		mu.Lock()
		st.Counter++
		mu.Unlock()
	}
	atomic.AddUint32(&st.Finished, 1)
	if index == 0 {
		// Worker 0 answers the pings once everyone has counted.
		ping, err := m.Event(demoPing)
		if err != nil {
			return err
		}
		pong, err := m.Event(demoPong)
		if err != nil {
			return err
		}
		for i := 0; i < rounds; i++ {
			if err := ping.WaitTimeout(demoTimeout); err != nil {
				return fmt.Errorf("worker 0: ping %d: %w", i, err)
			}
			if err := pong.Set(); err != nil {
				return err
			}
		}
	}
	// Then every worker sends its messages, written in place.
	queueGo, err := m.Event(demoQueueGo)
	if err != nil {
		return err
	}
	if err := queueGo.WaitTimeout(demoTimeout); err != nil {
		return fmt.Errorf("worker %d: never told to send: %w", index, err)
	}
	q, err := m.Queue(demoQueue)
	if err != nil {
		return err
	}
	p, err := q.Producer()
	if err != nil {
		return err
	}
	defer p.Close()
	for seq := uint64(0); seq < uint64(messages); seq++ {
		c, err := p.ClaimTimeout(demoLen(seq), demoTimeout)
		if err != nil {
			return fmt.Errorf("worker %d: message %d: %w", index, seq, err)
		}
		demoMessage(c.Bytes(), index, seq)
		if err := c.Commit(); err != nil {
			return err
		}
	}
	return nil
}
