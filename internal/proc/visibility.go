package proc

import (
	"errors"
	"io/fs"
)

// What an ESRCH from sysctl kern.proc.pid.<pid> means on FreeBSD, as a pure
// function so that it is tested on every system (proc_freebsd.go reads the
// settings and caches the answer).
//
// The handler looks the process up and then asks p_cansee, and answers
// ESRCH both when no process has the PID and when the caller may not see
// the one that has it. p_cansee (cr_cansee, sys/kern/kern_prot.c) hides a
// process from the caller when:
//
//   - prison_check: the caller is in a jail and the process is outside it
//     (in the host or another jail that is not below the caller's). No
//     privilege lifts this.
//   - mac_cred_check_visible: a MAC policy module says so. In the base
//     system mac_seeotheruids, mac_partition, mac_biba, mac_mls and
//     mac_lomac implement the hook (and answer ESRCH).
//   - cr_canseeotheruids: security.bsd.see_other_uids is 0 and the process
//     has another real uid, unless the caller holds PRIV_SEEOTHERUIDS.
//   - cr_canseeothergids: security.bsd.see_other_gids is 0 and the process
//     has none of the caller's groups, unless PRIV_SEEOTHERGIDS.
//   - cr_canseejailproc: security.bsd.see_jail_proc is 0 and the process
//     is in another jail (below the caller's), unless PRIV_SEEJAILPROC.
//
// The privileges (priv_check_cred, sys/kern/kern_priv.c) are granted to an
// effective uid of 0 while security.bsd.suser_enabled is 1; in a jail,
// prison_priv_check (sys/kern/kern_jail.c) lets root keep PRIV_SEEOTHERUIDS
// and PRIV_SEEOTHERGIDS but not PRIV_SEEJAILPROC. Only a jailed caller can
// lack PRIV_SEEJAILPROC while being root, and a jailed caller is already
// subject to the jail boundary, so root outside a jail with suser_enabled
// sees through all three see_* settings and root in a jail sees nothing
// outside it.
//
// Where the caller may be unable to see some process, an ESRCH does not
// say the process is gone: lookup reports unknown, and the owner is taken
// for alive. A dead owner is then not detected (its waiters wait out their
// timeouts, as for a live owner); a live owner never loses its lock.

// sysctlReader reads an integer sysctl by name. An error that matches
// fs.ErrNotExist (ENOENT) says the kernel has no such variable.
type sysctlReader func(name string) (uint32, error)

// The FreeBSD sysctl variables freebsdESRCH reads.
const (
	sysctlSeeOtherUIDs = "security.bsd.see_other_uids"
	sysctlSeeOtherGIDs = "security.bsd.see_other_gids"
	sysctlSeeJailProc  = "security.bsd.see_jail_proc"
	sysctlSuserEnabled = "security.bsd.suser_enabled"
	sysctlJailed       = "security.jail.jailed"
)

// freebsdHidingMACs are the "enabled" variables of the base system's MAC
// policy modules that hide processes (mpo_cred_check_visible); each exists
// only while its module is loaded.
var freebsdHidingMACs = []string{
	"security.mac.seeotheruids.enabled",
	"security.mac.partition.enabled",
	"security.mac.biba.enabled",
	"security.mac.mls.enabled",
	"security.mac.lomac.enabled",
}

// freebsdESRCH returns what an ESRCH from kern.proc.pid means for a caller
// with effective uid euid, given the system's settings (read through get):
// gone when the caller sees every process, unknown when it may not. A
// setting that cannot be read counts as the restrictive value; one the
// kernel does not have (ENOENT) as absent.
func freebsdESRCH(euid int, get sysctlReader) lookupResult {
	// flag reads a variable: its value, ifAbsent when the kernel has no
	// such variable, ifUnreadable when reading it failed otherwise.
	flag := func(name string, ifAbsent, ifUnreadable bool) bool {
		v, err := get(name)
		switch {
		case err == nil:
			return v != 0
		case errors.Is(err, fs.ErrNotExist):
			return ifAbsent
		}
		return ifUnreadable
	}
	if flag(sysctlJailed, false, true) {
		return unknown // processes outside the jail are invisible
	}
	for _, name := range freebsdHidingMACs {
		if flag(name, false, true) {
			return unknown
		}
	}
	privileged := euid == 0 && flag(sysctlSuserEnabled, true, false)
	if privileged {
		return gone // not jailed: root holds all three PRIV_SEE* privileges
	}
	for _, name := range []string{sysctlSeeOtherUIDs, sysctlSeeOtherGIDs, sysctlSeeJailProc} {
		if !flag(name, true, false) {
			return unknown
		}
	}
	return gone
}
