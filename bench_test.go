//go:build linux

package shm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/go-shm/shm/internal/futex"
)

// Benchmarks, each against baselines measured in the same run.
//
// The machines these run on are shared and noisy, so a benchmark's absolute
// ns/op says little; what it reports besides is the ratio of its operation
// to each baseline ("x-sync.Mutex", "x-futex", ...). A ratio comes from a
// second phase after the timed loop: the operation and its baselines run
// alternately in chunks, and the ratio is that of their median chunk times,
// so that a burst of load from elsewhere hits both sides alike.
//
//	go test -run '^$' -bench . -benchtime 100000x
//
// Round trips go between this process and a peer process (the test binary
// re-executed as the "bench-peer" child), through each event kind, a mutex
// hand-off, and the baselines: a pipe pair, a Unix socket pair, a raw futex
// wait/wake ping-pong (the kernel's floor) and a raw spin ping-pong on a
// shared word (the hardware's floor).

// ratioRounds is how many chunks each side of a comparison runs.
const ratioRounds = 15

// A sampler runs n iterations and returns the times of its samples, each
// of a fixed number of iterations (the same on both sides of a comparison).
type sampler func(n int) []time.Duration

type namedRun struct {
	name string
	run  sampler
}

// compare runs subject and each baseline alternately, ratioRounds chunks of
// about n/ratioRounds iterations each, and reports the ratio of subject's
// median sample to each baseline's as the metric "x-NAME". Medians, and
// alternation, keep a burst of load from elsewhere from tipping the ratio.
func compare(b *testing.B, n int, subject sampler, baselines ...namedRun) []time.Duration {
	b.Helper()
	if n < 1000 {
		return nil // the framework's warm-up runs: too short to mean anything
	}
	chunk := max(n/ratioRounds, 200)
	var st []time.Duration
	bt := make([][]time.Duration, len(baselines))
	for r := 0; r < ratioRounds; r++ {
		st = append(st, subject(chunk)...)
		for i, base := range baselines {
			bt[i] = append(bt[i], base.run(chunk)...)
		}
	}
	for i, base := range baselines {
		b.ReportMetric(float64(median(st))/float64(median(bt[i])), "x-"+base.name)
	}
	return st
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// opsSample is how many operations one sample of an uncontended loop times.
const opsSample = 1000

// timed makes a sampler of a loop of n operations.
func timed(f func(n int)) sampler {
	return func(n int) []time.Duration {
		ts := make([]time.Duration, 0, n/opsSample+1)
		for ; n > 0; n -= opsSample {
			t := time.Now()
			f(min(n, opsSample))
			ts = append(ts, time.Since(t))
		}
		return ts
	}
}

// Uncontended operations, on primitives in a real segment.

type uncontended struct {
	mu   Mutex
	_    [56]byte
	rw   RWMutex
	_    [40]byte
	ae   AutoEvent
	_    [56]byte
	me   ManualEvent
	_    [56]byte
	bae  BusyAutoEvent
	_    [56]byte
	word uint64
}

func newUncontended(b *testing.B) *uncontended {
	seg, err := Create(testName(b), 4096)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { seg.Close() })
	u, err := View[uncontended](seg.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// The baselines of the uncontended operations, in process memory as Go
// programs use them.
var (
	baseMu   sync.Mutex
	baseRW   sync.RWMutex
	baseWord uint64
)

func syncMutexLoop(n int) {
	for i := 0; i < n; i++ {
		baseMu.Lock()
		baseMu.Unlock()
	}
}

func syncRLockLoop(n int) {
	for i := 0; i < n; i++ {
		baseRW.RLock()
		baseRW.RUnlock()
	}
}

func syncWLockLoop(n int) {
	for i := 0; i < n; i++ {
		baseRW.Lock()
		baseRW.Unlock()
	}
}

// casLoop does one successful compare-and-swap per iteration.
func casLoop(n int) {
	v := atomic.LoadUint64(&baseWord)
	for i := 0; i < n; i++ {
		atomic.CompareAndSwapUint64(&baseWord, v, v+1)
		v++
	}
}

var (
	vsSyncMutex = namedRun{"sync.Mutex", timed(syncMutexLoop)}
	vsRLock     = namedRun{"sync.RWMutex.RLock", timed(syncRLockLoop)}
	vsWLock     = namedRun{"sync.RWMutex.Lock", timed(syncWLockLoop)}
	vsCAS       = namedRun{"CAS", timed(casLoop)}
)

// benchLoop times loop(b.N) and reports its ratio to the baselines.
func benchLoop(b *testing.B, loop func(n int), baselines ...namedRun) {
	b.ReportAllocs()
	b.ResetTimer()
	loop(b.N)
	b.StopTimer()
	compare(b, b.N, timed(loop), baselines...)
}

func BenchmarkBaselineSyncMutex(b *testing.B)    { benchLoop(b, syncMutexLoop) }
func BenchmarkBaselineSyncRWMutexR(b *testing.B) { benchLoop(b, syncRLockLoop) }
func BenchmarkBaselineSyncRWMutexW(b *testing.B) { benchLoop(b, syncWLockLoop) }
func BenchmarkBaselineCAS(b *testing.B)          { benchLoop(b, casLoop) }

func BenchmarkMutex(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			u.mu.Lock()
			u.mu.Unlock()
		}
	}, vsSyncMutex, vsCAS)
}

