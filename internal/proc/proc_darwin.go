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
//
// Only an empty answer means that no process has the PID. xnu's handler
// (sysctl_prochandle, bsd/kern/kern_sysctl.c) walks the process list with a
// PID filter (proc_iterate) and checks nothing about the caller: no uid, no
// jail, no per-process MAC hook, so it hides no live process. The sandbox
// and other MAC policies act on the sysctl call as a whole
// (mac_system_check_sysctlbyname in kern_newsysctl.c), and a refusal is an
// error, not an empty answer. The handler itself never fails with ESRCH, so
// an error of any kind, ESRCH included, is a refusal or a failure that says
// nothing about the process: unknown.
func lookup(pid uint32) (procInfo, lookupResult) {
	b, err := unix.SysctlRaw("kern.proc.pid", int(pid))
	if err != nil {
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
