//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/go-shm/shm"
)

func init() {
	register(&command{
		name:    "bench",
		args:    "[-quick] [-trips N]",
		summary: "measure locks and events against sync, pipes, sockets, futex and spin baselines",
		help: `
Measures, in this process and in worker processes of this program:

  - uncontended lock+unlock, read lock, TryLock and event Set (ns per
    operation), against sync.Mutex, sync.RWMutex and one atomic
    compare-and-swap;
  - round trips between two processes (ping-pong) through every event kind
    and a mutex handed back and forth, against a pipe pair, a Unix socket
    pair, a raw futex wait/wake ping-pong (the kernel's floor) and a raw spin
    on a shared word (the hardware's floor): median and 99th percentile of
    each round trip, and the ratio of the medians to each baseline;
  - the same round trips with both processes pinned to CPU 0, where
    spinning cannot help (nobody spins there);
  - two processes contending for one mutex (ns per protected increment);
  - the CPU time a waiter uses while idle in a Wait for a second.

The machine is shared, so every figure is a ratio against a baseline
measured in the same run, the kinds taking turns in chunks. "spin0" rows run
both processes with SetSpin(0): waiters sleep in the kernel at once.`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("quick", false, "a short run (a few seconds), for tests")
			fs.Int("trips", 100000, "round trips per kind")
			fs.String("peer", "", "internal: answer round trips on segment `NAME`")
			fs.Bool("one-cpu", false, "internal: run the round trips here (started pinned) and print them as JSON")
			fs.String("idle", "", "internal: wait on segment `NAME`'s event and report the CPU time")
		},
		run: runBench,
	})
}

// benchShared is the round-trip segment's data: a control block and, on
// cache lines of their own, the words each kind of round trip uses.
type benchShared struct {
	cmd   uint32 // command number; the peer sleeps on it between commands
	mode  uint32
	n     uint32
	spin  int32
	_     [48]byte
	ready uint32 // the peer is running command ready
	_     [60]byte
	done  uint32 // the peer finished command done
	_     [60]byte
	start uint32 // for rtIncr: both start when it equals cmd
	_     [60]byte

	ping, pong padWord
	auto       [2]struct {
		e shm.AutoEvent
		_ [56]byte
	}
	manual [2]struct {
		e shm.ManualEvent
		_ [56]byte
	}
	busyAuto [2]struct {
		e shm.BusyAutoEvent
		_ [56]byte
	}
	busyManual [2]struct {
		e shm.BusyManualEvent
		_ [56]byte
	}
	mu      shm.Mutex
	turn    uint32
	_       [52]byte
	counter uint64
	_       [56]byte
	idleCPU int64 // the idle waiter's CPU time, ns
	idle    uint32
}

type padWord struct {
	v uint32
	_ [60]byte
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
	rtMutex
	rtIncr
)

// A round-trip kind as the table shows it.
type rtKind struct {
	name string
	mode int
	spin int // SetSpin on both sides (-1: default)
}

var (
	kSpin  = rtKind{"raw spin (hardware floor)", rtSpin, 0}
	kFutex = rtKind{"raw futex (kernel floor)", rtFutex, 0}
	kPipe  = rtKind{"pipe pair", rtPipe, 0}
	kUnix  = rtKind{"Unix socket pair", rtUnix, 0}
	kinds  = []rtKind{
		kSpin, kFutex, kPipe, kUnix,
		{"AutoEvent spin0", rtAuto, 0},
		{"ManualEvent spin0", rtManual, 0},
		{"AutoEvent", rtAuto, -1},
		{"ManualEvent", rtManual, -1},
		{"BusyAutoEvent", rtBusyAuto, -1},
		{"BusyManualEvent", rtBusyManual, -1},
		{"EventFD (auto)", rtEventFD, -1},
		{"Mutex hand-off", rtMutex, -1},
		{"Mutex hand-off spin0", rtMutex, 0},
	}
	baselines = []rtKind{kFutex, kSpin, kPipe, kUnix}
)

const benchTimeout = 2 * time.Minute