func BenchmarkMutexTryLock(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			if u.mu.TryLock() {
				u.mu.Unlock()
			}
		}
	}, vsSyncMutex, vsCAS)
}

func BenchmarkRWMutexRLock(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			u.rw.RLock()
			u.rw.RUnlock()
		}
	}, vsRLock, vsCAS)
}

func BenchmarkRWMutexLock(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			u.rw.Lock()
			u.rw.Unlock()
		}
	}, vsWLock, vsCAS)
}

// The event benchmarks set a clear event with nobody waiting, then clear it
// again (Reset, or a Wait that returns at once), so every Set does work.

func BenchmarkAutoEventSetReset(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			u.ae.Set()
			u.ae.Reset()
		}
	}, vsCAS)
}

func BenchmarkAutoEventSetWait(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			u.ae.Set()
			u.ae.Wait()
		}
	}, vsCAS)
}

func BenchmarkManualEventSetReset(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			u.me.Set()
			u.me.Reset()
		}
	}, vsCAS)
}

func BenchmarkBusyAutoEventSetWait(b *testing.B) {
	u := newUncontended(b)
	benchLoop(b, func(n int) {
		for i := 0; i < n; i++ {
			u.bae.Set()
			u.bae.Wait()
		}
	}, vsCAS)
}

// Between processes.

// rtShared is the round-trip segment's data: a control block and, on cache
// lines of their own, the words each kind of round trip uses.
type rtShared struct {
	cmd   uint32 // command number; the peer sleeps on it between commands
	mode  uint32
	n     uint32
	spin  int32 // the peer's SetSpin for the command
	_     [48]byte
	ready uint32 // the peer is running command ready
	_     [60]byte
	done  uint32 // the peer finished command done
	_     [60]byte
	start uint32 // for rtIncr: both start when it equals cmd
	_     [60]byte

	ping, pong padWord
	auto       [2]padAuto
	manual     [2]padManual
	busyAuto   [2]padBusyAuto
	busyManual [2]padBusyManual
	mu         Mutex
	turn       uint32
	_          [52]byte
	counter    uint64
	_          [56]byte
}

type padWord struct {
	v uint32
	_ [60]byte
}
type padAuto struct {
	e AutoEvent
	_ [56]byte
}
type padManual struct {
	e ManualEvent
	_ [56]byte
}
type padBusyAuto struct {
	e BusyAutoEvent
	_ [56]byte
}
type padBusyManual struct {
	e BusyManualEvent
	_ [56]byte
}

// Round-trip modes.
const (
	rtExit = iota
	rtSpin
	rtFutex
	rtPipe
	rtUnix
	rtAuto
	rtManual
	rtBusyAuto
	rtBusyManual
	rtEventFD
	rtMutex // a mutex handed back and forth in strict alternation
	rtIncr  // both processes increment a counter under one mutex
)

