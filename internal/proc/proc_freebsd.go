package proc

import "golang.org/x/sys/unix"

// On FreeBSD the start time comes from sysctl kern.proc.pid.<pid>: ki_start
// of struct kinfo_proc (see kinfo.go for the layout). The kernel keeps it as
// time since boot and reports it added to kern.boottime, which moves when
// the clock is stepped; we subtract kern.boottime again, so the tag does not
// change under a live process.

func alive(id ID) bool {
	info, r := lookup(id.PID)
	if r == found && info.start != 0 && id.Start != unknownStart && tag(info.start) != id.Start {
		// A clock step between our two sysctl reads would skew the
		// subtraction once: look again before declaring the owner gone.
		info, r = lookup(id.PID)
	}
	return verdict(id, info, r)
}

// lookup reads the kinfo_proc of pid and returns its start as time since
// boot (0 when the kernel did not report one: a process swapped out).
func lookup(pid uint32) (procInfo, lookupResult) {
	b, err := unix.SysctlRaw("kern.proc.pid", int(pid))
	if err != nil {
		if err == unix.ESRCH {
			return procInfo{}, gone
		}
		return procInfo{}, unknown
	}
	info, ok := parseFreeBSDKinfo(b)
	if !ok || info.pid != int32(pid) {
		return procInfo{}, unknown
	}
	if info.start == 0 {
		return info, found
	}
	bt, err := unix.SysctlRaw("kern.boottime")
	if err != nil {
		return procInfo{}, unknown
	}
	boot, ok := parseTimeval(bt)
	if !ok {
		return procInfo{}, unknown
	}
	if info.start, ok = sinceBoot(info.start, boot); !ok {
		info.start = 0
	}
	return info, found
}
