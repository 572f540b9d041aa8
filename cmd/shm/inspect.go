package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-shm/shm"
)

func init() {
	register(&command{
		name:    "inspect",
		args:    "[-n BYTES] NAME",
		summary: "show a segment's size, mode, owner and first bytes",
		help: `
Opens the segment read-only (it is never changed) and prints its size,
permissions, owner, whether it is a managed segment of this library, and
its first bytes in hex. NAME may start with '/', as shm_open users write it.`,
		flags: func(fs *flag.FlagSet) {
			fs.Int("n", 64, "how many of the first bytes to show in hex")
		},
		run: runInspect,
	})
}

func runInspect(e *env, args []string) (err error) {
	// inspect reads segments of any user (read-only, it changes nothing),
	// and one of them may be shrunk while it reads: a fault is an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = fmt.Errorf("the segment shrank while it was read (%v)", r)
		}
	}()
	if len(args) != 1 {
		return usageErrorf("inspect takes one segment name")
	}
	n := e.flags.Lookup("n").Value.(flag.Getter).Get().(int)
	if n < 0 {
		return usageErrorf("-n must not be negative")
	}
	seg, err := shm.Open(args[0], shm.ReadOnly(), shm.TrustAnyOwner())
	if err != nil {
		return err
	}
	defer seg.Close()
	b := seg.Bytes()
	info, serr := statSegment(seg.Name())
	w := e.stdout
	fmt.Fprintf(w, "name:    %s\n", show(seg.Name()))
	fmt.Fprintf(w, "size:    %d bytes\n", seg.Size())
	if serr == nil {
		fmt.Fprintf(w, "mode:    %v\n", info.mode)
		fmt.Fprintf(w, "owner:   uid %s\n", uidString(info.uid))
	} else if errors.Is(serr, errors.ErrUnsupported) {
		fmt.Fprintf(w, "mode:    unknown on this system\n")
		fmt.Fprintf(w, "owner:   unknown on this system\n")
	} else {
		return serr
	}
	managed := "no"
	if isManaged(b) {
		managed = "yes"
	}
	fmt.Fprintf(w, "managed: %s\n", managed)
	if isManaged(b) {
		inspectManaged(w, seg.Name(), b)
	}
	show := min(n, len(b))
	fmt.Fprintf(w, "first %s bytes:\n%s", strconv.Itoa(show), hex.Dump(b[:show]))
	return nil
}

// inspectManaged prints what a managed segment's header says, and the state
// of each of its locks and events.
func inspectManaged(w io.Writer, name string, b []byte) {
	fmt.Fprintf(w, "creator: %s\n", creatorString(shm.Creator(b)))
	shm.ReadyTimeout = 200 * time.Millisecond
	m, err := shm.OpenManaged(name, shm.ReadOnly(), shm.TrustAnyOwner())
	if err != nil {
		fmt.Fprintf(w, "header:  %v\n", err)
		return
	}
	defer m.Close()
	fmt.Fprintf(w, "data:    %d bytes, %d lock(s), %d event(s), %d queue(s)", len(m.Data()), m.NumLocks(), m.NumEvents(), m.NumQueues())
	if m.NumLogs()+m.NumCells() > 0 {
		fmt.Fprintf(w, ", %d log(s), %d cell(s)", m.NumLogs(), m.NumCells())
	}
	fmt.Fprintln(w)
	for i := 0; i < m.NumLocks(); i++ {
		st, err := m.LockState(i)
		if err != nil {
			fmt.Fprintf(w, "lock %d:  %v\n", i, err)
			continue
		}
		fmt.Fprintf(w, "lock %d:  %v [%d, %d): %s\n", i, st.Kind, st.Offset, st.Offset+st.Len, lockStateString(st))
	}
	for i := 0; i < m.NumEvents(); i++ {
		st, err := m.EventState(i)
		if err != nil {
			fmt.Fprintf(w, "event %d: %v\n", i, err)
			continue
		}
		fmt.Fprintf(w, "event %d: %v: %s\n", i, st.Kind, eventStateString(st))
	}
	for i := 0; i < m.NumQueues(); i++ {
		st, err := m.QueueStats(i)
		if err != nil {
			fmt.Fprintf(w, "queue %d: %v\n", i, err)
			continue
		}
		fmt.Fprintf(w, "queue %d: %s\n", i, queueStatsString(st))
	}
	for i := 0; i < m.NumLogs(); i++ {
		st, err := m.LogStats(i)
		if err != nil {
			fmt.Fprintf(w, "log %d:   %v\n", i, err)
			continue
		}
		fmt.Fprintf(w, "log %d:   %s\n", i, logStatsString(st))
		for _, r := range st.Readers {
			fmt.Fprintf(w, "  reader %s: %d message(s) behind (%d bytes), %d lost\n", processString(r.Process), r.Behind, r.Lag, r.Lost)
		}
	}
	for i := 0; i < m.NumCells(); i++ {
		st, err := m.CellStats(i)
		if err != nil {
			fmt.Fprintf(w, "cell %d:  %v\n", i, err)
			continue
		}
		fmt.Fprintf(w, "cell %d:  %d bytes; version %d; %s\n", i, st.Size, st.Version, writerString(st.Writer))
	}
}

