// Package proc identifies processes in a way that survives PID reuse: a
// process is named by its PID together with a 32-bit tag derived from its
// start time. A lock word stores both; a waiter that suspects the owner is
// gone asks Alive, which says false only when it is sure the process that
// wrote the word has exited (no such PID, a zombie, or the PID now belongs
// to a process that started at another time).
package proc

import "sync"

// ID names one process for its whole life.
type ID struct {
	PID   uint32 // the operating system's process id (on Windows, divided by 4)
	Start uint32 // a 24-bit tag of the process's start time, never 0
}

var self struct {
	once sync.Once
	id   ID
}

// Self returns the calling process's ID. The first call reads it from the
// system; later calls are a load.
func Self() ID {
	self.once.Do(func() { self.id = selfID() })
	return self.id
}

// TagBits is the width of a start tag: narrow enough that a tag and a PID
// fit in the reader slots of shm.RWMutex with a count beside them. Two
// processes that had the same PID are told apart unless their start times
// agree in these bits (a chance of one in 16 million).
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

// Alive reports whether the process id names is still running. It returns
// true when it cannot tell (for example when /proc hides other users'
// processes): a live owner's lock is never taken away.
func Alive(id ID) bool {
	if id.PID == 0 {
		return false
	}
	if id == Self() {
		return true
	}
	return alive(id)
}
