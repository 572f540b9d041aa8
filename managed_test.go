package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

func testConfig(name string) Config {
	c := Config{Name: name, Size: 4096}
	c.AddLock(LockMutex, 0, 64)
	c.AddLock(LockRW, 64, 1024)
	c.AddLock(LockMutex, 2048, 2048)
	kinds := []EventKind{EventAuto, EventManual, EventBusyAuto, EventBusyManual, EventFDAuto, EventFDManual}
	if runtime.GOOS != "linux" {
		kinds = kinds[:4] // eventfd events are Linux only
	}
	for _, k := range kinds {
		c.AddEvent(k)
	}
	return c
}

func createManaged(t testing.TB, c Config) *Managed {
	t.Helper()
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func describe(m *Managed) string {
	s := fmt.Sprintf("data %d;", len(m.Data()))
	for i := 0; i < m.NumLocks(); i++ {
		l, _ := m.LockSpec(i)
		s += fmt.Sprintf(" lock %v [%d,+%d);", l.Kind, l.Offset, l.Len)
	}
	for i := 0; i < m.NumEvents(); i++ {
		k, _ := m.EventKind(i)
		s += fmt.Sprintf(" event %v;", k)
	}
	return s
}

func init() {
	// args: name or link path, "name"|"link", description expected: check,
	// then increment the counter in lock 2's range and raise event 0.
	registerChild("managed-open", func(args []string) error {
		var m *Managed
		var err error
		if args[1] == "link" {
			m, err = OpenManagedLink(args[0])
		} else {
			m, err = OpenManaged(args[0])
		}
		if err != nil {
			return err
		}
		defer m.Close()
		if got := describe(m); got != args[2] {
			return fmt.Errorf("opener sees %q, creator declared %q", got, args[2])
		}
		for i := 0; i < 100; i++ {
			g, err := m.Lock(2)
			if err != nil {
				return err
			}
			p := (*uint64)(unsafe.Pointer(&g.Bytes()[0]))
			*p++
			g.Unlock()
		}
		for i := 0; i < m.NumEvents(); i++ {
			ev, err := m.Event(i)
			if err != nil {
				return err
			}
			if err := ev.Set(); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestManagedOpenByNameAndLink(t *testing.T) {
	for _, how := range []string{"name", "link"} {
		t.Run(how, func(t *testing.T) {
			c := testConfig(testName(t))
			arg := c.Name
			if how == "link" {
				c.Link = filepath.Join(t.TempDir(), "managed.link")
				arg = c.Link
			}
			m := createManaged(t, c)
			want := describe(m)
			var cs []*child
			for i := 0; i < 3; i++ {
				cs = append(cs, startChild(t, "managed-open", arg, how, want))
			}
			for _, c := range cs {
				c.wait(30 * time.Second)
			}
			g, err := m.RLock(2)
			if err != nil {
				t.Fatal(err)
			}
			if n := *(*uint64)(unsafe.Pointer(&g.Bytes()[0])); n != 300 {
				t.Fatalf("counter = %d, want 300", n)
			}
			g.Unlock()
			for i := 0; i < m.NumEvents(); i++ {
				ev, err := m.Event(i)
				if err != nil {
					t.Fatal(err)
				}
				if err := ev.WaitTimeout(time.Second); err != nil {
					k, _ := m.EventKind(i)
					t.Fatalf("event %d (%v) not set by the openers: %v", i, k, err)
				}
			}
		})
	}
}

func TestManagedGuards(t *testing.T) {
	m := createManaged(t, testConfig(testName(t)))
	g, err := m.Lock(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Bytes()) != 1024 || &g.Bytes()[0] != &m.Data()[64] {
		t.Fatalf("guard bytes: len %d", len(g.Bytes()))
	}
	if cap(g.Bytes()) != 1024 {
		t.Fatalf("guard slice can grow past its range: cap %d", cap(g.Bytes()))
	}
	if _, ok := m.TryLock(1); ok {
		t.Fatal("TryLock of a held lock succeeded")
	}
	if _, err := m.RLockTimeout(1, 20*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RLock of a write-held lock: %v", err)
	}
	g.Unlock()
	r1, err := m.RLock(1)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := m.RLockTimeout(1, time.Second)
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	r1.Unlock()
	r2.Unlock()
	for _, i := range []int{-1, 3, 1 << 40} {
		if _, err := m.Lock(i); !errors.Is(err, ErrRange) {
			t.Fatalf("Lock(%d): %v, want ErrRange", i, err)
		}
		if _, err := m.Event(i + 3); i != -1 && !errors.Is(err, ErrRange) {
			t.Fatalf("Event(%d): %v, want ErrRange", i+3, err)
		}
	}
	if _, err := m.Mutex(1); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("Mutex(1) of an RW lock: %v", err)
	}
	if _, err := m.RWMutex(1); err != nil {
		t.Fatal(err)
	}
	var zero Guard
	zero.Unlock() // no-op
}

func TestManagedConfigRejected(t *testing.T) {
	cases := []struct {
		name string
		c    Config
	}{
		{"zero size", Config{Size: 0}},
		{"negative size", Config{Size: -1}},
		{"lock beyond data", Config{Size: 100, Locks: []LockSpec{{LockMutex, 90, 20}}}},
		{"lock negative offset", Config{Size: 100, Locks: []LockSpec{{LockMutex, -1, 20}}}},
		{"lock empty", Config{Size: 100, Locks: []LockSpec{{LockMutex, 0, 0}}}},
		{"lock overflow", Config{Size: 100, Locks: []LockSpec{{LockMutex, 50, int(^uint(0) >> 1)}}}},
		{"overlap", Config{Size: 100, Locks: []LockSpec{{LockMutex, 0, 50}, {LockRW, 49, 10}}}},
		{"overlap reversed", Config{Size: 100, Locks: []LockSpec{{LockMutex, 40, 50}, {LockRW, 0, 41}}}},
		{"bad lock kind", Config{Size: 100, Locks: []LockSpec{{9, 0, 10}}}},
		{"bad event kind", Config{Size: 100, Events: []EventKind{0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Name = testName(t)
			m, err := tc.c.Create()
			if err == nil {
				m.Close()
				t.Fatal("accepted")
			}
			if _, err := Open(tc.c.Name); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a rejected config left a segment: %v", err)
			}
		})
	}
	// Adjacent ranges are fine.
	c := Config{Name: testName(t), Size: 100, Locks: []LockSpec{{LockMutex, 0, 50}, {LockRW, 50, 50}}}
	createManaged(t, c)
}

// TestManagedHeaderCorrupt damages each field of a valid header in turn: the
// opener must refuse it with ErrCorrupt (or ErrNotManaged), never panic.
func TestManagedHeaderCorrupt(t *testing.T) {
	m := createManaged(t, testConfig(testName(t)))
	good := append([]byte(nil), m.Segment().Bytes()...)
	ne := binary.NativeEndian
	lockOff, eventOff := headerSize, headerSize+m.NumLocks()*entrySize
	cases := []struct {
		field string
		edit  func(b []byte)
	}{
		{"magic", func(b []byte) { b[0] = 'X' }},
		{"version", func(b []byte) { ne.PutUint32(b[8:], layoutVersion4+1) }}, // 3 and 4 are known
		{"logs in version 3", func(b []byte) { ne.PutUint32(b[68:], 1) }},
		{"byte order", func(b []byte) { ne.PutUint32(b[12:], 0x04030201) }},
		{"word size", func(b []byte) { ne.PutUint32(b[16:], 4) }},
		{"state", func(b []byte) { ne.PutUint32(b[20:], 7) }},
		{"header size", func(b []byte) { ne.PutUint32(b[24:], 1<<30) }},
		{"lock count", func(b []byte) { ne.PutUint32(b[28:], 1<<20) }},
		{"event count", func(b []byte) { ne.PutUint32(b[32:], uint32(m.NumEvents()-1)) }},
		{"checksum", func(b []byte) { b[44] ^= 1 }},
		{"data offset", func(b []byte) { ne.PutUint64(b[48:], 1<<62) }},
		{"data size", func(b []byte) { ne.PutUint64(b[56:], ^uint64(0)) }},
		{"lock kind", func(b []byte) { ne.PutUint32(b[lockOff:], 99) }},
		{"lock offset", func(b []byte) { ne.PutUint64(b[lockOff+8:], ^uint64(0)-10) }},
		{"lock length", func(b []byte) { ne.PutUint64(b[lockOff+16:], 1<<40) }},
		{"lock primitive", func(b []byte) { ne.PutUint64(b[lockOff+24:], 3) }},
		{"lock primitive in data", func(b []byte) { ne.PutUint64(b[lockOff+24:], ne.Uint64(b[48:])) }},
		{"lock overlap", func(b []byte) { ne.PutUint64(b[lockOff+entrySize+8:], 10) }},
		{"primitives overlap", func(b []byte) { ne.PutUint64(b[lockOff+24:], ne.Uint64(b[lockOff+entrySize+24:])+8) }},
		{"event kind", func(b []byte) { ne.PutUint32(b[eventOff:], 0) }},
		{"event primitive", func(b []byte) { ne.PutUint64(b[eventOff+8:], 1<<50) }},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.edit(b)
			if tc.field != "checksum" && tc.field != "state" && tc.field != "magic" {
				// Re-seal the checksum, so that the field's own check is what fails.
				if hl := ne.Uint32(b[24:]); hl >= headerSize && int(hl) <= len(b) {
					ne.PutUint32(b[offChecksum:], checksum(b[:hl]))
				}
			}
			_, err := waitLayout(b, 50*time.Millisecond)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("damaged %s accepted or wrong error: %v", tc.field, err)
			}
		})
	}
	if _, err := waitLayout(good, time.Second); err != nil {
		t.Fatalf("the undamaged copy is refused: %v", err)
	}
}

// FuzzParseLayout: any bytes at all, as a header, give a layout or an
// error, and an accepted layout only points inside the segment.
func FuzzParseLayout(f *testing.F) {
	for _, c := range []Config{
		{Size: 1},
		{Size: 4096, Locks: []LockSpec{{LockMutex, 0, 4096}}},
		{Size: 8192, Locks: []LockSpec{{LockRW, 0, 100}, {LockMutex, 100, 100}}, Events: []EventKind{EventAuto, EventManual, EventBusyAuto, EventBusyManual, EventFDAuto}},
	} {
		l, total := plan(uint64(c.Size), c.Locks, c.Events, c.Queues, nil, nil)
		b := make([]byte, total)
		l.write(b, owner.Self())
		ne := binary.NativeEndian
		ne.PutUint32(b[offState:], stateReady)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("GOSHM\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLayout(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		size := uint64(len(b))
		if l.dataOff+l.dataSize > size {
			t.Fatalf("data beyond segment")
		}
		for _, e := range l.locks {
			if e.prim+primSize(uint32(e.kind), true) > l.dataOff || e.offset+e.size > l.dataSize {
				t.Fatalf("lock entry out of bounds: %+v", e)
			}
		}
		for _, e := range l.events {
			if e.prim+primSize(uint32(e.kind), false) > l.dataOff {
				t.Fatalf("event entry out of bounds: %+v", e)
			}
		}
	})
}

func TestManagedNotManaged(t *testing.T) {
	name := testName(t)
	seg, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	copy(seg.Bytes(), "some other program's data")
	if _, err := OpenManaged(name); !errors.Is(err, ErrNotManaged) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenManaged of a foreign segment: %v", err)
	}
	small := testName(t)
	s2, err := Create(small, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := OpenManaged(small); !errors.Is(err, ErrNotManaged) {
		t.Fatalf("OpenManaged of a 10-byte segment: %v", err)
	}
	old := ReadyTimeout
	ReadyTimeout = 50 * time.Millisecond
	defer func() { ReadyTimeout = old }()
	zero := testName(t)
	s3, err := Create(zero, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if _, err := OpenManaged(zero); !errors.Is(err, ErrNotManaged) {
		t.Fatalf("OpenManaged of an all-zero segment: %v", err)
	}
}

func init() {
	// args: name: start writing a managed header, then wait to be killed.
	registerChild("half-create", func(args []string) error {
		seg, err := Create(args[0], 4096)
		if err != nil {
			return err
		}
		seg.SetOwner(false)
		l, _ := plan(1024, nil, nil, nil, nil, nil)
		b := seg.Bytes()
		atomic.StoreUint32(stateWord(b), stateInit)
		l.write(b, owner.Self())
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return nil
	})
}

func TestManagedCreatorDiedBeforeReady(t *testing.T) {
	name := testName(t)
	c := startChild(t, "half-create", name)
	// held keeps the half-made segment open across the kill: on Windows a
	// mapping dies with its last handle.
	var held *Segment
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if held, err = Open(name); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child did not create the segment")
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer held.Close()
	time.Sleep(50 * time.Millisecond)
	c.kill()
	start := time.Now()
	_, err := OpenManaged(name)
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenManaged of a half-made segment whose creator died: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("took %v to notice the dead creator", el)
	}
	// It can be removed and, once closed everywhere, created again.
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	held.Close()
	createManaged(t, Config{Name: name, Size: 1024})
}

func TestManagedReadOnly(t *testing.T) {
	c := testConfig(testName(t))
	m := createManaged(t, c)
	copy(m.Data(), "hello")
	r, err := OpenManaged(c.Name, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if string(r.Data()[:5]) != "hello" {
		t.Fatal("read-only opener does not see the data")
	}
	if _, err := r.Lock(0); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Lock on a read-only managed segment: %v", err)
	}
	if _, err := r.Event(0); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Event on a read-only managed segment: %v", err)
	}
}

