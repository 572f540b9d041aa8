//go:build linux && amd64

package shm

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Killing a process exactly where it is about to wake sleepers: the test
// traces one thread of a child (ptrace, syscall stops) and sends SIGKILL
// when that thread enters futex(FUTEX_WAKE) on a given word, after it
// changed the word and before the kernel woke anybody. A crash, the OOM
// killer or a kill -9 can land there as well as anywhere.

// tracedArea is what a traced child and the test share, at tracedOff in an
// area's segment (after the area).
type tracedArea struct {
	tid   int64
	addr  uint64 // the word the child will wake sleepers on, in its mapping
	start int32
	done  int32
	ready int32
	woken int32
}

const tracedOff = 3584

func openTraced(name string) (*Segment, *area, *tracedArea, error) {
	seg, a, err := openArea(name)
	if err != nil {
		return nil, nil, nil, err
	}
	tr, err := View[tracedArea](seg.Bytes()[tracedOff:])
	if err != nil {
		seg.Close()
		return nil, nil, nil, err
	}
	return seg, a, tr, nil
}

// wakeWord returns the word sleepers wait on for the primitive what.
func wakeWord(a *area, what string) *uint32 {
	switch what {
	case "auto":
		return &a.auto.state
	case "manual":
		return &a.manual.state
	case "mutex":
		return lowHalf(&a.mu.state)
	case "rw", "runlock":
		if what == "runlock" {
			return &a.rw.drain
		}
		return lowHalf(&a.rw.w.state)
	}
	panic(what)
}

