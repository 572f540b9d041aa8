package proc

import "golang.org/x/sys/unix"

// On macOS the start time comes from sysctl kern.proc.pid.<pid>: the
// p_starttime of struct extern_proc (see kinfo.go for the layout), the wall
// clock time at which the process was created, stored once and never
// recomputed.

func alive(id ID) bool {
	info, r := lookup(id.PID)
	return verdict(id, info, r)
}

// lookup reads the kinfo_proc of pid.
func lookup(pid uint32) (procInfo, lookupResult) {
	b, err := unix.SysctlRaw("kern.proc.pid", int(pid))
	if err != nil {
		if err == unix.ESRCH {
			return procInfo{}, gone
		}
		return procInfo{}, unknown
	}
	if len(b) == 0 {
		// macOS answers a PID that names no process with no data.
		return procInfo{}, gone
	}
	info, ok := parseDarwinKinfo(b)
	if !ok || info.pid != int32(pid) {
		return procInfo{}, unknown
	}
	return info, found
}
