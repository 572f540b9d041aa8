//go:build darwin || freebsd

package proc

import "os"

// selfID reads this process's start time the way alive reads others'
// (lookup: sysctl kern.proc.pid).
func selfID() ID {
	pid := uint32(os.Getpid())
	info, r := lookup(pid)
	if r != found || info.start == 0 {
		return ID{PID: pid, Start: unknownStart}
	}
	return ID{PID: pid, Start: tag(info.start)}
}