func init() {
	// args: name, event index: wait for it once, count the release.
	registerChild("managed-event-wait", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		ev, err := m.Event(atoi(args[1]))
		if err != nil {
			return err
		}
		counters, err := View[[2]int32](m.Data())
		if err != nil {
			return err
		}
		atomic.AddInt32(&counters[0], 1)
		if err := ev.WaitTimeout(30 * time.Second); err != nil {
			return err
		}
		atomic.AddInt32(&counters[1], 1)
		return nil
	})
}

// TestEventFDProcesses: the eventfd kinds pass the same exactly-once and
// release-all tests as the others, between unrelated processes.
func TestEventFDProcesses(t *testing.T) {
	if reflect.TypeOf(EventFD{}).NumField() == 0 {
		t.Skip("eventfd events are Linux only")
	}
	const k = 3
	for _, kind := range []EventKind{EventFDAuto, EventFDManual} {
		t.Run(kind.String(), func(t *testing.T) {
			c := Config{Name: testName(t), Size: 64, Events: []EventKind{kind}}
			m := createManaged(t, c)
			counters, err := View[[2]int32](m.Data())
			if err != nil {
				t.Fatal(err)
			}
			ev, err := m.Event(0)
			if err != nil {
				t.Fatal(err)
			}
			if fd := ev.(*EventFD).Fd(); fd < 0 {
				t.Fatalf("Fd() = %d", fd)
			}
			var cs []*child
			for i := 0; i < k; i++ {
				cs = append(cs, startChild(t, "managed-event-wait", c.Name, "0"))
			}
			waitCount(t, &counters[0], k, 20*time.Second)
			time.Sleep(100 * time.Millisecond)
			if n := atomic.LoadInt32(&counters[1]); n != 0 {
				t.Fatalf("%d released before Set", n)
			}
			if kind == EventFDAuto {
				for i := int32(1); i <= k; i++ {
					ev.Set()
					waitCount(t, &counters[1], i, 10*time.Second)
					time.Sleep(50 * time.Millisecond)
					if n := atomic.LoadInt32(&counters[1]); n != i {
						t.Fatalf("after %d Sets, %d released", i, n)
					}
				}
			} else {
				ev.Set()
				waitCount(t, &counters[1], k, 10*time.Second)
				ev.Reset()
				if err := ev.WaitTimeout(20 * time.Millisecond); !errors.Is(err, ErrTimeout) {
					t.Fatalf("Wait after Reset: %v", err)
				}
			}
			for _, c := range cs {
				c.wait(10 * time.Second)
			}
		})
	}
}

