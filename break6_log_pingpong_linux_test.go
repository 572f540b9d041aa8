//go:build linux

package shm

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Round 6: the sleep/wake argument (Dekker) of the log and the cell, over
// and over: a reader in another process in an untimed Receive (a waiter in
// an untimed Cell.Wait) is sent one message (one store) at a time, after a
// pause of random length so that it is caught spinning, polling, just
// setting its mark, or asleep. A lost wake-up shows as a reply that took a
// sleep slice (100 ms) instead of microseconds.

type b6PingFlags struct {
	ready int32
	_     int32
	ack   uint64 // the last number the child got, + 1
}

func init() {
	registerChild("b6-pong", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		f, _ := View[b6PingFlags](m.Data())
		switch args[1] {
		case "log":
			l, _ := m.Log(0)
			r, err := l.Reader(LogNext)
			if err != nil {
				return err
			}
			atomic.StoreInt32(&f.ready, 1)
			for {
				msg, err := r.Receive()
				if err != nil {
					return err
				}
				seq := binary.LittleEndian.Uint64(msg.Bytes())
				if err := r.Check(msg); err != nil {
					return err
				}
				atomic.StoreUint64(&f.ack, seq+1)
				if seq == ^uint64(0)>>1 {
					return nil
				}
			}
		case "cell":
			c, _ := m.Cell(0)
			v, _ := c.Version()
			atomic.StoreInt32(&f.ready, 1)
			var x [2]uint64
			for {
				nv, err := c.Wait(v)
				if err != nil {
					return err
				}
				if _, err := LoadValue(c, &x); err != nil {
					return err
				}
				v = nv
				atomic.StoreUint64(&f.ack, x[0]+1)
				if x[0] == ^uint64(0)>>1 {
					return nil
				}
			}
		}
		return fmt.Errorf("kind %q", args[1])
	})
}

func TestBreak6PingPong(t *testing.T) {
	b6FastExit(t)
	rounds := 600
	if os.Getenv("SHM_TORTURE") != "" {
		rounds = 20000
	}
	for _, kind := range []string{"log", "cell"} {
		t.Run(kind, func(t *testing.T) {
			cfg := Config{Name: testName(t), Size: int(unsafe.Sizeof(b6PingFlags{}))}
			cfg.AddLog(512, 0)
			cfg.AddCell(16)
			m, err := cfg.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			f, _ := View[b6PingFlags](m.Data())
			l, _ := m.Log(0)
			c, _ := m.Cell(0)
			w, err := l.Writer()
			if err != nil {
				t.Fatal(err)
			}
			cw, err := c.Writer()
			if err != nil {
				t.Fatal(err)
			}
			ch := startChild(t, "b6-pong", cfg.Name, kind, "0")
			if !b6Until32(&f.ready, 1, 20*time.Second) {
				t.Fatal("child not ready")
			}
			send := func(i uint64) {
				var x [2]uint64
				x[0] = i
				if kind == "log" {
					w.Append(unsafe.Slice((*byte)(unsafe.Pointer(&x)), 16))
				} else {
					StoreValue(cw, &x)
				}
			}
			var lat []time.Duration
			for i := uint64(0); i < uint64(rounds); i++ {
				// A pause: none, a few microseconds (the child spins), up to
				// a few hundred (it polls or marks), up to 3 ms (asleep).
				switch rand.IntN(4) {
				case 1:
					for t1 := time.Now(); time.Since(t1) < time.Duration(rand.IntN(20))*time.Microsecond; {
					}
				case 2:
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				case 3:
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				}
				t0 := time.Now()
				send(i)
				for atomic.LoadUint64(&f.ack) != i+1 {
					if time.Since(t0) > 5*time.Second {
						t.Fatalf("message %d: no answer in 5s", i)
					}
					if time.Since(t0) > time.Millisecond {
						time.Sleep(20 * time.Microsecond)
					} else {
						runtime.Gosched()
					}
				}
				lat = append(lat, time.Since(t0))
			}
			send(^uint64(0) >> 1)
			ch.wait(20 * time.Second)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			var slow int
			for _, d := range lat {
				if d >= 80*time.Millisecond {
					slow++
				}
			}
			t.Logf("%d rounds: median %v, p99 %v, max %v; %d of 80 ms or more", len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], slow)
			// Every sleep is bounded (100 ms slices), so a lost wake-up costs
			// about a slice; a loaded machine costs that now and then too:
			// more than 0.5% (at least 3) is a pattern, not noise.
			if slow > max(2, len(lat)/200) {
				t.Errorf("%d of %d wake-ups took a sleep slice (80 ms or more): lost wake-ups", slow, len(lat))
			}
		})
	}
}
