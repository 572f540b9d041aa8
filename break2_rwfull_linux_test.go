//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestBreak2RWFullTableDeadFiller (regression guard): one process holds
// 255 read locks in each of the 256 slots (as 256 reading processes would
// hold them all); a reader of another process waits (TryRLock fails, a
// timed RLock times out); once that process is killed, a reader reclaims
// its slots and gets in within a few liveness slices, and a writer too.
func TestBreak2RWFullTableDeadFiller(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 3*leakPage)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	ff, _ := View[fillFlags](seg.Bytes()[fillFlagsOff:])
	rw, _ := View[RWMutex](seg.Bytes()[leakRWOff:])
	fill := startChild(t, "brk2-fill", name, strconv.Itoa(leakRWOff), strconv.Itoa(256*255))
	deadline := time.Now().Add(30 * time.Second)
	for atomic.LoadInt32(&ff.filled) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("filler never filled\n%s", fill.output())
		}
		time.Sleep(time.Millisecond)
	}
	if rw.TryRLock() {
		t.Fatal("TryRLock got a slot in a full table")
	}
	if err := rw.RLockTimeout(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RLockTimeout in a full table of a live process: %v, want a timeout", err)
	}
	fill.kill()
	start := time.Now()
	if err := rw.RLockTimeout(2 * time.Second); err != nil {
		t.Fatalf("RLockTimeout after the filler died: %v", err)
	}
	t.Logf("reader in %v after the filler's death", time.Since(start))
	rw.RUnlock()
	if err := rw.LockTimeout(2 * time.Second); err != nil {
		t.Fatalf("LockTimeout after the filler died: %v", err)
	}
	rw.Unlock()
}