func runBench(e *env, args []string) error {
	if len(args) != 0 {
		return usageErrorf("bench takes no arguments")
	}
	quick := e.flags.Lookup("quick").Value.(flag.Getter).Get().(bool)
	trips := flagInt(e, "trips")
	if quick {
		trips = 2000
	}
	if trips < 100 {
		return usageErrorf("-trips must be at least 100")
	}
	if name := e.flags.Lookup("peer").Value.String(); name != "" {
		return benchPeer(name)
	}
	if name := e.flags.Lookup("idle").Value.String(); name != "" {
		return idleWaiter(name)
	}
	if e.flags.Lookup("one-cpu").Value.(flag.Getter).Get().(bool) {
		res, err := roundTrips(trips, true)
		if err != nil {
			return err
		}
		return json.NewEncoder(e.stdout).Encode(res)
	}

	w := e.stdout
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "shm bench: %d CPUs, GOMAXPROCS %d, %s, load average %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	fmt.Fprintln(w, "Ratios compare medians measured in this run, the kinds taking turns; lower is better.")

	ops := 2_000_000
	if quick {
		ops = 100_000
	}
	uncontended(w, ops)

	fmt.Fprintf(w, "\nRound trip between two processes, %d per kind (each timed; the clock adds about 30 ns):\n", trips)
	res, err := roundTrips(trips, false)
	if err != nil {
		return err
	}
	printTrips(w, res)

	fmt.Fprintf(w, "\nThe same with both processes pinned to CPU 0 (taskset -c 0), where nobody spins:\n")
	one, err := oneCPU(trips)
	if err != nil {
		return err
	}
	printTrips(w, one)

	incr := trips * 10
	if err := contended(w, incr); err != nil {
		return err
	}
	idle := time.Second
	if quick {
		idle = 200 * time.Millisecond
	}
	return idleCPU(w, idle)
}

// Uncontended operations.

type ucShared struct {
	mu   shm.Mutex
	_    [56]byte
	rw   shm.RWMutex
	_    [40]byte
	ae   shm.AutoEvent
	_    [56]byte
	word uint64
}