// The eventfd events of the round-trip segment.
const (
	efdPing = 0
	efdPong = 1
)

// peer is the parent's side of a round-trip peer process.
type peer struct {
	m      *Managed
	s      *rtShared
	efd    [2]Event
	pipeW  int // parent -> peer
	pipeR  int // peer -> parent
	sock   int
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

// Round-trip raw baselines, written directly against the system calls.

// futex(2) operations, shared between processes (no FUTEX_PRIVATE_FLAG).
const (
	futexWaitOp = 0
	futexWakeOp = 1
)

func rawFutexWait(addr *uint32, val uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), 0, 0, 0)
}

func rawFutexWake(addr *uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, 1, 0, 0, 0)
}

// rawSend publishes i on w and wakes its sleeper; rawRecv waits for i on w:
// the futex ping-pong with neither side spinning.
func rawSend(w *uint32, i uint32) {
	atomic.StoreUint32(w, i)
	rawFutexWake(w)
}

func rawRecv(w *uint32, i uint32) {
	for {
		v := atomic.LoadUint32(w)
		if v == i {
			return
		}
		rawFutexWait(w, v)
	}
}

// spinRecv polls w until it holds i. The raw spin ping-pong bounces one
// word between the processes (the sender stores odd numbers, the answer
// even ones): one cache line, the fastest exchange there is. A short pause
// between polls keeps the poller from hammering the line the other side is
// about to write.
func spinRecv(w *uint32, i uint32) {
	for atomic.LoadUint32(w) != i {
		benchPause()
	}
}

//go:noinline
func benchPause() {
	for i := 0; i < 10; i++ {
	}
}

func oneByte(fd int, write bool) {
	var b [1]byte
	for {
		var n int
		var err error
		if write {
			n, err = unix.Write(fd, b[:])
		} else {
			n, err = unix.Read(fd, b[:])
		}
		if err == unix.EINTR {
			continue
		}
		if n != 1 {
			panic(fmt.Sprintf("pipe/socket round trip: n=%d err=%v", n, err))
		}
		return
	}
}

// handoff takes the mutex n times when it is this side's turn (me), each
// time giving the turn to the other side.
func handoff(s *rtShared, me uint32, n int) {
	for k := 0; k < n; {
		s.mu.Lock()
		if s.turn == me {
			s.turn = 1 - me
			k++
		}
		s.mu.Unlock()
	}
}

// trip returns the parent's side of one round trip in mode; i numbers the
// round trips of a command from 1. It also returns what ends the command
// (nil if nothing).
func (p *peer) trip(mode int) (trip func(i uint32), end func()) {
	s := p.s
	switch mode {
	case rtSpin:
		return func(i uint32) {
			atomic.StoreUint32(&s.ping.v, 2*i-1)
			spinRecv(&s.ping.v, 2*i)
		}, nil
	case rtFutex:
		return func(i uint32) {
			rawSend(&s.ping.v, i)
			rawRecv(&s.pong.v, i)
		}, nil
	case rtPipe:
		return func(uint32) {
			oneByte(p.pipeW, true)
			oneByte(p.pipeR, false)
		}, nil
	case rtUnix:
		return func(uint32) {
			oneByte(p.sock, true)
			oneByte(p.sock, false)
		}, nil
	case rtAuto:
		return func(uint32) {
			s.auto[0].e.Set()
			s.auto[1].e.Wait()
		}, nil
	case rtManual:
		return func(uint32) {
			s.manual[0].e.Set()
			s.manual[1].e.Wait()
			s.manual[1].e.Reset()
		}, nil
	case rtBusyAuto:
		return func(uint32) {
			s.busyAuto[0].e.Set()
			s.busyAuto[1].e.Wait()
		}, nil
	case rtBusyManual:
		return func(uint32) {
			s.busyManual[0].e.Set()
			s.busyManual[1].e.Wait()
			s.busyManual[1].e.Reset()
		}, nil
	case rtEventFD:
		return func(uint32) {
			p.efd[efdPing].Set()
			p.efd[efdPong].Wait()
		}, nil
	case rtMutex:
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
	case rtIncr:
		return func(uint32) {
			s.mu.Lock()
			s.counter++
			s.mu.Unlock()
		}, nil
	}
	panic("unknown mode " + fmt.Sprint(mode))
}

