package futex

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// Wakers that die inside Wake. A death leaves behind only what the waker had
// stored in the shared bucket word by then, so a child process that runs part
// of a Wake and exits (or is killed while it wakes in a loop) is that death.

const (
	childEnv     = "FUTEX_TEST_CHILD"
	childArgsEnv = "FUTEX_TEST_ARGS"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

func runChild(role string) int {
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(childArgsEnv)), &args); err != nil || len(args) < 1 {
		fmt.Fprintf(os.Stderr, "child %s: bad args %q\n", role, os.Getenv(childArgsEnv))
		return 3
	}
	w, err := openMapped(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		return 1
	}
	switch role {
	case "half-wake":
		// Change the word, then die in the middle of the Wake that should
		// follow: after the generation bump, before any event is set.
		atomic.StoreUint32(w, 1)
		r := lookup(w)
		_, bw := r.bucket(w)
		if _, ok := bump(bw); !ok {
			fmt.Fprintln(os.Stderr, "child half-wake: no sleeper registered")
			return 1
		}
		os.Exit(0)
	case "wake-loop":
		// Wake for ever: the parent kills us at a random moment.
		fmt.Println("waking")
		for {
			Wake(w, All)
		}
	}
	fmt.Fprintf(os.Stderr, "child: unknown role %q\n", role)
	return 3
}

// child starts role in a new process of this test binary.
func child(t *testing.T, role string, args ...string) *exec.Cmd {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childArgsEnv+"="+string(a))
	cmd.Stderr = os.Stderr
	return cmd
}

// sleeper sleeps on w in Wait(Forever) until *w != 0, then reports.
func sleeper(w *uint32) <-chan error {
	done := make(chan error, 1)
	go func() {
		for atomic.LoadUint32(w) == 0 {
			if err := Wait(w, 0, Forever); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// waitAsleep waits until some sleeper is registered in w's bucket, then a
// little longer, so that it is asleep in the kernel.
func waitAsleep(t *testing.T, w *uint32) {
	t.Helper()
	_, bw := lookup(w).bucket(w)
	deadline := time.Now().Add(10 * time.Second)
	for uint32(atomic.LoadUint64(bw)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sleeper never registered")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
}

// released fails the test unless done reports within d.
func released(t *testing.T, done <-chan error, d time.Duration, what string) bool {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: Wait: %v", what, err)
		}
		return true
	case <-time.After(d):
		t.Errorf("%s: the sleeper was not released within %v", what, d)
		return false
	}
}

// TestWindowsWakerDiesAfterBump: a waker advanced the bucket's generation and
// died before setting the event its sleeper sleeps on; a later Wake of the
// same word must release that sleeper, promptly.
func TestWindowsWakerDiesAfterBump(t *testing.T) {
	setBackstop(t, time.Hour) // the fix under test, not the backstop, must release it
	for trial := range 3 {
		w, name := mappedNamed(t)
		done := sleeper(w)
		waitAsleep(t, w)
		if out, err := child(t, "half-wake", name).Output(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		start := time.Now()
		Wake(w, All) // the later wake (a later Set of the same event)
		if !released(t, done, 5*time.Second, fmt.Sprintf("trial %d", trial)) {
			return
		}
		t.Logf("trial %d: released %v after the later Wake", trial, time.Since(start))
	}
}

// TestWindowsWakerKilledInWake kills a child at a random moment while it
// wakes a bucket in a loop, then wakes the sleeper's word once: whatever
// point of Wake the child died at, the sleeper must be released.
func TestWindowsWakerKilledInWake(t *testing.T) {
	setBackstop(t, time.Hour)
	trials := 12
	if testing.Short() {
		trials = 4
	}
	stuck := 0
	for trial := range trials {
		w, name := mappedNamed(t)
		done := sleeper(w)
		waitAsleep(t, w)
		cmd := child(t, "wake-loop", name)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var line [7]byte
		if _, err := out.Read(line[:]); err != nil { // "waking": it is in its loop
			t.Fatalf("child: %v", err)
		}
		time.Sleep(time.Duration(20+rand.IntN(200)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		atomic.StoreUint32(w, 1)
		Wake(w, All)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			stuck++
			t.Logf("trial %d: sleeper not released within 5 s", trial)
		}
	}
	if stuck > 0 {
		t.Fatalf("%d of %d sleepers stranded by a waker killed inside Wake", stuck, trials)
	}
}

// setBackstop sets the backstop for the rest of the test.
func setBackstop(t *testing.T, d time.Duration) {
	old := backstop.Swap(int64(d))
	t.Cleanup(func() { backstop.Store(old) })
}