func init() {
	// args: name, what: on one locked OS thread, publish the thread and the
	// word, wait for the start, then (auto, manual) Set the event, (mutex)
	// Unlock the mutex, (rw) Unlock the write lock, (runlock) RUnlock a
	// read lock, all prepared by the test or taken here first.
	registerChild("brk-traced", func(args []string) error {
		// Not the main thread: the test's wait for the child's exit (on
		// its PID, the main thread's ID) would swallow its trace stops.
		runtime.LockOSThread()
		done := make(chan error)
		go func() {
			runtime.LockOSThread()
			done <- tracedChild(args)
		}()
		return <-done
	})
	// args: name, what, timeout: wait once (auto, manual: the event;
	// mutex; rw: a read lock; wlock: the write lock); count ourselves
	// ready before and woken after.
	registerChild("brk-traced-waiter", func(args []string) error {
		seg, a, tr, err := openTraced(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		d, _ := time.ParseDuration(args[2])
		atomic.AddInt32(&tr.ready, 1)
		switch args[1] {
		case "auto":
			err = a.auto.WaitTimeout(d)
		case "manual":
			err = a.manual.WaitTimeout(d)
		case "mutex":
			if err = a.mu.LockTimeout(d); err == nil || errors.Is(err, ErrOwnerDead) {
				err = nil
				defer a.mu.Unlock()
			}
		case "rw":
			if err = a.rw.RLockTimeout(d); err == nil || errors.Is(err, ErrOwnerDead) {
				err = nil
				defer a.rw.RUnlock()
			}
		case "wlock":
			if err = a.rw.LockTimeout(d); err == nil || errors.Is(err, ErrOwnerDead) {
				err = nil
				defer a.rw.Unlock()
			}
		}
		if err != nil {
			return err
		}
		atomic.AddInt32(&tr.woken, 1)
		return nil
	})
}

// tracedChild is the traced thread of brk-traced.
func tracedChild(args []string) error {
	{
		seg, a, tr, err := openTraced(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		what := args[1]
		switch what {
		case "mutex":
			a.mu.Lock()
		case "rw":
			a.rw.Lock()
		case "runlock":
			a.rw.RLock()
		}
		atomic.StoreUint64(&tr.addr, uint64(uintptr(unsafe.Pointer(wakeWord(a, what)))))
		atomic.StoreInt64(&tr.tid, int64(unix.Gettid()))
		for giveUp := time.Now().Add(30 * time.Second); atomic.LoadInt32(&tr.start) == 0; {
			if time.Now().After(giveUp) {
				return errors.New("never started")
			}
			spinPause()
		}
		switch what {
		case "auto":
			a.auto.Set()
		case "manual":
			a.manual.Set()
		case "mutex":
			a.mu.Unlock()
		case "rw":
			a.rw.Unlock()
		case "runlock":
			a.rw.RUnlock()
		}
		atomic.StoreInt32(&tr.done, 1)
		time.Sleep(time.Hour)
		return nil
	}
}

// killAtWake lets the child c run until its thread tid enters
// futex(FUTEX_WAKE) on addr, and kills it there. start is stored when the
// thread is traced. It reports whether the child was killed there (false:
// it finished without such a call, or timed out).
func killAtWake(t *testing.T, c *child, tid int, addr uint64, start *int32, within time.Duration) (bool, error) {
	return killAtSyscall(t, c, tid, start, within, func(r *unix.PtraceRegs, entering bool) bool {
		return entering && r.Orig_rax == unix.SYS_FUTEX && r.Rdi == addr && r.Rsi&0x7f == 1
	})
}

var errNoTrace = errors.New("cannot trace the child")

// skipNoTrace skips the test if err says the child could not be traced.
func skipNoTrace(t *testing.T, err error) {
	if errors.Is(err, errNoTrace) {
		t.Skip(err)
	}
}

// killAtSyscall traces the thread tid of child c and kills c at the first
// syscall stop (entry or exit) for which kill says so.
func killAtSyscall(t *testing.T, c *child, tid int, start *int32, within time.Duration, kill func(r *unix.PtraceRegs, entering bool) bool) (bool, error) {
	runtime.LockOSThread() // ptrace requests come from the tracer thread
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(tid); err != nil {
		return false, fmt.Errorf("%w (PTRACE_SEIZE): %v", errNoTrace, err)
	}
	if err := unix.PtraceInterrupt(tid); err != nil {
		return false, fmt.Errorf("PTRACE_INTERRUPT: %w", err)
	}
	deadline := time.Now().Add(within)
	var ws unix.WaitStatus
	wait := func() error {
		for {
			pid, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
			if err != nil && err != unix.EINTR {
				return err
			}
			if pid == tid {
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("timed out waiting for the traced thread")
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	if err := wait(); err != nil {
		return false, err
	}
	if err := unix.PtraceSetOptions(tid, unix.PTRACE_O_TRACESYSGOOD); err != nil {
		return false, err
	}
	atomic.StoreInt32(start, 1)
	entering := true
	for time.Now().Before(deadline) {
		if err := unix.PtraceSyscall(tid, 0); err != nil {
			return false, fmt.Errorf("PTRACE_SYSCALL: %w", err)
		}
		if err := wait(); err != nil {
			return false, err
		}
		if ws.Exited() || ws.Signaled() {
			return false, nil
		}
		if !ws.Stopped() {
			continue
		}
		if ws.StopSignal() != syscall.SIGTRAP|0x80 {
			// A signal or an event stop: go on (signals are not passed on:
			// only the runtime's preemption signals are expected).
			continue
		}
		var regs unix.PtraceRegs
		if err := unix.PtraceGetRegs(tid, &regs); err != nil {
			return false, err
		}
		if kill(&regs, entering) {
			syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL)
			// Reap the traced thread (its tracer must), so that the
			// process can be reaped.
			for {
				if err := wait(); err != nil || ws.Exited() || ws.Signaled() {
					break
				}
				unix.PtraceCont(tid, 0)
			}
			<-c.done
			c.killed = true
			return true, nil
		}
		entering = !entering
	}
	return false, errors.New("timed out")
}

// TestBreakEventSetterKilledBeforeWake: a Set changes the event's word and
// then wakes the sleepers. A setter that dies between the two leaves the
// event set and its waiters asleep, on a sleep with no bound: they are
// released only by their timeout (Wait never), and (auto) a later Set finds
// the event set and wakes nobody either. The mutex, whose waiters sleep in
// bounded slices, recovers from the same death within a liveness slice.
func TestBreakEventSetterKilledBeforeWake(t *testing.T) {
	old := SetSpin(0)
	defer SetSpin(old)
	for _, what := range []string{"auto", "manual", "mutex", "rw", "runlock"} {
		t.Run(what, func(t *testing.T) {
			name, seg, a := newArea(t)
			tr, err := View[tracedArea](seg.Bytes()[tracedOff:])
			if err != nil {
				t.Fatal(err)
			}
			setter := startChild(t, "brk-traced", name, what)
			deadline := time.Now().Add(20 * time.Second)
			for atomic.LoadInt64(&tr.tid) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the child did not start: %s", setter.output())
				}
				time.Sleep(time.Millisecond)
			}
			waitFor := what
			if what == "runlock" {
				waitFor = "wlock"
			}
			const n = 2
			var ws []*child
			for i := 0; i < n; i++ {
				ws = append(ws, startChild(t, "brk-traced-waiter", name, waitFor, "3s"))
			}
			waitCount(t, &tr.ready, n, 20*time.Second)
			time.Sleep(100 * time.Millisecond) // all asleep
			killed, err := killAtWake(t, setter, int(tr.tid), tr.addr, &tr.start, 10*time.Second)
			skipNoTrace(t, err)
			if err != nil {
				t.Fatal(err)
			}
			if !killed {
				t.Fatalf("the child made no wake-up call on its word (done=%d)", tr.done)
			}
			killedAt := time.Now()
			// The killed Set (auto) releases one waiter, a Set from here
			// the other; the killed Unlock (mutex) lets both in in turn,
			// (rw) both readers at once; the killed RUnlock lets both
			// writers in in turn; a manual Set releases both.
			if what == "auto" {
				setterDone := make(chan struct{})
				defer func() { <-setterDone }() // it touches the segment: before the cleanup unmaps it
				go func() {
					defer close(setterDone)
					for atomic.LoadInt32(&tr.woken) < n && time.Since(killedAt) < 2*time.Second {
						a.auto.Set()
						time.Sleep(10 * time.Millisecond)
					}
				}()
			}
			for atomic.LoadInt32(&tr.woken) < n && time.Since(killedAt) < 2*time.Second {
				time.Sleep(time.Millisecond)
			}
			lat := time.Since(killedAt)
			if got := atomic.LoadInt32(&tr.woken); got < n {
				state := ""
				switch what {
				case "auto":
					state = fmt.Sprintf(" (event set: %v, further Sets wake nobody)", a.auto.IsSet())
				case "manual":
					state = fmt.Sprintf(" (event set: %v)", a.manual.IsSet())
				}
				t.Fatalf("%s: the waker was killed between changing the word and its wake-up call; %d of %d waiters released in %v%s", what, got, n, lat, state)
			}
			if lat > 100*time.Millisecond {
				t.Errorf("%s: waiters released %v after the waker died", what, lat)
			}
			t.Logf("%s: released %v after the kill", what, lat)
		})
	}
}

func init() {
	// args: name: on a traced thread, wait (60 s) once for the area's auto
	// event; count ourselves woken after.
	registerChild("brk-traced-autowait", func(args []string) error {
		runtime.LockOSThread()
		done := make(chan error)
		go func() {
			runtime.LockOSThread()
			seg, a, tr, err := openTraced(args[0])
			if err != nil {
				done <- err
				return
			}
			defer seg.Close()
			atomic.StoreUint64(&tr.addr, uint64(uintptr(unsafe.Pointer(&a.auto.state))))
			atomic.StoreInt64(&tr.tid, int64(unix.Gettid()))
			for giveUp := time.Now().Add(30 * time.Second); atomic.LoadInt32(&tr.start) == 0; {
				if time.Now().After(giveUp) {
					done <- errors.New("never started")
					return
				}
				spinPause()
			}
			if err := a.auto.WaitTimeout(60 * time.Second); err != nil {
				done <- err
				return
			}
			atomic.AddInt32(&tr.woken, 1)
			done <- nil
		}()
		return <-done
	})
}

// TestBreakAutoEventWokenWaiterDies: Set wakes one sleeper. If that sleeper
// is killed after the kernel woke it and before it cleared the set bit, the
// event stays set and every other waiter stays asleep (its sleep has no
// bound), and a later Set finds the bit set and wakes nobody either. The
// protocol comment says a dead waiter "only costs a needless wake system
// call". The first waiter is traced and killed as its futex wait returns.
func TestBreakAutoEventWokenWaiterDies(t *testing.T) {
	old := SetSpin(0)
	defer SetSpin(old)
	name, seg, a := newArea(t)
	tr, err := View[tracedArea](seg.Bytes()[tracedOff:])
	if err != nil {
		t.Fatal(err)
	}
	w1 := startChild(t, "brk-traced-autowait", name)
	deadline := time.Now().Add(20 * time.Second)
	for atomic.LoadInt64(&tr.tid) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the child did not start: %s", w1.output())
		}
		time.Sleep(time.Millisecond)
	}
	addr := atomic.LoadUint64(&tr.addr)
	asleep := make(chan struct{})
	traced := make(chan error, 1)
	go func() {
		once := false
		killed, err := killAtSyscall(t, w1, int(tr.tid), &tr.start, 20*time.Second, func(r *unix.PtraceRegs, entering bool) bool {
			if r.Orig_rax != unix.SYS_FUTEX || r.Rdi != addr || r.Rsi&0x7f != 0 {
				return false
			}
			if entering {
				if !once {
					once = true
					close(asleep)
				}
				return false
			}
			return true // woken: killed before it takes the event
		})
		if err == nil && !killed {
			err = errors.New("the waiter was not killed")
		}
		traced <- err
	}()
	select {
	case <-asleep:
	case err := <-traced:
		skipNoTrace(t, err)
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the first waiter is asleep, first in line
	w2 := startChild(t, "brk-auto-wait", name, "60s")
	waitCount(t, &a.ready, 1, 20*time.Second)
	for atomic.LoadUint32(&a.auto.state)/evWaiter < 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the second is asleep too
	a.auto.Set()
	if err := <-traced; err != nil {
		t.Fatal(err)
	}
	if atomic.LoadInt32(&tr.woken) != 0 {
		t.Fatal("the first waiter took the event before it was killed")
	}
	// The second waiter must now get the event (still set).
	start := time.Now()
	for atomic.LoadInt32(&a.woken) == 0 && time.Since(start) < time.Second {
		time.Sleep(time.Millisecond)
	}
	if atomic.LoadInt32(&a.woken) == 0 {
		a.auto.Set() // does not help: the event is set already
		time.Sleep(200 * time.Millisecond)
		if atomic.LoadInt32(&a.woken) == 0 {
			t.Fatalf("the waiter woken by Set was killed before it took the event: the event stays set (%v), "+
				"the other waiter sleeps on (1.2 s so far; its sleep has no bound), and a second Set wakes nobody", a.auto.IsSet())
		}
	}
	w2.wait(10 * time.Second)
}

func init() {
	// args: name, timeout: wait once for the area's auto event; count
	// ourselves registered first and released after.
	registerChild("brk-auto-wait", func(args []string) error {
		seg, a, err := openArea(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		d, _ := time.ParseDuration(args[1])
		atomic.AddInt32(&a.ready, 1)
		if err := a.auto.WaitTimeout(d); err != nil {
			return err
		}
		atomic.AddInt32(&a.woken, 1)
		return nil
	})
}