// drive is the parent's side of n round trips in mode.
func (p *peer) drive(mode int, n int) {
	trip, end := p.trip(mode)
	for i := uint32(1); i <= uint32(n); i++ {
		trip(i)
	}
	if end != nil {
		end()
	}
}

// sampleBatch is how many round trips one sample times: enough to make the
// clock's cost small against a spin round trip, few enough that a process
// switch spoils few samples.
const sampleBatch = 8

// sample is drive, timing each sampleBatch round trips; it appends the
// times to ts.
func (p *peer) sample(mode int, n int, ts []time.Duration) []time.Duration {
	trip, end := p.trip(mode)
	t := time.Now()
	for i := uint32(1); i <= uint32(n); i++ {
		trip(i)
		if i%sampleBatch == 0 {
			now := time.Now()
			ts = append(ts, now.Sub(t))
			t = now
		}
	}
	if end != nil {
		end()
	}
	return ts
}

// respond is the peer's side of n round trips in mode.
func respond(s *rtShared, efd [2]Event, mode int, n int) {
	switch mode {
	case rtSpin:
		for i := uint32(1); i <= uint32(n); i++ {
			spinRecv(&s.ping.v, 2*i-1)
			atomic.StoreUint32(&s.ping.v, 2*i)
		}
	case rtFutex:
		for i := uint32(1); i <= uint32(n); i++ {
			rawRecv(&s.ping.v, i)
			rawSend(&s.pong.v, i)
		}
	case rtPipe:
		for i := 0; i < n; i++ {
			oneByte(3, false)
			oneByte(4, true)
		}
	case rtUnix:
		for i := 0; i < n; i++ {
			oneByte(5, false)
			oneByte(5, true)
		}
	case rtAuto:
		for i := 0; i < n; i++ {
			s.auto[0].e.Wait()
			s.auto[1].e.Set()
		}
	case rtManual:
		for i := 0; i < n; i++ {
			s.manual[0].e.Wait()
			s.manual[0].e.Reset()
			s.manual[1].e.Set()
		}
	case rtBusyAuto:
		for i := 0; i < n; i++ {
			s.busyAuto[0].e.Wait()
			s.busyAuto[1].e.Set()
		}
	case rtBusyManual:
		for i := 0; i < n; i++ {
			s.busyManual[0].e.Wait()
			s.busyManual[0].e.Reset()
			s.busyManual[1].e.Set()
		}
	case rtEventFD:
		for i := 0; i < n; i++ {
			efd[efdPing].Wait()
			efd[efdPong].Set()
		}
	case rtMutex:
		handoff(s, 1, n)
	case rtIncr:
		for i := 0; i < n; i++ {
			s.mu.Lock()
			s.counter++
			s.mu.Unlock()
		}
	}
}

func init() {
	registerChild("bench-peer", benchPeer)
}

// benchPeer answers the parent's commands until told to exit or orphaned.
func benchPeer(args []string) error {
	m, err := OpenManaged(args[0])
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := View[rtShared](m.Data())
	if err != nil {
		return err
	}
	var efd [2]Event
	for i := range efd {
		if efd[i], err = m.Event(i); err != nil {
			return err
		}
	}
	parent := os.Getppid()
	var last uint32
	for {
		c := atomic.LoadUint32(&s.cmd)
		if c == last {
			futex.Wait(&s.cmd, c, 100*time.Millisecond)
			if os.Getppid() != parent {
				return fmt.Errorf("orphaned")
			}
			continue
		}
		last = c
		mode, n := int(atomic.LoadUint32(&s.mode)), int(atomic.LoadUint32(&s.n))
		if mode == rtExit {
			return nil
		}
		SetSpin(int(atomic.LoadInt32(&s.spin)))
		atomic.StoreUint32(&s.ready, c)
		futex.Wake(&s.ready, futex.All)
		if mode == rtIncr {
			for atomic.LoadUint32(&s.start) != c {
			}
		}
		respond(s, efd, mode, n)
		atomic.StoreUint32(&s.done, c)
		futex.Wake(&s.done, futex.All)
	}
}

