package shm

import (
	"errors"
	"os"
	"testing"
	"time"
)

// FuzzShrinkingSegment: a peer shrinks a managed segment's file to a size
// the fuzzer picks, after a number of calls it picks, while this process
// calls into it (and another goroutine waits on it). Every call returns (an
// error matching ErrCorrupt allowed), nothing crashes, nothing hangs past
// its timeout.
func FuzzShrinkingSegment(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint16(0), uint8(3))
	f.Add([]byte{3, 3, 7, 7, 1, 1}, uint16(100), uint8(0))
	f.Add([]byte{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, uint16(4096), uint8(5))
	f.Add([]byte{2, 6, 2, 6, 2, 6}, uint16(8191), uint8(1))
	f.Fuzz(func(t *testing.T, ops []byte, cut uint16, when uint8) {
		if len(ops) > 16 {
			ops = ops[:16]
		}
		c := Config{Name: testName(t), Size: 4096,
			Locks:  []LockSpec{{LockMutex, 0, 64}, {LockRW, 64, 64}},
			Events: []EventKind{EventAuto, EventManual, EventBusyAuto}}
		m, err := c.Create()
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		total := m.Segment().Size()
		ev, _ := m.Event(0)
		waiter := make(chan error, 1)
		go func() { waiter <- ev.WaitTimeout(100 * time.Millisecond) }()
		const tiny = time.Millisecond
		done := make(chan struct{})
		go func() {
			defer close(done)
			for k, op := range ops {
				if k == int(when)%(len(ops)+1) {
					os.Truncate(Dir+"/"+c.Name, int64(int(cut)%total))
				}
				var err error
				switch op % 10 {
				case 0:
					var g *Guard
					if g, err = m.LockTimeout(0, tiny); g != nil {
						g.Unlock()
					}
				case 1:
					var g *Guard
					if g, err = m.RLockTimeout(1, tiny); g != nil {
						g.Unlock()
					}
				case 2:
					if g, ok := m.TryLock(1); ok {
						g.Unlock()
					}
				case 3:
					_, err = m.LockState(1)
				case 4:
					_, err = m.EventState(1)
				case 5:
					var e Event
					if e, err = m.Event(int(op) % 3); err == nil {
						e.Set()
						err = e.WaitTimeout(tiny)
					}
				case 6:
					err = m.MarkConsistent(0)
				case 7:
					var g *Guard
					if g, err = m.LockTimeout(1, tiny); g != nil {
						g.Unlock()
					}
				case 8:
					ev.Reset()
				case 9:
					m.Creator()
				}
				if err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrOwnerDead) {
					t.Errorf("op %d: unexpected error %v", op, err)
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("calls on a shrinking segment did not return (ops %v, cut %d, when %d)", ops, cut, when)
		}
		if err := <-waiter; err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCorrupt) {
			t.Errorf("waiter: %v", err)
		}
	})
}