// logStatsString describes a broadcast log: its size, how much was
// appended, where its positions are, and who writes it.
func logStatsString(st shm.LogStats) string {
	s := fmt.Sprintf("%d bytes (messages up to %d); %d message(s) appended; head %d, tail %d",
		st.Capacity, st.MaxMessage, st.Messages, st.Head, st.Tail)
	if st.Tail < st.Head || st.Tail-st.Head > uint64(st.Capacity) {
		s += " (DAMAGED: tail and head do not agree)"
	}
	s += "; " + writerString(st.Writer)
	if st.WriterLost > 0 {
		s += fmt.Sprintf("; %d message(s) lost with dead writers", st.WriterLost)
	}
	s += fmt.Sprintf("; %d registered reader(s)", len(st.Readers))
	return s
}

func writerString(p shm.Process) string {
	if p.PID == 0 {
		return "no writer"
	}
	return "writer " + processString(p)
}

// queueStatsString describes a queue: its size, what is in it, where its
// positions are, and who uses it.
func queueStatsString(st shm.QueueStats) string {
	s := fmt.Sprintf("%d bytes (messages up to %d); %d message(s), %d byte(s) in flight; head %d, tail %d",
		st.Capacity, st.MaxMessage, st.Messages, st.InFlight, st.Head, st.Tail)
	if st.Tail < st.Head || st.Tail-st.Head > uint64(st.Capacity) {
		s += " (DAMAGED: tail and head do not agree)"
	}
	if st.Consumer.PID != 0 {
		s += "; consumer " + processString(st.Consumer)
	} else {
		s += "; no consumer"
	}
	if len(st.Producers) > 0 {
		var ps []string
		for _, p := range st.Producers {
			ps = append(ps, processString(p))
		}
		s += "; producing: " + strings.Join(ps, ", ")
	}
	if st.Skipped > 0 {
		s += fmt.Sprintf("; %d record(s) of dead producers skipped", st.Skipped)
	}
	if st.Aborted > 0 {
		s += fmt.Sprintf("; %d aborted", st.Aborted)
	}
	return s
}

func processString(p shm.Process) string {
	if p.Alive {
		return fmt.Sprintf("pid %d", p.PID)
	}
	return fmt.Sprintf("pid %d (DEAD)", p.PID)
}

func lockStateString(st shm.LockState) string {
	var parts []string
	if st.Writer.PID != 0 {
		what := "held by "
		if st.Kind == shm.LockRW {
			what = "write-locked by "
		}
		parts = append(parts, what+processString(st.Writer))
	}
	if len(st.Readers) > 0 {
		var rs []string
		for _, r := range st.Readers {
			rs = append(rs, processString(r))
		}
		parts = append(parts, "read-locked by "+strings.Join(rs, ", "))
	}
	if len(parts) == 0 {
		parts = append(parts, "free")
	}
	if st.Waiters {
		parts = append(parts, "waiters")
	}
	if st.OwnerDied {
		parts = append(parts, "a holder died (not yet marked consistent)")
	}
	return strings.Join(parts, "; ")
}

func eventStateString(st shm.EventState) string {
	switch st.Kind {
	case shm.EventFDAuto, shm.EventFDManual:
		return "served by " + processString(st.Creator)
	}
	s := "clear"
	if st.Set {
		s = "set"
	}
	if st.Waiters > 0 {
		s += fmt.Sprintf("; %d waiter(s)", st.Waiters)
	}
	return s
}