func TestEventFDCreatorGone(t *testing.T) {
	if reflect.TypeOf(EventFD{}).NumField() == 0 {
		t.Skip("eventfd events are Linux only")
	}
	c := Config{Name: testName(t), Size: 64, Events: []EventKind{EventFDAuto}}
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	m.Segment().SetOwner(false)
	early, err := OpenManaged(c.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	ev, err := early.Event(0)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	// The early opener's descriptor keeps working.
	ev.Set()
	if err := ev.WaitTimeout(time.Second); err != nil {
		t.Fatalf("eventfd after the creator closed: %v", err)
	}
	late, err := OpenManaged(c.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if _, err := late.Event(0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("late opener after the creator closed: %v, want fs.ErrNotExist", err)
	}
}

func TestManagedInspect(t *testing.T) {
	m := createManaged(t, testConfig(testName(t)))
	g, err := m.Lock(0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.RLock(1)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := m.Event(1)
	ev.Set()
	ro, err := OpenManaged(m.Name(), ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if !IsManaged(ro.Segment().Bytes()) {
		t.Fatal("IsManaged false")
	}
	me := Process{PID: os.Getpid(), Alive: true}
	if c := ro.Creator(); c != me {
		t.Fatalf("Creator = %+v, want %+v", c, me)
	}
	s0, _ := ro.LockState(0)
	if s0.Writer != me || s0.OwnerDied {
		t.Fatalf("lock 0: %+v", s0)
	}
	s1, _ := ro.LockState(1)
	if s1.Writer.PID != 0 || len(s1.Readers) != 1 || s1.Readers[0] != me {
		t.Fatalf("lock 1: %+v", s1)
	}
	s2, _ := ro.LockState(2)
	if s2.Writer.PID != 0 || s2.Len != 2048 || s2.Kind != LockMutex {
		t.Fatalf("lock 2: %+v", s2)
	}
	e1, _ := ro.EventState(1)
	e0, _ := ro.EventState(0)
	if !e1.Set || e0.Set || e1.Kind != EventManual {
		t.Fatalf("events: %+v %+v", e0, e1)
	}
	if runtime.GOOS == "linux" {
		e4, _ := ro.EventState(4)
		if e4.Creator != me {
			t.Fatalf("eventfd creator: %+v", e4)
		}
	}
	if _, err := ro.LockState(3); !errors.Is(err, ErrRange) {
		t.Fatalf("LockState(3): %v", err)
	}
	g.Unlock()
	r.Unlock()
}
