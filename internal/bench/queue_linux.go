package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/futex"
)

// The queue modes.
//
// The round-trip segment holds six Queues besides the words of the other
// modes: a stream queue (this process to the peer), two pairs of queues for
// request and response round trips (a pair of 64 KiB rings for messages up
// to smallMax bytes, a pair of 4 MiB rings for larger ones, up to MaxSize),
// and a queue that producer processes (the peer and helpers, StartHelpers)
// send to this process. Each process attaches its ends once: a Producer
// for every queue it sends to, the Consumer of every queue it receives from.
//
// RawRing is the hardware's floor for a stream: a minimal single-producer
// single-consumer ring of 64-byte slots, head and tail words on cache lines
// of their own, each side keeping a copy of the other's word and reading it
// again only when the ring looks full (or empty). Both sides poll with a
// backoff. Its ring holds 64 KiB, as the stream queue's.
//
// Every message carries its sequence number (from 1) in its first 8 bytes,
// and for QueueProducers the sending producer's index in the next 4; the
// receiving side checks them, so that a broken queue fails the run instead
// of measuring it.

// Queue indices in the round-trip segment.
const (
	qStream  = iota // this process -> peer, 64 KiB: streams
	qPing           // this process -> peer, 64 KiB: round trips
	qPong           // peer -> this process, 64 KiB
	qBigPing        // this process -> peer, 4 MiB: round trips and streams of larger messages
	qBigPong        // peer -> this process, 4 MiB
	qMulti          // producer processes -> this process, 64 KiB
	nQueues
)

const (
	smallRing = 64 << 10
	bigRing   = 4 << 20
	smallMax  = smallRing/2 - 16 // shm.QueueMaxMessage(smallRing)

	// MaxSize is the largest message of the queue modes.
	MaxSize = 1 << 20

	rawSlot  = 64
	rawSlots = smallRing / rawSlot

	// maxHelpers is how many helper processes StartHelpers may start.
	maxHelpers = 7
)

// queueShared is the queue modes' part of the round-trip segment.
type queueShared struct {
	end    padInt64            // when the peer received a stream's last message (monotonic)
	hready [maxHelpers]padWord // helper i+1 is running command hready[i]
	hdone  [maxHelpers]padWord // helper i+1 finished command hdone[i]
	ring   rawRing
}

type padInt64 struct {
	v int64
	_ [56]byte
}

// rawRing is RawRing's ring.
type rawRing struct {
	tail uint64 // messages written; stored by the producer only
	_    [56]byte
	head uint64 // messages read; stored by the consumer only
	_    [56]byte
	slot [rawSlots][rawSlot]byte
}

// reset clears the words of a command, before the peer starts it.
func (q *queueShared) reset() {
	atomic.StoreInt64(&q.end.v, 0)
	atomic.StoreUint64(&q.ring.tail, 0)
	atomic.StoreUint64(&q.ring.head, 0)
}

// addQueues declares the queues of the round-trip segment.
func addQueues(c *shm.Config) {
	for i := 0; i < nQueues; i++ {
		capacity := smallRing
		if i == qBigPing || i == qBigPong {
			capacity = bigRing
		}
		c.AddQueue(capacity, 0)
	}
}

// monotonic reads CLOCK_MONOTONIC, a clock both processes share (Go's
// monotonic readings count from each process's start).
func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// backoff paces a side that polls for the other: a short pause between
// polls, and after backoffSpins polls a sched_yield before each, so that on
// a machine with no CPU to spare the side it waits for gets to run.
type backoff int

const backoffSpins = 1000

