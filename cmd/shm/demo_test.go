package main

import (
	"regexp"
	"testing"
)

// TestDemo runs the demo as a user would: several worker processes of the
// real binary, a count that must come out exact, and a timed round trip.
func TestDemo(t *testing.T) {
	r := shmCmd(t, "demo", "-workers", "3", "-count", "20000", "-rounds", "2000", "-messages", "30000")
	r.want(t, 0)
	name := regexp.MustCompile(`segment "([^"]+)"`).FindStringSubmatch(r.stdout)
	if name == nil {
		t.Fatalf("no segment name in the output:\n%s", r.stdout)
	}
	for _, want := range []string{
		`final count 60000 \(expected 60000\): OK`,
		`wall time \S+`,
		`event round trip between two processes \(2000 rounds, auto-reset event\): median \S+, p99 \S+`,
		`queue: 90000 messages received and checked \(expected 90000\) in \S+, \d+ messages/s: OK`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !gone(name[1]) {
		t.Errorf("the demo left its segment %s behind", name[1])
	}
}

func TestDemoUsage(t *testing.T) {
	shmCmd(t, "demo", "-workers", "0").want(t, 2)
	shmCmd(t, "demo", "extra").want(t, 2)
	shmCmd(t, "demo", "-messages", "-1").want(t, 2)
}
