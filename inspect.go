package shm

import (
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/go-shm/shm/internal/owner"
)

// IsManaged reports whether b, the start of a segment, begins with a managed
// segment's magic number. It says nothing of whether the rest is valid: use
// OpenManaged for that.
func IsManaged(b []byte) bool { return hasMagic(b) }

// Process identifies a process that holds a lock or created a segment.
type Process struct {
	PID   int  // its process ID (0: none; -1: a PID too large to record)
	Alive bool // whether it is still running (checked now)
}

// String describes p for people: "pid 123 (alive)", "pid 123 (dead)", or
// "none".
func (p Process) String() string {
	switch {
	case p.PID == 0:
		return "none"
	case p.Alive:
		return "pid " + strconv.Itoa(p.PID) + " (alive)"
	}
	return "pid " + strconv.Itoa(p.PID) + " (dead)"
}

// holder describes the process named by token t, found in the word at addr.
func holder(addr unsafe.Pointer, t owner.Token) Process {
	if t == 0 {
		return Process{}
	}
	pid := t.PID()
	if pid == 0 {
		pid = -1 // a PID too large for a token (only on Windows)
	}
	return Process{PID: pid, Alive: owner.Alive(addr, t)}
}

// LockState is a snapshot of a lock of a managed segment, for diagnostics
// (shm inspect). It may be out of date as soon as it is taken.
type LockState struct {
	LockSpec
	Writer    Process   // the holder of a Mutex, or the writer of an RWMutex
	Readers   []Process // processes holding read locks on an RWMutex, each once
	Waiters   bool      // some process may be asleep waiting
	OwnerDied bool      // a holder died and no one has called MarkConsistent
}

// LockState returns a snapshot of lock i. It reads the lock without taking
// it, so it works on a segment opened with ReadOnly too.
func (m *Managed) LockState(i int) (st LockState, err error) {
	if i < 0 || i >= len(m.l.locks) {
		return LockState{}, m.rangeErr("lock", i, len(m.l.locks))
	}
	if !m.use() {
		return LockState{}, m.closedErr(lockOp("lock state", i))
	}
	defer m.done()
	defer func() {
		if err != nil {
			st, err = LockState{}, &Error{Op: lockOp("lock state", i), Name: m.seg.name, Err: err}
		}
	}()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	e := m.l.locks[i]
	st = LockState{LockSpec: LockSpec{Kind: e.kind, Offset: int(e.offset), Len: int(e.size)}}
	var mu *Mutex
	if e.kind == LockMutex {
		mu = (*Mutex)(m.prim(e.prim))
	} else {
		rw := (*RWMutex)(m.prim(e.prim))
		mu = &rw.w
		for j := range rw.slots {
			v := atomic.LoadUint64(&rw.slots[j])
			if v&rCountMask == 0 {
				continue
			}
			seen := false // a process with more than 255 read locks holds several slots
			for k := 0; k < j && !seen; k++ {
				u := atomic.LoadUint64(&rw.slots[k])
				seen = u&rCountMask != 0 && slotToken(u) == slotToken(v)
			}
			if !seen {
				st.Readers = append(st.Readers, holder(unsafe.Pointer(&rw.slots[j]), slotToken(v)))
			}
		}
	}
	w := atomic.LoadUint64(&mu.state)
	if w&mHeld != 0 {
		st.Writer = holder(unsafe.Pointer(&mu.state), tokenOf(w))
	}
	st.Waiters = w&(mWaiters|mReaders) != 0
	st.OwnerDied = w&mInconsistent != 0
	return st, nil
}

// EventState is a snapshot of an event of a managed segment.
type EventState struct {
	Kind    EventKind
	Set     bool    // whether it is set (not known for eventfd events)
	Waiters int     // registered sleepers (kernel events only)
	Creator Process // for eventfd events: the process that serves it
}

// EventState returns a snapshot of event i, without changing it.
func (m *Managed) EventState(i int) (st EventState, err error) {
	if i < 0 || i >= len(m.l.events) {
		return EventState{}, m.rangeErr("event", i, len(m.l.events))
	}
	op := "event state " + strconv.Itoa(i)
	if !m.use() {
		return EventState{}, m.closedErr(op)
	}
	defer m.done()
	defer func() {
		if err != nil {
			st, err = EventState{}, &Error{Op: op, Name: m.seg.name, Err: err}
		}
	}()
	defer catchFault(&err, debug.SetPanicOnFault(true))
	e := m.l.events[i]
	st = EventState{Kind: e.kind}
	switch e.kind {
	case EventAuto:
		v := atomic.LoadUint32((*uint32)(m.prim(e.prim)))
		st.Set, st.Waiters = v&evSet != 0, int(v/evWaiter)
	case EventManual:
		ev := (*ManualEvent)(m.prim(e.prim))
		st.Set, st.Waiters = ev.IsSet(), int(atomic.LoadUint32(&ev.waiters))
	case EventBusyAuto, EventBusyManual:
		st.Set = atomic.LoadUint32((*uint32)(m.prim(e.prim)))&evSet != 0
	case EventFDAuto, EventFDManual:
		p := unsafe.Slice((*byte)(m.prim(e.prim+efdOffCreator)), 8)
		st.Creator = holder(unsafe.Pointer(&p[0]), getToken(p))
	}
	return st, nil
}

// Creator returns the process that created the segment (the zero Process
// after Close).
func (m *Managed) Creator() Process {
	if !m.use() {
		return Process{}
	}
	defer m.done()
	return holder(unsafe.Pointer(&m.seg.data[offCreator]), m.l.creator)
}

// Creator returns the process recorded as the creator in the header at the
// start of b, a managed segment, even one whose creator never finished
// writing it; ok is false if b does not start with a managed header.
func Creator(b []byte) (p Process, ok bool) {
	// Guarded: b may be a mapping that another process shrinks meanwhile.
	err := guarded(func() error {
		if hasMagic(b) {
			p, ok = holder(unsafe.Pointer(&b[offCreator]), headerCreator(b)), true
		}
		return nil
	})
	if err != nil {
		return Process{}, false
	}
	return p, ok
}
