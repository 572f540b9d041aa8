//go:build !linux

package proc

import "sync"

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

// Alive reports whether the process id names is still running. It returns
// true when it cannot tell (for example when the system hides other users'
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
