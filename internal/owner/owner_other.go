//go:build !linux

package owner

import (
	"unsafe"

	"github.com/go-shm/shm/internal/proc"
)

func selfToken() Token {
	id := proc.Self()
	return makeToken(id.PID, uint64(id.Start))
}

// PID returns the process ID in t, as the system numbers it.
func (t Token) PID() int {
	if t.PIDField() == bigPID {
		return 0
	}
	return proc.ID{PID: t.PIDField()}.OSPID()
}

// Alive reports whether the process t may still be running. It says false
// only when the system says for sure that no process with t's PID and start
// time runs.
func Alive(_ unsafe.Pointer, t Token) bool {
	t &= Mask
	if t == 0 {
		return false
	}
	if t == self {
		return true
	}
	if t.PIDField() == bigPID {
		return true
	}
	return proc.Alive(proc.ID{PID: t.PIDField(), Start: uint32(t.Instance())})
}