func uncontended(w io.Writer, ops int) {
	var st ucShared // process memory is as fast as a mapping; the segments are in the round trips
	s := &st
	var smu sync.Mutex
	var srw sync.RWMutex
	var word uint64
	type op struct {
		name string
		f    func(n int)
	}
	list := []op{
		{"sync.Mutex Lock+Unlock", func(n int) {
			for i := 0; i < n; i++ {
				smu.Lock()
				smu.Unlock()
			}
		}},
		{"sync.RWMutex RLock+RUnlock", func(n int) {
			for i := 0; i < n; i++ {
				srw.RLock()
				srw.RUnlock()
			}
		}},
		{"sync.RWMutex Lock+Unlock", func(n int) {
			for i := 0; i < n; i++ {
				srw.Lock()
				srw.Unlock()
			}
		}},
		{"atomic CAS", func(n int) {
			v := atomic.LoadUint64(&word)
			for i := 0; i < n; i++ {
				atomic.CompareAndSwapUint64(&word, v, v+1)
				v++
			}
		}},
		{"Mutex Lock+Unlock", func(n int) {
			for i := 0; i < n; i++ {
				s.mu.Lock()
				s.mu.Unlock()
			}
		}},
		{"Mutex TryLock+Unlock", func(n int) {
			for i := 0; i < n; i++ {
				if s.mu.TryLock() {
					s.mu.Unlock()
				}
			}
		}},
		{"RWMutex RLock+RUnlock", func(n int) {
			for i := 0; i < n; i++ {
				s.rw.RLock()
				s.rw.RUnlock()
			}
		}},
		{"RWMutex Lock+Unlock", func(n int) {
			for i := 0; i < n; i++ {
				s.rw.Lock()
				s.rw.Unlock()
			}
		}},
		{"AutoEvent Set+Reset", func(n int) {
			for i := 0; i < n; i++ {
				s.ae.Set()
				s.ae.Reset()
			}
		}},
	}
	const chunk = 1000
	ts := make([][]time.Duration, len(list))
	for done := 0; done < ops; done += chunk {
		for i, o := range list {
			t := time.Now()
			o.f(chunk)
			ts[i] = append(ts[i], time.Since(t))
		}
	}
	per := make([]float64, len(list))
	for i := range list {
		per[i] = float64(median(ts[i])) / chunk
	}
	fmt.Fprintf(w, "\nUncontended, one process (%d operations each, median of chunks of %d):\n", ops, chunk)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/op\tx sync\tx CAS\t")
	syncOf := map[string]int{"Mutex Lock+Unlock": 0, "Mutex TryLock+Unlock": 0, "RWMutex RLock+RUnlock": 1, "RWMutex Lock+Unlock": 2}
	for i, o := range list {
		xs := "-"
		if j, ok := syncOf[o.name]; ok {
			xs = fmt.Sprintf("%.2f", per[i]/per[j])
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.2f\t\n", o.name, per[i], xs, per[i]/per[3])
	}
	tw.Flush()
	fmt.Fprintln(w, "Allocations and system calls on these paths: 0 (go test -run 'NoAllocs|NoSyscalls' -v .).")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// Round trips.

// tripResult is one kind's round trips.
type tripResult struct {
	Name   string
	Trips  int
	Median time.Duration
	P99    time.Duration
	Ratios map[string]float64 // to each baseline, by its name
	Note   string             `json:",omitempty"`
}

// peer is the coordinator's side of a round-trip peer process.
type peer struct {
	m      *shm.Managed
	s      *benchShared
	efd    [2]shm.Event
	pipeW  int
	pipeR  int
	sock   int
	cmd    *exec.Cmd
	out    strings.Builder
	exited chan struct{}
}

func startPeer() (*peer, error) {
	conf := shm.Config{Size: int(unsafe.Sizeof(benchShared{}))}
	conf.AddEvent(shm.EventFDAuto)
	conf.AddEvent(shm.EventFDAuto)
	m, err := conf.Create()
	if err != nil {
		return nil, err
	}
	p := &peer{m: m, exited: make(chan struct{})}
	fail := func(err error) (*peer, error) {
		m.Close()
		return nil, err
	}
	if p.s, err = shm.View[benchShared](m.Data()); err != nil {
		return fail(err)
	}
	for i := range p.efd {
		if p.efd[i], err = m.Event(i); err != nil {
			return fail(err)
		}
	}
	var toPeer, fromPeer [2]int
	if err := unix.Pipe2(toPeer[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	if err := unix.Pipe2(fromPeer[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	p.pipeW, p.pipeR, p.sock = toPeer[1], fromPeer[0], sp[0]
	theirs := []*os.File{os.NewFile(uintptr(toPeer[0]), "ping"), os.NewFile(uintptr(fromPeer[1]), "pong"), os.NewFile(uintptr(sp[1]), "sock")}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	p.cmd = exec.Command(self, "bench", "-peer", m.Name())
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.ExtraFiles = theirs // fds 3, 4, 5
	err = p.cmd.Start()
	for _, f := range theirs {
		f.Close()
	}
	if err != nil {
		return fail(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *peer) close() {
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
	p.m.Close()
}

func (p *peer) command(mode, spin, n int) uint32 {
	s := p.s
	atomic.StoreUint32(&s.mode, uint32(mode))
	atomic.StoreUint32(&s.n, uint32(n))
	atomic.StoreInt32(&s.spin, int32(spin))
	c := atomic.AddUint32(&s.cmd, 1)
	futexWake(&s.cmd)
	return c
}

// await waits until *w == c.
func (p *peer) await(w *uint32, c uint32) error {
	deadline := time.Now().Add(benchTimeout)
	for {
		v := atomic.LoadUint32(w)
		if v == c {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("the peer process exited: %s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("the peer process does not answer")
		}
		futexWait(w, v, 100*time.Millisecond)
	}
}

// run performs n round trips of kind k, appending each one's time to ts
// (nil: not timed one by one), and returns the time they took in all.
func (p *peer) run(k rtKind, n int, ts []time.Duration) ([]time.Duration, time.Duration, error) {
	s := p.s
	atomic.StoreUint32(&s.ping.v, 0)
	atomic.StoreUint32(&s.pong.v, 0)
	s.turn = 0
	shm.SetSpin(k.spin)
	c := p.command(k.mode, k.spin, n)
	if err := p.await(&s.ready, c); err != nil {
		return ts, 0, err
	}
	trip := p.trip(k.mode)
	begin := time.Now()
	if k.mode == rtIncr {
		atomic.StoreUint32(&s.start, c)
	}
	t := begin
	for i := uint32(1); i <= uint32(n); i++ {
		trip(i)
		if ts != nil {
			now := time.Now()
			ts = append(ts, now.Sub(t))
			t = now
		}
	}
	if k.mode == rtMutex {
		for { // the last round trip ends when the turn is back
			s.mu.Lock()
			back := s.turn == 0
			s.mu.Unlock()
			if back {
				break
			}
		}
	}
	if err := p.await(&s.done, c); err != nil {
		return ts, 0, err
	}
	return ts, time.Since(begin), nil
}

// trip returns the coordinator's side of one round trip in mode.
func (p *peer) trip(mode int) func(i uint32) {
	s := p.s
	switch mode {
	case rtSpin:
		return func(i uint32) {
			atomic.StoreUint32(&s.ping.v, 2*i-1)
			spinRecv(&s.ping.v, 2*i)
		}
	case rtFutex:
		return func(i uint32) {
			rawSend(&s.ping.v, i)
			rawRecv(&s.pong.v, i)
		}
	case rtPipe:
		return func(uint32) {
			oneByte(p.pipeW, true)
			oneByte(p.pipeR, false)
		}
	case rtUnix:
		return func(uint32) {
			oneByte(p.sock, true)
			oneByte(p.sock, false)
		}
	case rtAuto:
		return func(uint32) {
			s.auto[0].e.Set()
			s.auto[1].e.Wait()
		}
	case rtManual:
		return func(uint32) {
			s.manual[0].e.Set()
			s.manual[1].e.Wait()
			s.manual[1].e.Reset()
		}
	case rtBusyAuto:
		return func(uint32) {
			s.busyAuto[0].e.Set()
			s.busyAuto[1].e.Wait()
		}
	case rtBusyManual:
		return func(uint32) {
			s.busyManual[0].e.Set()
			s.busyManual[1].e.Wait()
			s.busyManual[1].e.Reset()
		}
	case rtEventFD:
		return func(uint32) {
			p.efd[0].Set()
			p.efd[1].Wait()
		}
	case rtMutex:
		return func(uint32) { handoff(s, 0, 1) }
	case rtIncr:
		return func(uint32) {
			s.mu.Lock()
			s.counter++
			s.mu.Unlock()
		}
	}
	panic("bench: unknown mode " + strconv.Itoa(mode))
}

// respond is the peer's side of n round trips in mode.
func respond(s *benchShared, efd [2]shm.Event, mode int, n int) {
	for i := uint32(1); i <= uint32(n); i++ {
		switch mode {
		case rtSpin:
			spinRecv(&s.ping.v, 2*i-1)
			atomic.StoreUint32(&s.ping.v, 2*i)
		case rtFutex:
			rawRecv(&s.ping.v, i)
			rawSend(&s.pong.v, i)
		case rtPipe:
			oneByte(3, false)
			oneByte(4, true)
		case rtUnix:
			oneByte(5, false)
			oneByte(5, true)
		case rtAuto:
			s.auto[0].e.Wait()
			s.auto[1].e.Set()
		case rtManual:
			s.manual[0].e.Wait()
			s.manual[0].e.Reset()
			s.manual[1].e.Set()
		case rtBusyAuto:
			s.busyAuto[0].e.Wait()
			s.busyAuto[1].e.Set()
		case rtBusyManual:
			s.busyManual[0].e.Wait()
			s.busyManual[0].e.Reset()
			s.busyManual[1].e.Set()
		case rtEventFD:
			efd[0].Wait()
			efd[1].Set()
		case rtMutex:
			handoff(s, 1, 1)
		case rtIncr:
			s.mu.Lock()
			s.counter++
			s.mu.Unlock()
		}
	}
}

// handoff takes the mutex n times when it is this side's turn (me), each
// time giving the turn to the other side. On a single CPU a side that finds
// it is not its turn yields the CPU, since the other side cannot take its
// turn until it runs.
func handoff(s *benchShared, me uint32, n int) {
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

var singleCPU = runtime.NumCPU() == 1

// benchPeer answers the coordinator's commands until told to exit or
// orphaned.
func benchPeer(name string) error {
	m, err := shm.OpenManaged(name)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := shm.View[benchShared](m.Data())
	if err != nil {
		return err
	}
	var efd [2]shm.Event
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
			futexWait(&s.cmd, c, 100*time.Millisecond)
			if os.Getppid() != parent {
				return errors.New("orphaned")
			}
			continue
		}
		last = c
		mode, n := int(atomic.LoadUint32(&s.mode)), int(atomic.LoadUint32(&s.n))
		if mode == rtExit {
			return nil
		}
		shm.SetSpin(int(atomic.LoadInt32(&s.spin)))
		atomic.StoreUint32(&s.ready, c)
		futexWake(&s.ready)
		if mode == rtIncr {
			for atomic.LoadUint32(&s.start) != c {
			}
		}
		respond(s, efd, mode, n)
		atomic.StoreUint32(&s.done, c)
		futexWake(&s.done)
	}
}

// roundTrips measures every kind, the kinds taking turns in chunks so that
// a burst of load from elsewhere hits them alike.
func roundTrips(trips int, oneCPU bool) ([]tripResult, error) {
	p, err := startPeer()
	if err != nil {
		return nil, err
	}
	defer p.close()
	defer shm.SetSpin(-1)
	const rounds = 10
	ts := make([][]time.Duration, len(kinds))
	for i := range ts {
		ts[i] = make([]time.Duration, 0, trips)
	}
	notes := make([]string, len(kinds))
	for r := 0; r < rounds; r++ {
		for i, k := range kinds {
			n := trips / rounds
			if oneCPU && k.mode == rtSpin {
				// A pure spinner on a shared CPU waits out its time slice.
				n = 2
				notes[i] = "each side spins until preempted"
			}
			if ts[i], _, err = p.run(k, n, ts[i]); err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
		}
	}
	res := make([]tripResult, len(kinds))
	byName := map[string]time.Duration{}
	for i, k := range kinds {
		s := slices.Clone(ts[i])
		slices.Sort(s)
		res[i] = tripResult{Name: k.name, Trips: len(s), Median: s[len(s)/2], P99: s[len(s)*99/100], Note: notes[i]}
		byName[k.name] = res[i].Median
	}
	for i := range res {
		res[i].Ratios = map[string]float64{}
		for _, b := range baselines {
			res[i].Ratios[b.name] = float64(res[i].Median) / float64(byName[b.name])
		}
	}
	return res, nil
}

func printTrips(w io.Writer, res []tripResult) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tp99\tx futex\tx spin\tx pipe\tx unix\t")
	for _, r := range res {
		note := ""
		if r.Note != "" {
			note = "  (" + r.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\n", r.Name, fmtDur(r.Median), fmtDur(r.P99),
			r.Ratios[kFutex.name], r.Ratios[kSpin.name], r.Ratios[kPipe.name], r.Ratios[kUnix.name], note)
	}
	tw.Flush()
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.1fms", float64(d)/1e6)
}

// oneCPU runs the round trips in a process of this program started with
// CPU 0 as its only CPU (its peer inherits that), as taskset -c 0 would.
func oneCPU(trips int) ([]tripResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n := trips / 10
	out, err := runPinned(exec.Command(self, "bench", "-one-cpu", "-trips", strconv.Itoa(max(n, 100))))
	if err != nil {
		return nil, err
	}
	var res []tripResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("one-CPU run: %w: %s", err, out)
	}
	return res, nil
}

// runPinned runs cmd with CPU 0 as its only CPU: a child inherits the
// affinity of the thread that starts it, so cmd is started from a locked
// thread pinned for the purpose (and discarded afterwards).
func runPinned(cmd *exec.Cmd) ([]byte, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		var set unix.CPUSet
		set.Set(0)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			ch <- result{nil, fmt.Errorf("pinning to CPU 0: %w", err)}
			return
		}
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			ch <- result{nil, err}
			return
		}
		out, _ := io.ReadAll(bufio.NewReader(stdout))
		if err := cmd.Wait(); err != nil {
			ch <- result{nil, fmt.Errorf("one-CPU run: %v: %s", err, stderr.String())}
			return
		}
		ch <- result{out, nil}
	}()
	r := <-ch
	return r.out, r.err
}

// contended has this process and a peer increment one counter under one
// Mutex, n times each, against two goroutines doing the same under a
// sync.Mutex.
func contended(w io.Writer, n int) error {
	p, err := startPeer()
	if err != nil {
		return err
	}
	defer p.close()
	const rounds = 10
	var st, bt []time.Duration
	for r := 0; r < rounds; r++ {
		_, el, err := p.run(rtKind{"contended", rtIncr, -1}, n/rounds, nil)
		if err != nil {
			return err
		}
		st = append(st, el)
		bt = append(bt, syncContended(n/rounds))
	}
	if want := uint64(n/rounds) * 2 * rounds; p.s.counter != want {
		return fmt.Errorf("contended mutex: the counter is %d, not %d", p.s.counter, want)
	}
	per := float64(median(st)) / float64(2*(n/rounds))
	base := float64(median(bt)) / float64(2*(n/rounds))
	fmt.Fprintf(w, "\nTwo processes contending for one Mutex, %d increments each: %.1f ns per protected increment; two goroutines on a sync.Mutex: %.1f ns (x %.2f)\n",
		n, per, base, per/base)
	return nil
}

func syncContended(n int) time.Duration {
	var mu sync.Mutex
	var counter uint64
	var wg sync.WaitGroup
	var start atomic.Bool
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
	t := time.Now()
	start.Store(true)
	wg.Wait()
	return time.Since(t)
}

// idleCPU has a worker wait, idle, in an AutoEvent's Wait (default
// settings), then in a BusyAutoEvent's, and reports the CPU time it used.
func idleCPU(w io.Writer, idle time.Duration) error {
	fmt.Fprintf(w, "\nA waiter idle for %v (default settings; CPU time of the waiting process, getrusage):\n", idle)
	for _, mode := range []int{rtAuto, rtBusyAuto} {
		conf := shm.Config{Size: int(unsafe.Sizeof(benchShared{}))}
		m, err := conf.Create()
		if err != nil {
			return err
		}
		s, _ := shm.View[benchShared](m.Data())
		atomic.StoreUint32(&s.mode, uint32(mode))
		self, _ := os.Executable()
		cmd := exec.Command(self, "bench", "-idle", m.Name())
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			m.Close()
			return err
		}
		deadline := time.Now().Add(benchTimeout)
		for atomic.LoadUint32(&s.idle) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(idle)
		if mode == rtAuto {
			s.auto[0].e.Set()
		} else {
			s.busyAuto[0].e.Set()
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(benchTimeout):
			cmd.Process.Kill()
			err = <-done
		}
		cpu := time.Duration(atomic.LoadInt64(&s.idleCPU))
		m.Close()
		if err != nil {
			return fmt.Errorf("idle waiter: %v: %s", err, out.String())
		}
		name := map[int]string{rtAuto: "AutoEvent.Wait", rtBusyAuto: "BusyAutoEvent.Wait"}[mode]
		fmt.Fprintf(w, "  %-20s %8s CPU, %5.2f%% of the wait\n", name, fmtDur(cpu), 100*float64(cpu)/float64(idle))
	}
	return nil
}

func idleWaiter(name string) error {
	m, err := shm.OpenManaged(name)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := shm.View[benchShared](m.Data())
	if err != nil {
		return err
	}
	before := cpuTime()
	atomic.StoreUint32(&s.idle, 1)
	if atomic.LoadUint32(&s.mode) == rtAuto {
		err = s.auto[0].e.Wait()
	} else {
		err = s.busyAuto[0].e.Wait()
	}
	atomic.StoreInt64(&s.idleCPU, int64(cpuTime()-before))
	return err
}

// cpuTime is the user and system time this process used so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The raw baselines, written directly against the system calls.

const (
	futexWaitOp = 0 // FUTEX_WAIT, shared between processes
	futexWakeOp = 1 // FUTEX_WAKE
)

func futexWait(addr *uint32, val uint32, d time.Duration) {
	var ts *unix.Timespec
	if d >= 0 {
		t := unix.NsecToTimespec(int64(d))
		ts = &t
	}
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
}

func futexWake(addr *uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, 1<<30, 0, 0, 0)
}

// rawSend publishes i on w and wakes its sleeper; rawRecv sleeps until w
// holds i: a futex ping-pong where neither side spins.
func rawSend(w *uint32, i uint32) {
	atomic.StoreUint32(w, i)
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakeOp, 1, 0, 0, 0)
}

func rawRecv(w *uint32, i uint32) {
	for {
		v := atomic.LoadUint32(w)
		if v == i {
			return
		}
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitOp, uintptr(v), 0, 0, 0)
	}
}

// spinRecv polls w until it holds i. The raw spin ping-pong bounces one
// word between the processes (the sender stores odd numbers, the answer
// even ones): one cache line, the fastest exchange there is. A short pause
// between polls keeps the poller from hammering the line the other side is
// about to write.
func spinRecv(w *uint32, i uint32) {
	for atomic.LoadUint32(w) != i {
		pause()
	}
}

//go:noinline
func pause() {
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
			panic(fmt.Sprintf("bench: pipe/socket round trip: n=%d err=%v", n, err))
		}
		return
	}
}
