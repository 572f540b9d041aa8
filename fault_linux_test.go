package shm

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A peer that may write a segment shrinks its file (ftruncate) while this
// process waits on its locks and events, and then calls into it again: no
// call crashes the process; each returns an error matching ErrCorrupt.

func init() {
	// args: name: make a managed segment, hold its two locks, and wait to
	// be killed.
	registerChild("trunc-holder", func(args []string) error {
		c := Config{Name: args[0], Size: 4096,
			Locks:  []LockSpec{{LockMutex, 0, 64}, {LockRW, 64, 64}},
			Events: []EventKind{EventAuto, EventManual, EventBusyAuto, EventBusyManual}}
		m, err := c.Create()
		if err != nil {
			return err
		}
		m.Segment().SetOwner(false)
		if _, err := m.Lock(0); err != nil {
			return err
		}
		if _, err := m.Lock(1); err != nil {
			return err
		}
		atomic.StoreUint32(word32(m.Data(), 1024), 1)
		time.Sleep(time.Hour)
		return nil
	})
}

func TestShrunkSegmentIsCorruptNotACrash(t *testing.T) {
	name := testName(t)
	holder := startChild(t, "trunc-holder", name)
	var m *Managed
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if m, err = OpenManaged(name); err == nil && atomic.LoadUint32(word32(m.Data(), 1024)) == 1 {
			break
		}
		if m != nil {
			m.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder did not start: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer m.Close()
	// A raw segment with a Mutex held by this process, waited for by another
	// goroutine, shrunk too.
	raw := testName(t)
	rs, err := Create(raw, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rawMu, _ := View[Mutex](rs.Bytes())
	rawMu.Lock()

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	wait := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f()
			if !errors.Is(err, ErrCorrupt) {
				errs <- errors.New(what + ": " + errString(err) + ", want ErrCorrupt")
			}
		}()
	}
	wait("Managed.LockTimeout", func() error { _, err := m.LockTimeout(0, 10*time.Second); return err })
	wait("Managed.RLockTimeout", func() error { _, err := m.RLockTimeout(1, 10*time.Second); return err })
	for i := 0; i < 4; i++ {
		ev, err := m.Event(i)
		if err != nil {
			t.Fatal(err)
		}
		wait("Event.WaitTimeout", func() error { return ev.WaitTimeout(10 * time.Second) })
	}
	wait("Mutex.LockTimeout (raw)", func() error { return rawMu.LockTimeout(10 * time.Second) })
	time.Sleep(100 * time.Millisecond) // everyone asleep
	for _, n := range []string{name, raw} {
		if err := os.Truncate(Dir+"/"+n, 0); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waits on a shrunk segment did not return")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Calls made after the shrink.
	if _, err := m.Lock(0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Managed.Lock after the shrink: %v", err)
	}
	if _, ok := m.TryLock(0); ok {
		t.Error("Managed.TryLock after the shrink succeeded")
	}
	if _, err := m.LockState(1); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Managed.LockState after the shrink: %v", err)
	}
	if _, err := m.EventState(0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Managed.EventState after the shrink: %v", err)
	}
	ev, _ := m.Event(1)
	if err := ev.Set(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Event.Set after the shrink: %v", err)
	}
	if err := m.MarkConsistent(0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Managed.MarkConsistent after the shrink: %v", err)
	}
	holder.kill()
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
