// Package proc identifies processes by PID where the kernel keeps no
// better record (Windows, macOS, FreeBSD; Linux uses the liveness locks of
// internal/owner instead): a process is named by its PID together with a
// 24-bit tag derived from its start time, so that a reused PID is not taken
// for the process that had it. A waiter that suspects an owner is gone asks
// Alive, which says false only when the system says for sure that the
// process has exited (no such PID, a zombie, or the PID now belongs to a
// process that started at another time), and true whenever it cannot tell
// (a process hidden from the caller, say).
package proc

// ID names one process for its whole life.
type ID struct {
	PID   uint32 // the operating system's process id (on Windows, divided by 4)
	Start uint32 // a 24-bit tag of the process's start time, never 0
}

// OSPID returns the process id as the operating system numbers it: PID
// times 4 on Windows, PID elsewhere.
func (id ID) OSPID() int { return int(id.PID) * pidUnit }

// PIDOf is the PID field of an ID for the operating system's process id
// pid (the inverse of OSPID).
func PIDOf(pid uint64) uint32 { return uint32(pid / pidUnit) }

// TagBits is the width of a start tag (it lives in an owner token beside
// the PID, see internal/owner). Two processes that had the same PID are told
// apart unless their start times agree in these bits (a chance of one in 16
// million).
const TagBits = 24

// tag folds a start time into TagBits bits, never 0 (0 means "no owner" in
// the words that store it).
func tag(start uint64) uint32 {
	t := (uint32(start) ^ uint32(start>>32) ^ uint32(start>>TagBits)) & (1<<TagBits - 1)
	if t == 0 {
		t = 1
	}
	return t
}
