package proc

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

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
			// No such process, or one this process may not see.
			return procInfo{}, esrch()
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

// esrchCache holds what an ESRCH from kern.proc.pid means here (see
// freebsdESRCH): it depends on settings an administrator may change and on
// our effective uid, so it is read again when older than esrchTTL. It is
// read only when an ESRCH comes up.
var esrchCache struct {
	sync.Mutex
	at time.Time
	r  lookupResult
}

const esrchTTL = time.Second

func esrch() lookupResult {
	esrchCache.Lock()
	defer esrchCache.Unlock()
	if now := time.Now(); esrchCache.at.IsZero() || now.Sub(esrchCache.at) >= esrchTTL {
		esrchCache.r = freebsdESRCH(os.Geteuid(), unix.SysctlUint32)
		esrchCache.at = now
	}
	return esrchCache.r
}
