//go:build linux

package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestBenchQuick runs a short shm bench as a user would and checks that
// every table and row is there, with figures, and that nothing is left in
// /dev/shm.
func TestBenchQuick(t *testing.T) {
	r := shmCmd(t, "bench", "-quick")
	r.want(t, 0)
	dur := `[0-9.]+(ns|µs|ms)`
	ratio := `[0-9.]+`
	for _, want := range []string{
		`shm bench: \d+ CPUs`,
		`Mutex Lock\+Unlock +` + ratio + ` +` + ratio + ` +` + ratio,
		`RWMutex RLock\+RUnlock +` + ratio + ` +` + ratio,
		`Mutex TryLock\+Unlock`,
		`AutoEvent Set\+Reset`,
		`Round trip between two processes, 2000 per kind`,
		`pinned to CPU 0`,
		`Two processes contending for one Mutex, \d+ increments each: ` + ratio + ` ns per protected increment`,
		`AutoEvent.Wait +` + dur + ` CPU`,
		`BusyAutoEvent.Wait +` + dur + ` CPU`,
		`One-way latency, 64 bytes: .* raw spin round trip ` + dur,
		`(?m)^ +Queue +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +Queue spin0 +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +raw ring \(hardware floor\) +` + ratio + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +Queue, Release each +` + ratio + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +Queue, Release every 32 +` + ratio + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +64 B +\d+ +` + dur + ` +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` *$`,
		`(?m)^ +1 MiB +\d+ +` + dur + ` +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` *$`,
		`1 MiB messages, Send .*: ` + ratio + ` GB/s; copy\(\) .*: ` + ratio + ` GB/s \(rate x ` + ratio + `\)`,
		`(?m)^ +Producer.Claim\+Commit, Receive\+Release +` + ratio + ` +` + ratio + ` +` + ratio + ` *$`,
		`4 producer processes ` + ratio + ` M msgs/s in all; 1 producer process ` + ratio + ` M msgs/s \(rate x ` + ratio + `\)`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, row := range []string{"raw spin (hardware floor)", "raw futex (kernel floor)", "pipe pair", "Unix socket pair",
		"AutoEvent spin0", "ManualEvent spin0", "AutoEvent", "ManualEvent", "BusyAutoEvent", "BusyManualEvent",
		"EventFD (auto)", "Mutex hand-off", "Mutex hand-off spin0"} {
		re := regexp.MustCompile(`(?m)^ +` + regexp.QuoteMeta(row) + ` +` + dur + ` +` + dur + `( +` + ratio + `){4}`)
		if n := len(re.FindAllString(r.stdout, -1)); n != 2 {
			t.Errorf("round-trip row %q appears %d times, want 2 (two CPUs, one CPU)", row, n)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "NaN") || strings.Contains(r.stdout, "Inf") {
		t.Errorf("a ratio is not a number:\n%s", r.stdout)
	}
}

func TestBenchUsage(t *testing.T) {
	shmCmd(t, "bench", "extra").want(t, 2)
	shmCmd(t, "bench", "-trips", "5").want(t, 2)
	shmCmd(t, "bench", "-queue-scale", "0").want(t, 2)
}
