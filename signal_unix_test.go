//go:build unix

package shm

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestTimeoutSurvivesSignals: signals that interrupt a waiter's sleep
// (EINTR) neither end the wait early nor restart its full timeout.
func TestTimeoutSurvivesSignals(t *testing.T) {
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				syscall.Kill(os.Getpid(), syscall.SIGUSR1)
			}
		}
	}()
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-sigs:
			}
		}
	}()
	old := SetSpin(0)
	defer SetSpin(old)
	var mu Mutex
	mu.Lock()
	var ev AutoEvent
	for _, w := range []struct {
		name string
		wait func(time.Duration) error
	}{
		{"Mutex.LockTimeout", mu.LockTimeout},
		{"AutoEvent.WaitTimeout", ev.WaitTimeout},
	} {
		const d = 150 * time.Millisecond
		start := time.Now()
		err := w.wait(d)
		el := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("%s under signals: %v, want ErrTimeout", w.name, err)
		}
		if el < d || el > d+500*time.Millisecond {
			t.Fatalf("%s(%v) under a signal every 2ms returned after %v", w.name, d, el)
		}
	}
}
