// Package proc identifies processes in a way that survives PID reuse: a
// process is named by its PID together with a 24-bit tag derived from its
// start time, and an 8-bit tag of its PID namespace. A lock word stores
// them; a waiter that suspects the owner is gone asks Alive, which says
// false only when it is sure the process that wrote the word has exited (no
// such PID, a zombie, or the PID now belongs to a process that started at
// another time). A PID means nothing in another PID namespace, so Alive
// never judges an owner whose namespace tag differs from the caller's: it
// says alive, and such a lock is never taken from a live process.
package proc

import "sync"

// ID names one process for its whole life.
type ID struct {
	PID   uint32 // the operating system's process id (on Windows, divided by 4)
	Start uint32 // a 24-bit tag of the process's start time, never 0
	NS    uint8  // a tag of its PID namespace; 0 where the system has none or it is unknown
}

// Word packs the start and namespace tags into the 32 bits that lock words
// keep beside the PID.
func (id ID) Word() uint32 { return uint32(id.NS)<<TagBits | id.Start&(1<<TagBits-1) }

// FromWord is the inverse of Word.
func FromWord(pid, w uint32) ID {
	return ID{PID: pid, Start: w & (1<<TagBits - 1), NS: uint8(w >> TagBits)}
}

// nsTag folds a namespace identifier (an inode number) into 8 bits, never 0.
func nsTag(ino uint64) uint8 {
	t := uint8(ino ^ ino>>8 ^ ino>>16 ^ ino>>24 ^ ino>>32 ^ ino>>40 ^ ino>>48 ^ ino>>56)
	if t == 0 {
		t = 1
	}
	return t
}

// OSPID returns the process id as the operating system numbers it: PID
// times 4 on Windows, PID elsewhere.
func (id ID) OSPID() int { return int(id.PID) * pidUnit }

// PIDOf is the PID field of an ID for the operating system's process id
// pid (the inverse of OSPID).
func PIDOf(pid uint64) uint32 { return uint32(pid / pidUnit) }

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
	s := Self()
	if id == s {
		return true
	}
	if id.NS != 0 && s.NS != 0 && id.NS != s.NS {
		return true // another PID namespace: its PID means nothing here
	}
	return alive(id)
}