// startPeer creates the round-trip segment and starts the peer process.
func startPeer(tb testing.TB) *peer {
	tb.Helper()
	conf := Config{Name: testName(tb), Size: int(unsafe.Sizeof(rtShared{}))}
	conf.AddEvent(EventFDAuto)
	conf.AddEvent(EventFDAuto)
	m, err := conf.Create()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := View[rtShared](m.Data())
	if err != nil {
		m.Close()
		tb.Fatal(err)
	}
	p := &peer{m: m, s: s, exited: make(chan struct{})}
	for i := range p.efd {
		if p.efd[i], err = m.Event(i); err != nil {
			m.Close()
			tb.Fatal(err)
		}
	}
	var pp1, pp2 [2]int // parent->peer, peer->parent
	var sp [2]int
	if err := unix.Pipe2(pp1[:], unix.O_CLOEXEC); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Pipe2(pp2[:], unix.O_CLOEXEC); err != nil {
		tb.Fatal(err)
	}
	if sp, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
		tb.Fatal(err)
	}
	p.pipeW, p.pipeR, p.sock = pp1[1], pp2[0], sp[0]
	theirs := []*os.File{os.NewFile(uintptr(pp1[0]), "ping-r"), os.NewFile(uintptr(pp2[1]), "pong-w"), os.NewFile(uintptr(sp[1]), "sock")}

	a, _ := json.Marshal([]string{m.Name()})
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), childEnv+"=bench-peer", childArgsEnv+"="+string(a))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.ExtraFiles = theirs // fds 3, 4, 5
	err = p.cmd.Start()
	for _, f := range theirs {
		f.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		p.command(rtExit, 0, 0)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		unix.Close(p.pipeW)
		unix.Close(p.pipeR)
		unix.Close(p.sock)
		m.Close()
	})
	return p
}

// command hands the peer a command and returns its number.
func (p *peer) command(mode, spin, n int) uint32 {
	s := p.s
	atomic.StoreUint32(&s.mode, uint32(mode))
	atomic.StoreUint32(&s.n, uint32(n))
	atomic.StoreInt32(&s.spin, int32(spin))
	c := atomic.AddUint32(&s.cmd, 1)
	futex.Wake(&s.cmd, futex.All)
	return c
}

// await waits until *w == c, or fails if the peer is gone.
func (p *peer) await(tb testing.TB, w *uint32, c uint32) {
	for {
		v := atomic.LoadUint32(w)
		if v == c {
			return
		}
		select {
		case <-p.exited:
			tb.Fatalf("the peer process exited:\n%s", p.out.String())
		default:
		}
		futex.Wait(w, v, 100*time.Millisecond)
	}
}

// prepare resets the words of a round trip and starts the peer on it; the
// first round trip may begin when it returns.
func (p *peer) prepare(tb testing.TB, mode, spin, n int) uint32 {
	s := p.s
	atomic.StoreUint32(&s.ping.v, 0)
	atomic.StoreUint32(&s.pong.v, 0)
	s.turn = 0
	SetSpin(spin)
	c := p.command(mode, spin, n)
	p.await(tb, &s.ready, c)
	return c
}

// run performs n round trips of mode with the given SetSpin on both sides
// and returns how long they took.
func (p *peer) run(tb testing.TB, mode, spin, n int) time.Duration {
	c := p.prepare(tb, mode, spin, n)
	t := time.Now()
	if mode == rtIncr {
		atomic.StoreUint32(&p.s.start, c)
	}
	p.drive(mode, n)
	if mode == rtIncr {
		p.await(tb, &p.s.done, c)
	}
	el := time.Since(t)
	p.await(tb, &p.s.done, c)
	return el
}

