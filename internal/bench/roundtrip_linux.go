package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/go-shm/shm"
	"github.com/go-shm/shm/internal/futex"
)

// shared is the round-trip segment's data: a control block and, on cache
// lines of their own, the words each kind of round trip uses.
type shared struct {
	cmd   uint32 // command number; the peer sleeps on it between commands
	mode  uint32
	n     uint32
	spin  int32  // the SetSpin of both sides for the command
	size  uint32 // Job.Size
	batch uint32 // Job.Batch
	procs uint32 // Job.Producers
	reads uint32 // Job.Readers
	_     [32]byte
	ready uint32 // the peer is running command ready
	_     [60]byte
	done  uint32 // the peer finished command done
	_     [60]byte
	start uint32 // for Contended: both start when it equals cmd
	_     [60]byte

	ping, pong padWord
	auto       [2]padAuto
	manual     [2]padManual
	busyAuto   [2]padBusyAuto
	busyManual [2]padBusyManual
	mu         shm.Mutex
	turn       uint32 // whose turn it is to take mu in a hand-off
	_          [52]byte
	counter    uint64 // Contended and RawContended: incremented under the lock
	holder     uint64 // the side that incremented counter last (under the lock)
	handovers  uint64 // how many times the lock went to another side (under the lock)
	_          [40]byte
	rawMu      uint32 // RawContended's lock: 0 free, 1 held, 2 held with sleepers
	_          [60]byte

	qs queueShared // the queue modes' words (queue_linux.go)
	ls logShared   // the log modes' (log_linux.go)
}

type padWord struct {
	v uint32
	_ [60]byte
}
type padAuto struct {
	e shm.AutoEvent
	_ [56]byte
}
type padManual struct {
	e shm.ManualEvent
	_ [56]byte
}
type padBusyAuto struct {
	e shm.BusyAutoEvent
	_ [56]byte
}
type padBusyManual struct {
	e shm.BusyManualEvent
	_ [56]byte
}

// A Mode is a kind of round trip.
type Mode int

const (
	exit            Mode = iota // the peer exits
	RawSpin                     // a raw spin ping-pong on a shared word
	RawFutex                    // a raw futex wait/wake ping-pong
	Pipe                        // a byte each way through a pipe pair
	UnixSocket                  // a byte each way through a Unix socket pair
	AutoEvent                   // a pair of AutoEvents
	ManualEvent                 // a pair of ManualEvents, each reset by its waiter
	BusyAutoEvent               // a pair of BusyAutoEvents
	BusyManualEvent             // a pair of BusyManualEvents, each reset by its waiter
	EventFD                     // a pair of eventfd (auto) events
	MutexHandoff                // a mutex handed back and forth in strict alternation
	Contended                   // Job.Producers processes (2 if 0) increment a counter under one Mutex
	RawContended                // the same under a raw futex compare-and-swap mutex (rawLock)
	RawEventFD                  // a raw eventfd ping-pong: a blocking read each way, no poll, no spin

	// The queue modes (queue_linux.go).
	RawRing         // a stream of 64-byte messages through a minimal ring, this process to the peer
	QueueStream     // a stream of messages through a Queue, this process to the peer
	QueueCopy       // a stream of messages through a Queue, sent with Send, received with Copy
	QueuePingPong   // a message each way through a pair of Queues, read back with Copy
	UnixSocketSized // a message of Job.Size bytes each way through a Unix socket pair
	QueueProducers  // Job.Producers processes send to one Queue, this process receives

	// The log modes (log_linux.go).
	LogStream   // this process appends to a Log that Job.Readers processes read
	LogPingPong // a message each way through a pair of Logs, read with Copy
)

// The eventfd events of the round-trip segment.
const (
	efdPing = 0
	efdPong = 1
)

