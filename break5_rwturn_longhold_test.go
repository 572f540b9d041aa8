package shm

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestBreak5RWTurnLongWriterHolds: writers that take the lock back to back
// (brk2-writers: two processes, two goroutines each) and hold it longer
// than a turn lasts must not keep a reader out either. A reader asked its
// turn when it woke and found w held, that is when the next writer had just
// taken w (and looked at the turn already); the turn was over before that
// writer let w go, so the writer after it saw none: with holds of 15 ms a
// reader waited 317 ms. A reader should wait about one or two holds.
func TestBreak5RWTurnLongWriterHolds(t *testing.T) {
	for _, hold := range []time.Duration{8 * time.Millisecond, 15 * time.Millisecond} {
		t.Run(hold.String(), func(t *testing.T) {
			name, _, a := newArea(t)
			var cs []*child
			for i := 0; i < 2; i++ {
				cs = append(cs, startChild(t, "brk2-writers", name, strconv.Itoa(int(hold/time.Microsecond))))
			}
			waitCount(t, &a.ready, 2, 20*time.Second)
			time.Sleep(50 * time.Millisecond)
			var worst, total time.Duration
			var over time.Duration // a plain sleep's worst overshoot, in this process
			const n = 12
			for i := 0; i < n; i++ {
				start := time.Now()
				err := a.rw.RLockTimeout(2 * time.Second)
				d := time.Since(start)
				if err != nil {
					d = 2 * time.Second
				} else {
					a.rw.RUnlock()
				}
				total += d
				if d > worst {
					worst = d
				}
				ps := time.Now()
				time.Sleep(3 * time.Millisecond)
				over = max(over, time.Since(ps)-3*time.Millisecond)
			}
			atomic.StoreInt32(&a.woken, 1)
			for _, c := range cs {
				c.wait(10 * time.Second)
			}
			t.Logf("holds of %v: longest read-lock wait %v, mean %v; a plain sleep overshot by %v at worst", hold, worst, total/n, over)
			limit := 3*hold + 25*time.Millisecond
			if runtime.GOOS == "windows" {
				// See wineSlack: Wine's scheduling, not the lock.
				limit += 3 * over
			}
			if worst > limit {
				t.Errorf("a reader waited %v for writers that each hold %v back to back (limit %v)", worst, hold, limit)
			}
		})
	}
}
