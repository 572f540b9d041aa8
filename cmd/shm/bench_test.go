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
		`Processes contending for one lock, \d+ protected increments in all per kind`,
		`(?m)^ +2 processes, Mutex +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +2 processes, raw futex mutex +` + ratio + ` +` + ratio + ` +1.00 +` + ratio + ` *$`,
		`(?m)^ +4 processes, Mutex +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +4 goroutines, sync.Mutex +` + ratio + ` +- +` + ratio + ` +1.00 *$`,
		`Targets \(round trips: the ratio of the medians, then of the means; both must hold\):`,
		`(?m)^  RWMutex Lock\+Unlock, uncontended +` + ratio + ` x sync.RWMutex +\(target <= 1.10\) +(held|MISSED)$`,
		`(?m)^  BusyAutoEvent round trip +` + ratio + ` / ` + ratio + ` x raw spin \(hardware floor\) +\(target <= 1.15\) +(held|MISSED)$`,
		`(?m)^  AutoEvent round trip +` + ratio + ` / ` + ratio + ` x raw spin \(hardware floor\) +\(target <= 1.30\) +(held|MISSED)$`,
		`(?m)^  Mutex hand-off round trip +` + ratio + ` / ` + ratio + ` x raw spin \(hardware floor\) +\(target <= 1.30\) +(held|MISSED)$`,
		`(?m)^  EventFD \(auto\) round trip +` + ratio + ` / ` + ratio + ` x raw eventfd \(blocking read\) +\(target <= 1.20\) +(held|MISSED)$`,
		`(?m)^  Mutex, 4 processes contending +` + ratio + ` x raw futex mutex +\(target <= 1.00\) +(held|MISSED)$`,
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
	wantLogSection(t, r.stdout)
	for _, row := range []string{"raw spin (hardware floor)", "raw futex (kernel floor)", "pipe pair", "Unix socket pair",
		"raw eventfd (blocking read)", "AutoEvent spin0", "ManualEvent spin0", "AutoEvent", "ManualEvent", "BusyAutoEvent",
		"BusyManualEvent", "EventFD (auto)", "Mutex hand-off", "Mutex hand-off spin0"} {
		// median, mean, p99, then x futex, x spin, x pipe, x unix, mean x spin
		re := regexp.MustCompile(`(?m)^ +` + regexp.QuoteMeta(row) + ` +` + dur + ` +` + dur + ` +` + dur + `( +` + ratio + `){5}`)
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

// wantLogSection checks the Log and Cell section of shm bench's output:
// every row with its figures, each target said to hold or not, and the
// count of those that held.
func wantLogSection(t *testing.T, out string) {
	t.Helper()
	dur := `[0-9.]+(ns|µs|ms)`
	ratio := `[0-9.]+`
	held := ` +(yes|NO) *$`
	for _, want := range []string{
		`Log and Cell \(64 KiB rings\), 3 rounds`,
		`One-way latency, 64 bytes: half a round trip through two logs .* raw spin round trip ` + dur + ` \(CPUs (close together|far apart)\)`,
		`(?m)^ +raw spin \(hardware floor\) +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +Queue \(for comparison\) +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` +` + ratio + ` *$`,
		`(?m)^ +Log +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` +` + ratio + ` +x spin <= 1.3` + held,
		`(?m)^ +Log spin0 \(reader asleep\) +` + dur + ` +` + dur + ` +` + dur + ` +` + ratio + ` +` + ratio + ` +x futex <= 1.2` + held,
		`Throughput, 64-byte messages from one process, 10000 per run`,
		`(?m)^ +Queue Send, 1 consumer +` + ratio + ` +` + ratio + ` +1.00 +- +` + ratio + ` +- +- *$`,
		`(?m)^ +Log Append, 1 reader +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + ` +- +` + ratio + `%.* +x Queue >= 0.8` + held,
		`(?m)^ +Log Append, 8 readers +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + ` +` + ratio + `%.* +x 1 reader >= 0.9` + held,
		`(?m)^ +copy\(\) in, 64 B +` + ratio + ` +- *$`,
		`(?m)^ +Cell.Store, 64 B +` + ratio + ` +` + ratio + ` +x copy <= 2.0` + held,
		`(?m)^ +copy\(\) out, 64 B +` + ratio + ` +- *$`,
		`(?m)^ +Cell.Load, 64 B +` + ratio + ` +` + ratio + ` +x copy <= 2.0` + held,
		`(?m)^Log and Cell targets held: [0-6] of 6$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestBenchLogOnly runs shm bench -log-only: the Log and Cell section, and
// nothing else.
func TestBenchLogOnly(t *testing.T) {
	r := shmCmd(t, "bench", "-quick", "-log-only")
	r.want(t, 0)
	wantLogSection(t, r.stdout)
	for _, other := range []string{"Uncontended", "Round trip between two processes", "Queue (64 KiB rings", "1 MiB messages"} {
		if strings.Contains(r.stdout, other) {
			t.Errorf("-log-only printed %q", other)
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

// TestBenchScale runs a short shm bench -scale (8 processes, 300 ms per
// scenario): the scale section, every row with its figures and each target
// said to hold or not, and nothing else.
func TestBenchScale(t *testing.T) {
	r := shmCmd(t, "bench", "-quick", "-scale", "-scale-procs", "8", "-scale-time", "300ms")
	r.want(t, 0)
	dur := `[0-9.]+(ns|µs|ms|s)`
	ratio := `[0-9.]+`
	held := ` +(held|missed)$`
	for _, want := range []string{
		`shm bench: \d+ CPUs`,
		`Scale: 8 processes on one lock or event, 300ms per timed scenario`,
		`(?m)^Mutex, 2 processes \(baseline\): acquisitions/s +` + ratio + ` [kM]?/s *$`,
		`(?m)^Mutex, 8 processes: acquisitions/s +` + ratio + ` [kM]?/s *$`,
		`(?m)^  throughput x 2 processes +` + ratio + ` +>= 0.50` + held,
		`(?m)^  fewest acquisitions / mean +` + ratio + ` \(\d+ / \d+\) +>= 0.25` + held,
		`(?m)^  shared counter == sum of the counts +\d+ +equal +held$`,
		`(?m)^RWMutex, 8 readers, 2 writers *$`,
		`(?m)^  writer wait p50 +` + dur + ` *$`,
		`(?m)^  writer wait p99 +` + dur + ` +<= 50.0ms` + held,
		`(?m)^  writer wait max +` + dur + ` *$`,
		`(?m)^  writes, each writer +\d+, \d+ +> 0 each +held$`,
		`(?m)^  reads per reader: fewest / mean +\d+ / \d+ \(` + ratio + `\) +> 0 each +held$`,
		`(?m)^  reader wait max +` + dur + ` *$`,
		`(?m)^  holders that found a writer inside +0 +0 +held$`,
		`(?m)^ManualEvent, 8 waiters asleep, one Set, 3 rounds *$`,
		`(?m)^  time to the first waiter's return \(median\) +` + dur + ` *$`,
		`(?m)^  time to the last waiter's return \(median\) +` + dur + ` *$`,
		`(?m)^  rounds that released all 8 +3 of 3 +every round +held$`,
		`(?m)^AutoEvent, 8 waiters, 1000 Sets *$`,
		`(?m)^  releases counted by the waiters +1000 +exactly 1000 +held$`,
		`(?m)^  releases per waiter: fewest / mean +\d+ / ` + ratio + ` *$`,
		`(?m)^Scale targets held: [0-9] of [0-9]$`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, other := range []string{"Uncontended", "Round trip between two processes", "Queue (64 KiB rings", "Log and Cell"} {
		if strings.Contains(r.stdout, other) {
			t.Errorf("-scale printed %q", other)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "NaN") || strings.Contains(r.stdout, "Inf") {
		t.Errorf("a figure is not a number:\n%s", r.stdout)
	}
	shmCmd(t, "bench", "-scale", "-scale-procs", "1").want(t, 2)
	shmCmd(t, "bench", "-scale", "-scale-time", "1ms").want(t, 2)
}