// The peer's ends of the pipes and the socket, and the raw eventfds, as
// Start passes them.
const (
	peerPipeR = 3
	peerPipeW = 4
	peerSock  = 5
	peerEfdR  = 6 // the coordinator writes, the peer reads
	peerEfdW  = 7 // the peer writes, the coordinator reads
)

// timeout is how long the coordinator waits for the peer to start or
// finish a command before it gives up.
const timeout = 2 * time.Minute

// Peer is the coordinator's side of a round-trip peer process.
type Peer struct {
	m      *shm.Managed
	s      *shared
	efd    [2]shm.Event
	pipeW  int // coordinator -> peer
	pipeR  int // peer -> coordinator
	sock   int
	efdW   int // RawEventFD: coordinator -> peer (blocking eventfds)
	efdR   int // peer -> coordinator
	cmd    *exec.Cmd
	out    strings.Builder
	exited chan struct{}

	// The command Prepare handed the peer.
	c   uint32
	job Job

	qe      *coordQueues // this process's ends of the queues
	le      *coordLogs   // and of the logs
	helpers []*helper    // producer processes started by StartHelpers
	t0, t1  int64        // Drive's first and last instants (monotonic(), ns)
	cpu     int64        // Drive's CPU time (its thread's, ns)
}

// A Job is one command: N round trips (or messages) of Mode, both sides
// with SetSpin(Spin) (-1: the default). The queue modes also read Size
// (bytes per message), Batch (QueueStream: messages the consumer releases
// together; 0 or 1: each) and Producers (QueueProducers: producer
// processes, the peer and helpers started by StartHelpers); the log modes
// Size and Readers (LogStream: reader processes, the peer and helpers).
type Job struct {
	Mode      Mode
	Spin, N   int
	Size      int
	Batch     int
	Producers int
	Readers   int
}