// runner is a sampler of round trips in mode.
func (p *peer) runner(tb testing.TB, name string, mode, spin int) namedRun {
	return namedRun{name, func(n int) []time.Duration {
		c := p.prepare(tb, mode, spin, n)
		ts := p.sample(mode, n, make([]time.Duration, 0, n/sampleBatch))
		p.await(tb, &p.s.done, c)
		return ts
	}}
}

// BenchmarkRoundTrip measures a round trip between two processes (ns/op)
// for each kind, and its ratio to the baselines. "spin0" runs both
// processes with SetSpin(0): waiters go straight to the kernel.
func BenchmarkRoundTrip(b *testing.B) {
	p := startPeer(b)
	defaultSpin := int(defaultSpin())
	defer SetSpin(-1)
	futexBase := p.runner(b, "futex", rtFutex, 0)
	spinBase := p.runner(b, "spin", rtSpin, 0)
	pipeBase := p.runner(b, "pipe", rtPipe, 0)
	unixBase := p.runner(b, "unix", rtUnix, 0)
	kernel := []namedRun{futexBase, spinBase, pipeBase, unixBase}
	cases := []struct {
		name      string
		mode      int
		spin      int
		baselines []namedRun
	}{
		{"raw-spin", rtSpin, 0, nil},
		{"raw-futex", rtFutex, 0, []namedRun{spinBase}},
		{"pipe", rtPipe, 0, []namedRun{futexBase, spinBase}},
		{"unix-socket", rtUnix, 0, []namedRun{futexBase, spinBase}},
		{"auto-spin0", rtAuto, 0, kernel},
		{"manual-spin0", rtManual, 0, kernel},
		{"auto", rtAuto, defaultSpin, kernel},
		{"manual", rtManual, defaultSpin, kernel},
		{"busy-auto", rtBusyAuto, defaultSpin, []namedRun{spinBase, futexBase}},
		{"busy-manual", rtBusyManual, defaultSpin, []namedRun{spinBase, futexBase}},
		{"eventfd", rtEventFD, defaultSpin, kernel},
		{"mutex-handoff", rtMutex, defaultSpin, []namedRun{spinBase, futexBase}},
		{"mutex-handoff-spin0", rtMutex, 0, []namedRun{spinBase, futexBase}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.StopTimer()
			cmd := p.prepare(b, c.mode, c.spin, b.N)
			b.StartTimer()
			p.drive(c.mode, b.N)
			b.StopTimer()
			p.await(b, &p.s.done, cmd)
			st := compare(b, b.N, p.runner(b, c.name, c.mode, c.spin).run, c.baselines...)
			if st != nil {
				b.ReportMetric(float64(median(st))/sampleBatch, "median-ns/op")
			}
		})
	}
}

// BenchmarkMutexContended has this process and the peer increment one
// counter under one Mutex, b.N times each; ns/op is per increment (of the
// 2*b.N). The baseline is two goroutines doing the same under a sync.Mutex.
func BenchmarkMutexContended(b *testing.B) {
	p := startPeer(b)
	b.ResetTimer()
	el := p.run(b, rtIncr, int(defaultSpin()), b.N)
	b.StopTimer()
	b.ReportMetric(float64(el.Nanoseconds())/float64(2*b.N), "ns/op")
	if b.N < 100 {
		return
	}
	st, bt := make([]time.Duration, 0, ratioRounds), make([]time.Duration, 0, ratioRounds)
	chunk := max(b.N/ratioRounds, 100)
	for r := 0; r < ratioRounds; r++ {
		st = append(st, p.run(b, rtIncr, int(defaultSpin()), chunk))
		bt = append(bt, syncContended(chunk))
	}
	b.ReportMetric(float64(median(st))/float64(median(bt)), "x-sync.Mutex")
}

// syncContended has two goroutines increment a counter under a sync.Mutex,
// n times each.
func syncContended(n int) time.Duration {
	var mu sync.Mutex
	var counter uint64
	var wg sync.WaitGroup
	var start atomic.Bool
	t := time.Now()
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !start.Load() {
			}
			for i := 0; i < n; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		}()
	}
	t = time.Now()
	start.Store(true)
	wg.Wait()
	return time.Since(t)
}
