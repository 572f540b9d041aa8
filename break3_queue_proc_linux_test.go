//go:build linux

package shm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Queue processes that die, stop, share a PID, or race to take a dead
// consumer's place.

// b3Flags is the user data of these tests' segments.
type b3Flags struct {
	held     int32 // a holding producer claimed
	commit   int32 // 1: the holding producer commits
	attached int32 // consumers that attached
	inUse    int32 // attach attempts refused with ErrInUse
	other    int32 // attach attempts that failed otherwise
	got      [64]int32
	ngot     int32
	received int32 // the first consumer received its messages
}

func newFlagQueue(t *testing.T, capacity int) (string, *Managed, *Queue, *b3Flags) {
	t.Helper()
	cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b3Flags{}))}
	cfg.AddQueue(capacity, 0)
	m, err := cfg.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	q, err := m.Queue(0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := View[b3Flags](m.Data())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Name, m, q, f
}

func b3OpenFlags(name string) (*Managed, *Queue, *b3Flags, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, nil, err
	}
	q, err := m.Queue(0)
	if err != nil {
		return nil, nil, nil, err
	}
	f, err := View[b3Flags](m.Data())
	if err != nil {
		return nil, nil, nil, err
	}
	return m, q, f, nil
}

func b3WaitFlag(t *testing.T, p *int32, want int32, d time.Duration, what string) {
	t.Helper()
	for end := time.Now().Add(d); atomic.LoadInt32(p) < want; {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func init() {
	// args: name, n, text: claim n bytes, write text, hold the claim until
	// told to commit (or killed), then stay alive until killed.
	registerChild("brk3-q-mhold", func(args []string) error {
		_, q, f, err := b3OpenFlags(args[0])
		if err != nil {
			return err
		}
		c, err := q.Claim(atoi(args[1]))
		if err != nil {
			return err
		}
		copy(c.Bytes(), args[2])
		atomic.StoreInt32(&f.held, 1)
		for atomic.LoadInt32(&f.commit) == 0 {
			time.Sleep(time.Millisecond)
		}
		if err := c.Commit(); err != nil {
			return err
		}
		select {}
	})
	// args: name, text: send text, then stay alive until killed.
	registerChild("brk3-q-msend", func(args []string) error {
		_, q, _, err := b3OpenFlags(args[0])
		if err != nil {
			return err
		}
		if err := q.SendTimeout([]byte(args[1]), 10*time.Second); err != nil {
			return err
		}
		select {}
	})
	// args: name, k, r: attach as the consumer (retrying while another is
	// attached, for up to 10 s), receive k messages and release the first
	// r, record what it received, then stay alive until killed. k < 0:
	// receive until 300 ms pass without a message.
	registerChild("brk3-q-mcons", func(args []string) error {
		_, q, f, err := b3OpenFlags(args[0])
		if err != nil {
			return err
		}
		var c *Consumer
		for end := time.Now().Add(10 * time.Second); ; {
			c, err = q.Consumer()
			if err == nil {
				break
			}
			if !errors.Is(err, ErrInUse) {
				atomic.AddInt32(&f.other, 1)
				return err
			}
			atomic.AddInt32(&f.inUse, 1)
			if time.Now().After(end) {
				select {} // stays refused: alive until killed
			}
			time.Sleep(time.Millisecond)
		}
		atomic.AddInt32(&f.attached, 1)
		k, r := atoi(args[1]), atoi(args[2])
		var ms []Message
		for i := 0; k < 0 || i < k; i++ {
			m, err := c.ReceiveTimeout(300 * time.Millisecond)
			if err != nil {
				if k < 0 && errors.Is(err, ErrTimeout) {
					break
				}
				return err
			}
			n := atomic.AddInt32(&f.ngot, 1)
			atomic.StoreInt32(&f.got[n-1], int32(atoi(string(m.Bytes()))))
			ms = append(ms, m)
		}
		if r > 0 {
			if err := c.Release(ms[r-1]); err != nil {
				return err
			}
		}
		atomic.StoreInt32(&f.received, 1)
		select {}
	})
}

// startInPIDNamespace starts role in a new PID namespace, where the child
// is PID 1; it skips the test where that is not allowed.
func startInPIDNamespace(t *testing.T, role string, args ...string) *exec.Cmd {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childArgsEnv+"="+string(a))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process in a new PID namespace: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestBreak3QueueSamePIDOtherProcess: two producers with the same PID (1,
// each in a PID namespace of its own): the first claims and is killed
// holding its claim; the second, alive, commits a message after it. The
// consumer must take the first for dead (its PID lives on) and skip its
// claim within about a liveness slice; the second's message arrives.
func TestBreak3QueueSamePIDOtherProcess(t *testing.T) {
	name, _, q, f := newFlagQueue(t, 1024)
	a := startInPIDNamespace(t, "brk3-q-mhold", name, "16", "first")
	b3WaitFlag(t, &f.held, 1, 20*time.Second, "the first producer's claim")
	startInPIDNamespace(t, "brk3-q-msend", name, "second")
	for end := time.Now().Add(20 * time.Second); ; {
		if st, _ := q.Stats(); st.Tail >= 64 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the second producer did not send")
		}
		time.Sleep(time.Millisecond)
	}
	st, _ := q.Stats()
	t.Logf("producers: %v", st.Producers)
	a.Process.Kill()
	a.Wait()
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	m, err := c.ReceiveTimeout(2 * time.Second)
	if err != nil || string(m.Bytes()) != "second" {
		t.Fatalf("after the first producer's death: %q, %v after %v", m.Bytes(), err, time.Since(start))
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the dead producer's claim held the queue up for %v", d)
	}
	if st, _ := q.Stats(); st.Skipped != 1 {
		t.Errorf("skipped %d claims, want 1", st.Skipped)
	}
}

// TestBreak3QueueSamePIDConsumer: a consumer with PID 1 in its namespace
// is attached and alive: another process with PID 1 (another namespace)
// is refused; once the first is killed, the second takes its place and
// receives the messages the first received and did not release, and no
// released one.
func TestBreak3QueueSamePIDConsumer(t *testing.T) {
	name, _, q, f := newFlagQueue(t, 1024)
	for i := 0; i < 6; i++ {
		if err := q.Send([]byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	first := startInPIDNamespace(t, "brk3-q-mcons", name, "4", "2") // receives 0..3, releases 0, 1
	b3WaitFlag(t, &f.received, 1, 20*time.Second, "the first consumer")
	atomic.StoreInt32(&f.ngot, 0)
	startInPIDNamespace(t, "brk3-q-mcons", name, "-1", "0")
	b3WaitFlag(t, &f.inUse, 3, 20*time.Second, "the second consumer refused")
	if n := atomic.LoadInt32(&f.attached); n != 1 {
		t.Fatalf("%d consumers attached while the first lives", n)
	}
	first.Process.Kill()
	first.Wait()
	b3WaitFlag(t, &f.attached, 2, 5*time.Second, "the second consumer attached")
	b3WaitFlag(t, &f.received, 1, 5*time.Second, "")
	for end := time.Now().Add(5 * time.Second); atomic.LoadInt32(&f.ngot) < 4 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond)
	var got []int32
	for i := int32(0); i < atomic.LoadInt32(&f.ngot); i++ {
		got = append(got, atomic.LoadInt32(&f.got[i]))
	}
	if fmt.Sprint(got) != "[2 3 4 5]" {
		t.Fatalf("the second consumer received %v, want [2 3 4 5]", got)
	}
	if f.other != 0 {
		t.Fatalf("%d attach attempts failed with another error than ErrInUse", f.other)
	}
}

// TestBreak3QueueConsumerKilledRacingAttach: a consumer receives 6
// messages, releases 3, and is killed; 4 processes that were waiting to
// attach race for its place. Exactly one attaches (the others are refused
// with ErrInUse), and it receives messages 3..9: those received and not
// released again, then the rest, in order, none missing, none twice.
func TestBreak3QueueConsumerKilledRacingAttach(t *testing.T) {
	trials := 3
	if long() {
		trials = 30
	}
	for trial := 0; trial < trials; trial++ {
		name, _, q, f := newFlagQueue(t, 1024)
		for i := 0; i < 10; i++ {
			if err := q.Send([]byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		first := startChild(t, "brk3-q-mcons", name, "6", "3")
		b3WaitFlag(t, &f.received, 1, 20*time.Second, "the first consumer")
		atomic.StoreInt32(&f.ngot, 0)
		atomic.StoreInt32(&f.received, 0)
		var racers []*child
		for i := 0; i < 4; i++ {
			racers = append(racers, startChild(t, "brk3-q-mcons", name, "-1", "0"))
		}
		b3WaitFlag(t, &f.inUse, 8, 20*time.Second, "the racers refused while the first lives")
		first.kill()
		b3WaitFlag(t, &f.received, 1, 10*time.Second, "a racer attached and received")
		time.Sleep(100 * time.Millisecond)
		if n := atomic.LoadInt32(&f.attached); n != 2 {
			t.Fatalf("trial %d: %d consumers attached in all, want 2 (the first, then one racer)", trial, n)
		}
		var got []int32
		for i := int32(0); i < atomic.LoadInt32(&f.ngot); i++ {
			got = append(got, atomic.LoadInt32(&f.got[i]))
		}
		if fmt.Sprint(got) != "[3 4 5 6 7 8 9]" {
			t.Fatalf("trial %d: the new consumer received %v, want [3 4 5 6 7 8 9]", trial, got)
		}
		if f.other != 0 {
			t.Fatalf("trial %d: %d attach attempts failed with another error than ErrInUse", trial, f.other)
		}
		for _, r := range racers {
			r.kill()
		}
	}
}

// TestBreak3QueueStoppedProducer: a producer stopped (SIGSTOP) in the
// middle of its claim is alive: the consumer waits for it, a later
// producer's message included (messages come in claim order), and its
// timeouts are honoured; once the producer goes on and commits, both
// arrive in order.
func TestBreak3QueueStoppedProducer(t *testing.T) {
	name, _, q, f := newFlagQueue(t, 1024)
	h := startChild(t, "brk3-q-mhold", name, "5", "first")
	b3WaitFlag(t, &f.held, 1, 20*time.Second, "the producer's claim")
	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer h.cmd.Process.Signal(syscall.SIGCONT)
	b3WaitStopped(t, h.cmd.Process.Pid)
	if err := q.Send([]byte("second")); err != nil {
		t.Fatal(err)
	}
	atomic.StoreInt32(&f.commit, 1)
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range []time.Duration{time.Millisecond, 30 * time.Millisecond, 250 * time.Millisecond} {
		start := time.Now()
		m, err := c.ReceiveTimeout(d)
		el := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("ReceiveTimeout(%v) with a stopped producer's claim first: %q, %v", d, m.Bytes(), err)
		}
		if el < d || el > d+150*time.Millisecond {
			t.Errorf("ReceiveTimeout(%v) returned after %v", d, el)
		}
	}
	if err := h.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second"} {
		m, err := c.ReceiveTimeout(5 * time.Second)
		if err != nil || string(m.Bytes()) != want {
			t.Fatalf("%q, %v; want %q", m.Bytes(), err, want)
		}
		c.Release(m)
	}
	if st, _ := q.Stats(); st.Skipped != 0 {
		t.Errorf("a live (stopped) producer's claim was skipped")
	}
}

// TestBreak3QueueShrunkUnderWaiters: the segment's file is cut to nothing
// (ftruncate by a peer) while a consumer waits for a message, a producer
// for room and another producer for a slot: each returns an error matching
// ErrCorrupt within a second or so; nothing crashes. On a raw queue (a
// Segment with FormatQueue) and on a managed one.
func TestBreak3QueueShrunkUnderWaiters(t *testing.T) {
	for _, kind := range []string{"raw", "managed"} {
		t.Run(kind, func(t *testing.T) {
			var q, q2 *Queue
			var name string
			switch kind {
			case "raw":
				name = testName(t)
				seg, err := Create(name, QueueSize(256, 2))
				if err != nil {
					t.Fatal(err)
				}
				defer seg.Close()
				if q, err = FormatQueue(seg.Bytes(), 256, 0, 2); err != nil {
					t.Fatal(err)
				}
				seg2, err := Open(name)
				if err != nil {
					t.Fatal(err)
				}
				defer seg2.Close()
				if q2, err = AttachQueue(seg2.Bytes()); err != nil {
					t.Fatal(err)
				}
			case "managed":
				name = testName(t)
				cfg := Config{Name: name, Size: 64}
				cfg.Queues = append(cfg.Queues, QueueSpec{Capacity: 256, Producers: 2})
				m, err := cfg.Create()
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				m2, err := OpenManaged(name)
				if err != nil {
					t.Fatal(err)
				}
				defer m2.Close()
				q, _ = m.Queue(0)
				q2, _ = m2.Queue(0)
			}
			// q: the consumer, and a producer that fills the ring and
			// holds the first of the two slots; q2: its own producer
			// holds the second slot and waits for room; q's pool finds
			// no slot.
			c, err := q.Consumer()
			if err != nil {
				t.Fatal(err)
			}
			p1, err := q.Producer()
			if err != nil {
				t.Fatal(err)
			}
			for p1.TrySend(make([]byte, 48)) == nil {
			}
			p2, err := q2.Producer()
			if err != nil {
				t.Fatal(err)
			}
			type res struct {
				who string
				err error
				d   time.Duration
			}
			out := make(chan res, 3)
			var shrunk atomic.Int64
			since := func() time.Duration { return time.Duration(time.Now().UnixNano() - shrunk.Load()) }
			go func() {
				err := p2.SendTimeout(make([]byte, 48), 10*time.Second)
				out <- res{"producer waiting for room", err, since()}
			}()
			go func() {
				_, err := q.ClaimTimeout(8, 10*time.Second)
				out <- res{"producer waiting for a slot", err, since()}
			}()
			time.Sleep(50 * time.Millisecond)
			// Take every message, then wait for more: release none, so
			// that the waiting producer stays waiting.
			go func() {
				var err error
				for err == nil {
					_, err = c.ReceiveTimeout(10 * time.Second)
				}
				out <- res{"consumer waiting for a message", err, since()}
			}()
			time.Sleep(100 * time.Millisecond)
			shrunk.Store(time.Now().UnixNano())
			if err := os.Truncate("/dev/shm/"+name, 0); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				select {
				case r := <-out:
					t.Logf("%s: %v after %v", r.who, r.err, r.d)
					if !errors.Is(r.err, ErrCorrupt) {
						t.Errorf("%s: %v, want ErrCorrupt", r.who, r.err)
					}
					if r.d > 1500*time.Millisecond {
						t.Errorf("%s: returned %v after the shrink", r.who, r.d)
					}
				case <-time.After(12 * time.Second):
					t.Fatalf("a waiter did not return")
				}
			}
		})
	}
}

// b3WaitStopped waits until every thread of process pid is stopped (state
// T in /proc).
func b3WaitStopped(t *testing.T, pid int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		stopped := 0
		for _, e := range ents {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, e.Name()))
			if err != nil {
				continue
			}
			// The state follows the command, in parentheses.
			if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'T' {
				stopped++
			}
		}
		if stopped == len(ents) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("process %d not stopped", pid)
		}
		time.Sleep(time.Millisecond)
	}
}