// Start creates the round-trip segment under name (empty: a name of its
// own) and starts the peer process that command(segment name) makes, which
// must call Serve with that name. Close ends it.
func Start(name string, command func(segment string) *exec.Cmd) (*Peer, error) {
	conf := shm.Config{Name: name, Size: int(unsafe.Sizeof(shared{}))}
	conf.AddEvent(shm.EventFDAuto) // efdPing
	conf.AddEvent(shm.EventFDAuto) // efdPong
	addQueues(&conf)
	addLogs(&conf)
	m, err := conf.Create()
	if err != nil {
		return nil, err
	}
	p := &Peer{m: m, exited: make(chan struct{})}
	var fds []int
	fail := func(err error) (*Peer, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		m.Close()
		return nil, err
	}
	if p.s, err = shm.View[shared](m.Data()); err != nil {
		return fail(err)
	}
	for i := range p.efd {
		if p.efd[i], err = m.Event(i); err != nil {
			return fail(err)
		}
	}
	if p.qe, err = openCoordQueues(m); err != nil {
		return fail(err)
	}
	if p.le, err = openCoordLogs(m); err != nil {
		p.qe.close()
		return fail(err)
	}
	var toPeer, fromPeer [2]int
	if err := unix.Pipe2(toPeer[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	fds = append(fds, toPeer[:]...)
	if err := unix.Pipe2(fromPeer[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	fds = append(fds, fromPeer[:]...)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	fds = append(fds, sp[:]...)
	// One eventfd each way, blocking (no EFD_NONBLOCK): the raw baseline
	// reads them as a program written for eventfd alone would.
	var efds, peerEfds [2]int // the same eventfds, one descriptor for each side
	for i := range efds {
		if efds[i], err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
			return fail(err)
		}
		fds = append(fds, efds[i])
		if peerEfds[i], err = unix.Dup(efds[i]); err != nil {
			return fail(err)
		}
		fds = append(fds, peerEfds[i])
	}
	p.pipeW, p.pipeR, p.sock = toPeer[1], fromPeer[0], sp[0]
	p.efdW, p.efdR = efds[0], efds[1]
	theirs := []*os.File{ // fds 3, 4, 5, 6, 7 in the peer
		os.NewFile(uintptr(toPeer[0]), "ping"),
		os.NewFile(uintptr(fromPeer[1]), "pong"),
		os.NewFile(uintptr(sp[1]), "sock"),
		os.NewFile(uintptr(peerEfds[0]), "efd-ping"),
		os.NewFile(uintptr(peerEfds[1]), "efd-pong"),
	}
	p.cmd = command(m.Name())
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.ExtraFiles = theirs
	err = p.cmd.Start()
	for _, f := range theirs {
		f.Close()
	}
	if err != nil {
		unix.Close(p.pipeW)
		unix.Close(p.pipeR)
		unix.Close(p.sock)
		unix.Close(p.efdW)
		unix.Close(p.efdR)
		p.qe.close()
		p.le.close()
		m.Close()
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Close tells the peer and the helpers to exit (kills them if they do
// not), and removes the segment.
func (p *Peer) Close() {
	p.command(Job{Mode: exit})
	// One deadline for all of them (a time.After channel delivers once).
	stop := time.NewTimer(5 * time.Second)
	defer stop.Stop()
	expired := false
	end := func(cmd *exec.Cmd, exited <-chan struct{}) {
		if !expired {
			select {
			case <-exited:
				return
			case <-stop.C:
				expired = true
			}
		}
		cmd.Process.Kill()
		<-exited
	}
	end(p.cmd, p.exited)
	for _, h := range p.helpers {
		end(h.cmd, h.exited)
	}
	unix.Close(p.pipeW)
	unix.Close(p.pipeR)
	unix.Close(p.sock)
	unix.Close(p.efdW)
	unix.Close(p.efdR)
	p.qe.close()
	p.le.close()
	p.m.Close()
}

// Counter returns the counter Contended and RawContended increment.
func (p *Peer) Counter() uint64 { return atomic.LoadUint64(&p.s.counter) }

// Handovers returns how many times, since the last Prepare, the lock of
// Contended or RawContended went from one process to another between two
// increments.
func (p *Peer) Handovers() uint64 { return atomic.LoadUint64(&p.s.handovers) }

// increment is one protected increment of Contended by side me.
func increment(s *shared, me uint64) {
	s.mu.Lock()
	s.counter++
	if s.holder != me {
		s.holder = me
		s.handovers++
	}
	s.mu.Unlock()
}

// rawIncrement is one protected increment of RawContended by side me.
func rawIncrement(s *shared, me uint64) {
	rawLock(&s.rawMu)
	s.counter++
	if s.holder != me {
		s.holder = me
		s.handovers++
	}
	rawUnlock(&s.rawMu)
}

// contend does side me's share (j.N increments) of Contended or
// RawContended: the peer is side 1, helper i side i+1.
func contend(s *shared, j Job, me uint64) {
	if j.Mode == RawContended {
		for i := 0; i < j.N; i++ {
			rawIncrement(s, me)
		}
		return
	}
	for i := 0; i < j.N; i++ {
		increment(s, me)
	}
}

// command hands the peer a command and returns its number.
func (p *Peer) command(j Job) uint32 {
	s := p.s
	atomic.StoreUint32(&s.mode, uint32(j.Mode))
	atomic.StoreUint32(&s.n, uint32(j.N))
	atomic.StoreInt32(&s.spin, int32(j.Spin))
	atomic.StoreUint32(&s.size, uint32(j.Size))
	atomic.StoreUint32(&s.batch, uint32(j.Batch))
	atomic.StoreUint32(&s.procs, uint32(j.Producers))
	atomic.StoreUint32(&s.reads, uint32(j.Readers))
	c := atomic.AddUint32(&s.cmd, 1)
	futex.Wake(&s.cmd, futex.All)
	return c
}

// await waits until *w == c, or fails if the peer is gone or does not
// answer.
func (p *Peer) await(w *uint32, c uint32) error {
	return awaitProc(w, c, p.exited, "the peer process", &p.out)
}

// awaitProc waits until *w == c, or fails if the process (who) exited
// (closing exited; out is what it printed) or does not answer.
func awaitProc(w *uint32, c uint32, exited chan struct{}, who string, out *strings.Builder) error {
	deadline := time.Now().Add(timeout)
	for {
		v := atomic.LoadUint32(w)
		if v == c {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited: %s", who, out.String())
		default:
		}
		if time.Now().After(deadline) {
			return errors.New(who + " does not answer")
		}
		futex.Wait(w, v, 100*time.Millisecond)
	}
}

// Prepare resets the words of a round trip and starts the peer on n round
// trips of mode, both processes with SetSpin(spin) (-1: the default); the
// first round trip may begin when it returns.
func (p *Peer) Prepare(mode Mode, spin, n int) error {
	return p.PrepareJob(Job{Mode: mode, Spin: spin, N: n})
}

// PrepareJob is Prepare for a Job.
func (p *Peer) PrepareJob(j Job) error {
	s := p.s
	if err := p.checkJob(&j); err != nil {
		return err
	}
	atomic.StoreUint32(&s.ping.v, 0)
	atomic.StoreUint32(&s.pong.v, 0)
	s.turn = 0
	s.holder, s.handovers = 0, 0
	atomic.StoreUint32(&s.rawMu, 0)
	s.qs.reset()
	s.ls.reset()
	shm.SetSpin(j.Spin)
	p.c, p.job = p.command(j), j
	if err := p.await(&s.ready, p.c); err != nil {
		return err
	}
	return p.awaitHelpers(&s.qs.hready)
}

// Drive does this side of the round trips Prepare started. Unless every is
// 0, it times each run of every round trips and appends the times to ts.
func (p *Peer) Drive(every int, ts []time.Duration) []time.Duration {
	trip, end := p.trip(p.job)
	n := uint32(p.job.N)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := threadCPU()
	p.t0 = monotonic()
	switch p.job.Mode {
	case Contended, RawContended:
		atomic.StoreUint32(&p.s.start, p.c)
	case QueueProducers:
		atomic.StoreUint32(&p.s.start, p.c)
		futex.Wake(&p.s.start, futex.All)
	}
	if every <= 0 {
		for i := uint32(1); i <= n; i++ {
			trip(i)
		}
	} else {
		t, k := time.Now(), every
		for i := uint32(1); i <= n; i++ {
			trip(i)
			if k--; k == 0 {
				now := time.Now()
				ts = append(ts, now.Sub(t))
				t, k = now, every
			}
		}
	}
	if end != nil {
		end()
	}
	p.t1 = monotonic()
	p.cpu = threadCPU() - c0
	return ts
}

// DriveCPU returns the CPU time the last Drive took on its thread: for
// LogStream, the writer's cost, whatever share of the CPUs the readers
// left it.
func (p *Peer) DriveCPU() time.Duration { return time.Duration(p.cpu) }

// threadCPU returns the calling thread's CPU time (user and system), ns.
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// Finish waits until the peer finished the command Prepare started.
func (p *Peer) Finish() error {
	if err := p.await(&p.s.done, p.c); err != nil {
		return err
	}
	return p.awaitHelpers(&p.s.qs.hdone)
}

// Run is Prepare, Drive and Finish; it returns Drive's times and how long
// the whole took, from the first round trip to the peer's finish.
func (p *Peer) Run(mode Mode, spin, n, every int, ts []time.Duration) ([]time.Duration, time.Duration, error) {
	return p.RunJob(Job{Mode: mode, Spin: spin, N: n}, every, ts)
}

// RunJob is Run for a Job. For the streams (RawRing, QueueStream,
// QueueCopy), the time is from the first message sent to the last one
// received by the peer; for QueueProducers, from the producers' start to
// the last message received here; for LogStream, from the first Append to
// the last (the writer's time).
func (p *Peer) RunJob(j Job, every int, ts []time.Duration) ([]time.Duration, time.Duration, error) {
	if err := p.PrepareJob(j); err != nil {
		return ts, 0, err
	}
	begin := time.Now()
	ts = p.Drive(every, ts)
	if err := p.Finish(); err != nil {
		return ts, 0, err
	}
	el := time.Since(begin)
	switch j.Mode {
	case RawRing, QueueStream, QueueCopy:
		el = time.Duration(atomic.LoadInt64(&p.s.qs.end.v) - p.t0)
	case QueueProducers, LogStream:
		el = time.Duration(p.t1 - p.t0)
	}
	return ts, el, nil
}

// trip returns the coordinator's side of one round trip in mode; i numbers
// the round trips of a command from 1. It also returns what ends the
// command (nil if nothing).
func (p *Peer) trip(j Job) (trip func(i uint32), end func()) {
	s := p.s
	switch j.Mode {
	case RawSpin:
		return func(i uint32) {
			atomic.StoreUint32(&s.ping.v, 2*i-1)
			spinRecv(&s.ping.v, 2*i)
		}, nil
	case RawFutex:
		return func(i uint32) {
			rawSend(&s.ping.v, i)
			rawRecv(&s.pong.v, i)
		}, nil
	case Pipe:
		return func(uint32) {
			oneByte(p.pipeW, true)
			oneByte(p.pipeR, false)
		}, nil
	case UnixSocket:
		return func(uint32) {
			oneByte(p.sock, true)
			oneByte(p.sock, false)
		}, nil
	case AutoEvent:
		return func(uint32) {
			s.auto[0].e.Set()
			s.auto[1].e.Wait()
		}, nil
	case ManualEvent:
		return func(uint32) {
			s.manual[0].e.Set()
			s.manual[1].e.Wait()
			s.manual[1].e.Reset()
		}, nil
	case BusyAutoEvent:
		return func(uint32) {
			s.busyAuto[0].e.Set()
			s.busyAuto[1].e.Wait()
		}, nil
	case BusyManualEvent:
		return func(uint32) {
			s.busyManual[0].e.Set()
			s.busyManual[1].e.Wait()
			s.busyManual[1].e.Reset()
		}, nil
	case EventFD:
		return func(uint32) {
			p.efd[efdPing].Set()
			p.efd[efdPong].Wait()
		}, nil
	case MutexHandoff:
		// One round trip: wait for our turn (the peer gives it back), take it.
		return func(uint32) { handoff(s, 0, 1) }, func() {
			// The last round trip ends when the turn is back.
			for {
				s.mu.Lock()
				back := s.turn == 0
				s.mu.Unlock()
				if back {
					return
				}
			}
		}
	case Contended:
		return func(uint32) { increment(s, 0) }, nil
	case RawContended:
		return func(uint32) { rawIncrement(s, 0) }, nil
	case RawEventFD:
		return func(uint32) {
			efdWrite(p.efdW)
			efdRead(p.efdR)
		}, nil
	}
	if trip, end := p.queueTrip(j); trip != nil {
		return trip, end
	}
	if trip, end := p.logTrip(j); trip != nil {
		return trip, end
	}
	panic("bench: unknown mode " + strconv.Itoa(int(j.Mode)))
}

// respond is the peer's side of the command j.
func respond(s *shared, efd [2]shm.Event, pq *peerQueues, pl *peerLogs, c uint32, j Job) {
	n := j.N
	switch j.Mode {
	case RawSpin:
		for i := uint32(1); i <= uint32(n); i++ {
			spinRecv(&s.ping.v, 2*i-1)
			atomic.StoreUint32(&s.ping.v, 2*i)
		}
	case RawFutex:
		for i := uint32(1); i <= uint32(n); i++ {
			rawRecv(&s.ping.v, i)
			rawSend(&s.pong.v, i)
		}
	case Pipe:
		for i := 0; i < n; i++ {
			oneByte(peerPipeR, false)
			oneByte(peerPipeW, true)
		}
	case UnixSocket:
		for i := 0; i < n; i++ {
			oneByte(peerSock, false)
			oneByte(peerSock, true)
		}
	case AutoEvent:
		for i := 0; i < n; i++ {
			s.auto[0].e.Wait()
			s.auto[1].e.Set()
		}
	case ManualEvent:
		for i := 0; i < n; i++ {
			s.manual[0].e.Wait()
			s.manual[0].e.Reset()
			s.manual[1].e.Set()
		}
	case BusyAutoEvent:
		for i := 0; i < n; i++ {
			s.busyAuto[0].e.Wait()
			s.busyAuto[1].e.Set()
		}
	case BusyManualEvent:
		for i := 0; i < n; i++ {
			s.busyManual[0].e.Wait()
			s.busyManual[0].e.Reset()
			s.busyManual[1].e.Set()
		}
	case EventFD:
		for i := 0; i < n; i++ {
			efd[efdPing].Wait()
			efd[efdPong].Set()
		}
	case MutexHandoff:
		handoff(s, 1, n)
	case Contended, RawContended:
		contend(s, j, 1)
	case RawEventFD:
		for i := 0; i < n; i++ {
			efdRead(peerEfdR)
			efdWrite(peerEfdW)
		}
	case LogStream, LogPingPong:
		pl.respond(s, j)
	default:
		pq.respond(s, c, j)
	}
}

// handoff takes the mutex n times when it is this side's turn (me), each
// time giving the turn to the other side. On a single CPU a side that finds
// it is not its turn yields the CPU, since the other side cannot take its
// turn until it runs.
func handoff(s *shared, me uint32, n int) {
	for k := 0; k < n; {
		s.mu.Lock()
		mine := s.turn == me
		if mine {
			s.turn = 1 - me
			k++
		}
		s.mu.Unlock()
		if !mine && singleCPU {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
}

// job reads the command's Job.
func (s *shared) job() Job {
	return Job{
		Mode:      Mode(atomic.LoadUint32(&s.mode)),
		Spin:      int(atomic.LoadInt32(&s.spin)),
		N:         int(atomic.LoadUint32(&s.n)),
		Size:      int(atomic.LoadUint32(&s.size)),
		Batch:     int(atomic.LoadUint32(&s.batch)),
		Producers: int(atomic.LoadUint32(&s.procs)),
		Readers:   int(atomic.LoadUint32(&s.reads)),
	}
}

// singleCPU is whether this process may run on one CPU only (Go reads the
// affinity mask, which taskset narrows, at start).
var singleCPU = runtime.NumCPU() == 1

// Serve is the peer process: it opens the round-trip segment name and
// answers the coordinator's commands until told to exit, or fails when
// orphaned. The pipe and the socket ends are its file descriptors 3
// (read), 4 (write) and 5.
func Serve(name string) error {
	m, err := shm.OpenManaged(name)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := shm.View[shared](m.Data())
	if err != nil {
		return err
	}
	var efd [2]shm.Event
	for i := range efd {
		if efd[i], err = m.Event(i); err != nil {
			return err
		}
	}
	pq, err := openPeerQueues(m)
	if err != nil {
		return err
	}
	defer pq.close()
	pl, err := openPeerLogs(m)
	if err != nil {
		return err
	}
	defer pl.close()
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
		last = c
		j := s.job()
		if j.Mode == exit {
			return nil
		}
		shm.SetSpin(j.Spin)
		pl.prepare(j)
		atomic.StoreUint32(&s.ready, c)
		futex.Wake(&s.ready, futex.All)
		if j.Mode == Contended || j.Mode == RawContended {
			for atomic.LoadUint32(&s.start) != c {
			}
		}
		respond(s, efd, pq, pl, c, j)
		atomic.StoreUint32(&s.done, c)
		futex.Wake(&s.done, futex.All)
	}
}