func (b *backoff) wait() {
	if *b < backoffSpins {
		*b++
		pause()
		return
	}
	unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// stamp writes a message's sequence number and producer; seqOf reads them.
func stamp(b []byte, seq uint64, from int) {
	binary.LittleEndian.PutUint64(b, seq)
	binary.LittleEndian.PutUint32(b[8:], uint32(from))
}

func seqOf(b []byte) (seq uint64, from int) {
	return binary.LittleEndian.Uint64(b), int(binary.LittleEndian.Uint32(b[8:]))
}

// checkMsg panics unless b is message seq of size bytes.
func checkMsg(b []byte, size int, seq uint64) {
	if len(b) != size {
		panic(fmt.Sprintf("bench: message %d has %d bytes, want %d", seq, len(b), size))
	}
	if got, _ := seqOf(b); got != seq {
		panic(fmt.Sprintf("bench: message %d received in place of %d", got, seq))
	}
}

func must(err error) {
	if err != nil {
		panic("bench: " + err.Error())
	}
}

// coordQueues are the coordinator's ends of the queues.
type coordQueues struct {
	stream, ping, bigPing *shm.Producer
	pong, bigPong, multi  *shm.Consumer
	buf, back             []byte                 // a message to send, one read back
	last                  [maxHelpers + 1]uint64 // QueueProducers: the last sequence number of each producer
}

func openCoordQueues(m *shm.Managed) (e *coordQueues, err error) {
	e = &coordQueues{buf: make([]byte, MaxSize), back: make([]byte, MaxSize)}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	for i, p := range []**shm.Producer{&e.stream, &e.ping, &e.bigPing} {
		if *p, err = producer(m, []int{qStream, qPing, qBigPing}[i]); err != nil {
			return nil, err
		}
	}
	for i, c := range []**shm.Consumer{&e.pong, &e.bigPong, &e.multi} {
		if *c, err = consumer(m, []int{qPong, qBigPong, qMulti}[i]); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *coordQueues) close() {
	if e == nil {
		return
	}
	closeEnds([]*shm.Producer{e.stream, e.ping, e.bigPing}, []*shm.Consumer{e.pong, e.bigPong, e.multi})
}

// pair returns the queues of a round trip of size bytes.
func (e *coordQueues) pair(size int) (*shm.Producer, *shm.Consumer) {
	if size <= smallMax {
		return e.ping, e.pong
	}
	return e.bigPing, e.bigPong
}

// peerQueues are the peer's ends.
type peerQueues struct {
	stream, ping, bigPing *shm.Consumer
	pong, bigPong, multi  *shm.Producer
	buf                   []byte
}

func openPeerQueues(m *shm.Managed) (e *peerQueues, err error) {
	e = &peerQueues{buf: make([]byte, MaxSize)}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	for i, c := range []**shm.Consumer{&e.stream, &e.ping, &e.bigPing} {
		if *c, err = consumer(m, []int{qStream, qPing, qBigPing}[i]); err != nil {
			return nil, err
		}
	}
	for i, p := range []**shm.Producer{&e.pong, &e.bigPong, &e.multi} {
		if *p, err = producer(m, []int{qPong, qBigPong, qMulti}[i]); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *peerQueues) close() {
	if e == nil {
		return
	}
	closeEnds([]*shm.Producer{e.pong, e.bigPong, e.multi}, []*shm.Consumer{e.stream, e.ping, e.bigPing})
}

// pair returns the queues of a round trip of size bytes, as the peer sees
// them.
func (e *peerQueues) pair(size int) (*shm.Consumer, *shm.Producer) {
	if size <= smallMax {
		return e.ping, e.pong
	}
	return e.bigPing, e.bigPong
}

// streamIn is the queue a stream of size-byte messages comes in by.
func (e *peerQueues) streamIn(size int) *shm.Consumer {
	if size <= smallMax {
		return e.stream
	}
	return e.bigPing
}

func producer(m *shm.Managed, i int) (*shm.Producer, error) {
	q, err := m.Queue(i)
	if err != nil {
		return nil, err
	}
	return q.Producer()
}

func consumer(m *shm.Managed, i int) (*shm.Consumer, error) {
	q, err := m.Queue(i)
	if err != nil {
		return nil, err
	}
	return q.Consumer()
}

func closeEnds(ps []*shm.Producer, cs []*shm.Consumer) {
	for _, p := range ps {
		if p != nil {
			p.Close()
		}
	}
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// checkJob fills in a Job's defaults and checks it.
func (p *Peer) checkJob(j *Job) error {
	switch j.Mode {
	case RawRing:
		j.Size = rawSlot
	case QueueStream, QueueCopy, QueuePingPong, UnixSocketSized, QueueProducers:
		if j.Size == 0 {
			j.Size = 64
		}
		if j.Size < 16 || j.Size > MaxSize {
			return fmt.Errorf("bench: messages of %d bytes (from 16 to %d)", j.Size, MaxSize)
		}
	case LogStream, LogPingPong:
		if j.Size == 0 {
			j.Size = 64
		}
		if j.Size < 16 || j.Size > logMax {
			return fmt.Errorf("bench: log messages of %d bytes (from 16 to %d)", j.Size, logMax)
		}
	}
	if j.Batch < 1 {
		j.Batch = 1
	}
	if j.Mode == LogStream {
		if j.Readers < 1 {
			j.Readers = 1
		}
		if j.Readers > 1+len(p.helpers) {
			return fmt.Errorf("bench: %d log readers need %d helper processes, %d started", j.Readers, j.Readers-1, len(p.helpers))
		}
	}
	if j.Mode == Contended || j.Mode == RawContended {
		if j.Producers < 2 {
			j.Producers = 2
		}
		if j.Producers > 2+len(p.helpers) {
			return fmt.Errorf("bench: %d contending processes need %d helper processes, %d started", j.Producers, j.Producers-2, len(p.helpers))
		}
	}
	if j.Mode == QueueProducers {
		if j.Size > smallMax {
			return fmt.Errorf("bench: messages of %d bytes from several producers (at most %d)", j.Size, smallMax)
		}
		if j.Producers < 1 {
			j.Producers = 1
		}
		if j.Producers > 1+len(p.helpers) {
			return fmt.Errorf("bench: %d producers need %d helper processes, %d started", j.Producers, j.Producers-1, len(p.helpers))
		}
		j.N -= j.N % j.Producers
	}
	return nil
}

// queueTrip is trip for the queue modes: the coordinator sends a stream's
// message i, or makes round trip i, or receives message i of the producers'.
func (p *Peer) queueTrip(j Job) (trip func(i uint32), end func()) {
	e, size := p.qe, j.Size
	switch j.Mode {
	case RawRing:
		r := &p.s.qs.ring
		var tail, head uint64 // Prepare reset the ring
		var msg [rawSlot]byte
		return func(i uint32) {
			var bo backoff
			for tail-head >= rawSlots {
				if head = atomic.LoadUint64(&r.head); tail-head >= rawSlots {
					bo.wait()
				}
			}
			stamp(msg[:], uint64(i), 0)
			r.slot[tail%rawSlots] = msg
			tail++
			atomic.StoreUint64(&r.tail, tail)
		}, nil
	case QueueStream, QueueCopy:
		prod := e.stream
		if size > smallMax {
			prod = e.bigPing
		}
		msg := e.buf[:size]
		return func(i uint32) {
			stamp(msg, uint64(i), 0)
			must(prod.Send(msg))
		}, nil
	case QueuePingPong:
		ping, pong := e.pair(size)
		msg := e.buf[:size]
		return func(i uint32) {
			stamp(msg, uint64(i), 0)
			must(ping.Send(msg))
			n, err := pong.Copy(e.back)
			must(err)
			checkMsg(e.back[:n], size, uint64(i))
		}, nil
	case UnixSocketSized:
		msg, back := e.buf[:size], e.back[:size]
		return func(i uint32) {
			stamp(msg, uint64(i), 0)
			full(p.sock, msg, true)
			full(p.sock, back, false)
			checkMsg(back, size, uint64(i))
		}, nil
	case QueueProducers:
		last := e.last[:j.Producers]
		clear(last)
		return func(uint32) {
			m, err := e.multi.Receive()
			must(err)
			b := m.Bytes()
			if len(b) != size {
				panic(fmt.Sprintf("bench: a producer's message has %d bytes, want %d", len(b), size))
			}
			seq, from := seqOf(b)
			if from >= len(last) || seq != last[from]+1 {
				panic(fmt.Sprintf("bench: message %d of producer %d after %d", seq, from, last[min(from, len(last)-1)]))
			}
			last[from] = seq
			must(e.multi.Release(m))
		}, nil
	}
	return nil, nil
}

// respond is the peer's side of the queue modes' command c.
func (e *peerQueues) respond(s *shared, c uint32, j Job) {
	n, size := uint64(j.N), j.Size
	switch j.Mode {
	case RawRing:
		r := &s.qs.ring
		var head, tail uint64
		for i := uint64(1); i <= n; i++ {
			var bo backoff
			for head == tail {
				if tail = atomic.LoadUint64(&r.tail); head == tail {
					bo.wait()
				}
			}
			if got, _ := seqOf(r.slot[head%rawSlots][:]); got != i {
				panic(fmt.Sprintf("bench: raw ring: message %d in place of %d", got, i))
			}
			head++
			atomic.StoreUint64(&r.head, head)
		}
		atomic.StoreInt64(&s.qs.end.v, monotonic())
	case QueueStream:
		// Receive waits for the first message of a batch (spinning, then
		// asleep: the SetSpin policy), TryReceive takes what else is there.
		in := e.streamIn(size)
		for i := uint64(1); i <= n; {
			m, err := in.Receive()
			must(err)
			checkMsg(m.Bytes(), size, i)
			i++
			for k := 1; k < j.Batch && i <= n; k++ {
				m2, err := in.TryReceive()
				if errors.Is(err, shm.ErrEmpty) {
					break
				}
				must(err)
				checkMsg(m2.Bytes(), size, i)
				i++
				m = m2
			}
			must(in.Release(m))
		}
		atomic.StoreInt64(&s.qs.end.v, monotonic())
	case QueueCopy:
		in := e.streamIn(size)
		for i := uint64(1); i <= n; i++ {
			k, err := in.Copy(e.buf)
			must(err)
			checkMsg(e.buf[:k], size, i)
		}
		atomic.StoreInt64(&s.qs.end.v, monotonic())
	case QueuePingPong:
		in, out := e.pair(size)
		for i := uint64(1); i <= n; i++ {
			m, err := in.Receive()
			must(err)
			checkMsg(m.Bytes(), size, i)
			must(out.Send(m.Bytes()))
			must(in.Release(m))
		}
	case UnixSocketSized:
		buf := e.buf[:size]
		for i := uint64(1); i <= n; i++ {
			full(peerSock, buf, false)
			checkMsg(buf, size, i)
			full(peerSock, buf, true)
		}
	case QueueProducers:
		produce(s, c, e.multi, 0, j, e.buf)
	}
}

// produce is producer from's side of QueueProducers: it waits for the
// start, then sends its share of the messages, waiting (Send) while the
// queue is full.
func produce(s *shared, c uint32, prod *shm.Producer, from int, j Job, buf []byte) {
	deadline := time.Now().Add(timeout)
	for {
		v := atomic.LoadUint32(&s.start)
		if v == c {
			break
		}
		if time.Now().After(deadline) {
			panic("bench: the producers' start does not come")
		}
		futex.Wait(&s.start, v, 100*time.Millisecond)
	}
	msg := buf[:j.Size]
	for i := uint64(1); i <= uint64(j.N/j.Producers); i++ {
		stamp(msg, i, from)
		must(prod.Send(msg))
	}
}

// full writes or reads all of b on fd.
func full(fd int, b []byte, write bool) {
	for len(b) > 0 {
		var n int
		var err error
		if write {
			n, err = unix.Write(fd, b)
		} else {
			n, err = unix.Read(fd, b)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			panic(fmt.Sprintf("bench: socket round trip: n=%d err=%v", n, err))
		}
		b = b[n:]
	}
}

// Helper processes: more producers for QueueProducers.

type helper struct {
	cmd    *exec.Cmd
	out    strings.Builder
	exited chan struct{}
}

// StartHelpers starts helper processes until there are k (at most 7):
// command(segment, index) makes the process of helper index (from 1),
// which must call ServeHelper with the segment and index. Close ends them.
// QueueProducers with n producers needs n-1 helpers.
func (p *Peer) StartHelpers(k int, command func(segment string, index int) *exec.Cmd) error {
	if k > maxHelpers {
		return fmt.Errorf("bench: %d helper processes (at most %d)", k, maxHelpers)
	}
	for len(p.helpers) < k {
		h := &helper{exited: make(chan struct{})}
		h.cmd = command(p.m.Name(), len(p.helpers)+1)
		h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
		if h.cmd.SysProcAttr == nil {
			// A helper blocked in a Send to a dead coordinator's queue
			// would wait forever.
			h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}
		if err := h.cmd.Start(); err != nil {
			return err
		}
		go func() {
			h.cmd.Wait()
			close(h.exited)
		}()
		p.helpers = append(p.helpers, h)
	}
	return nil
}

// helpersOf is how many helper processes take part in j.
func helpersOf(j Job) int {
	switch j.Mode {
	case QueueProducers:
		return j.Producers - 1
	case LogStream:
		return j.Readers - 1
	case Contended, RawContended:
		return max(j.Producers-2, 0)
	}
	return 0
}

// awaitHelpers waits until the helpers the command needs stored its number
// in w (hready or hdone).
func (p *Peer) awaitHelpers(w *[maxHelpers]padWord) error {
	for i := 0; i < helpersOf(p.job); i++ {
		h := p.helpers[i]
		if err := awaitProc(&w[i].v, p.c, h.exited, fmt.Sprintf("helper process %d", i+1), &h.out); err != nil {
			return err
		}
	}
	return nil
}

// ServeHelper is helper process index (from 1): it opens the round-trip
// segment name and sends its share of the messages of every QueueProducers
// command that counts it in, reads every LogStream run that counts it in,
// and increments the counter of every Contended or RawContended run that
// counts it in, until told to exit; it fails when orphaned.
func ServeHelper(name string, index int) error {
	if index < 1 || index > maxHelpers {
		return fmt.Errorf("bench: helper %d (from 1 to %d)", index, maxHelpers)
	}
	m, err := shm.OpenManaged(name)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := shm.View[shared](m.Data())
	if err != nil {
		return err
	}
	prod, err := producer(m, qMulti)
	if err != nil {
		return err
	}
	defer prod.Close()
	stream, err := m.Log(lStream)
	if err != nil {
		return err
	}
	buf := make([]byte, smallMax)
	parent := os.Getppid()
	var last uint32
	for {
		c := atomic.LoadUint32(&s.cmd)
		if c == last {
			futex.Wait(&s.cmd, c, 100*time.Millisecond)
			if os.Getppid() != parent {
				return errors.New("orphaned")
			}
			continue
		}
		j := s.job()
		if atomic.LoadUint32(&s.cmd) != c {
			continue // a new command came while this one was read
		}
		last = c
		if j.Mode == exit {
			return nil
		}
		if index > helpersOf(j) {
			continue
		}
		shm.SetSpin(j.Spin)
		var rd *shm.LogReader
		if j.Mode == LogStream {
			if rd, err = stream.Reader(shm.LogNext); err != nil {
				return err
			}
		}
		atomic.StoreUint32(&s.qs.hready[index-1].v, c)
		futex.Wake(&s.qs.hready[index-1].v, futex.All)
		switch {
		case j.Mode == Contended || j.Mode == RawContended:
			for atomic.LoadUint32(&s.start) != c {
				if os.Getppid() != parent {
					return errors.New("orphaned")
				}
			}
			contend(s, j, uint64(index)+1)
		case rd != nil:
			readStream(s, index, rd, uint64(j.N), j.Size, buf)
			rd.Close()
		default:
			produce(s, c, prod, index, j, buf)
		}
		atomic.StoreUint32(&s.qs.hdone[index-1].v, c)
		futex.Wake(&s.qs.hdone[index-1].v, futex.All)
	}
}
