package shm

import (
	"context"
	"testing"
	"time"
)

// TestNoAllocsEventFD: the eventfd events' Set, Reset and Waits (on a set
// event: no other process is needed) allocate nothing either.
func TestNoAllocsEventFD(t *testing.T) {
	c := Config{Name: testName(t), Size: 64, Events: []EventKind{EventFDAuto, EventFDManual}}
	m := createManaged(t, c)
	auto, err := m.Event(0)
	if err != nil {
		t.Fatal(err)
	}
	manual, err := m.Event(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"auto Set+Wait", func() { auto.Set(); auto.Wait() }},
		{"auto Set+WaitTimeout", func() { auto.Set(); auto.WaitTimeout(time.Second) }},
		{"auto Set+WaitContext", func() { auto.Set(); auto.WaitContext(ctx) }},
		{"auto Set+Reset", func() { auto.Set(); auto.Reset() }},
		{"manual Set+Wait+Reset", func() { manual.Set(); manual.Wait(); manual.Reset() }},
		{"auto WaitTimeout(0) unset", func() { auto.WaitTimeout(0) }},
	} {
		assertNoAllocs(t, "EventFD "+tc.name, tc.f)
	}
}
