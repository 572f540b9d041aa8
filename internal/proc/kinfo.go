package proc

import "encoding/binary"

// Parsers for the struct kinfo_proc that sysctl kern.proc.pid.<pid> returns
// on macOS and FreeBSD, written as pure functions over the bytes so that
// they are tested on every system. Only the 64-bit little-endian layouts
// (amd64, arm64) are described; elsewhere parsing fails and the callers
// fall back to "cannot tell".

// procInfo is what we need from a kinfo_proc.
type procInfo struct {
	pid    int32
	zombie bool
	start  uint64 // start time in microseconds (see each parser for the epoch)
}

// macOS: struct kinfo_proc (sys/sysctl.h) begins with struct extern_proc
// (sys/proc.h), whose first member is a union of two pointers with the
// start time:
//
//	union { struct { struct proc *p_forw, *p_back; } p_st1;
//	        struct timeval __p_starttime; } p_un;   //  0, 16 bytes
//	struct vmspace *p_vmspace;                      // 16
//	struct sigacts *p_sigacts;                      // 24
//	int p_flag;                                     // 32
//	char p_stat;                                    // 36
//	pid_t p_pid;                                    // 40
//
// struct timeval is { long tv_sec; int tv_usec; } (8 + 4, padded to 16).
// sizeof(struct kinfo_proc) is 648 on both amd64 and arm64 (the
// SizeofKinfoProc of golang.org/x/sys/unix, generated from the headers).
const (
	darwinKinfoSize      = 648
	darwinOffStartSec    = 0
	darwinOffStartUsec   = 8
	darwinOffStat        = 36
	darwinOffPid         = 40
	darwinSZOMB          = 5 // p_stat of a zombie (sys/proc.h)
	darwinMaxStartUsec   = 999_999
	freebsdKinfoSize     = 1088
	freebsdOffStructsize = 0
	freebsdOffPid        = 72
	freebsdOffStartSec   = 336
	freebsdOffStartUsec  = 344
	freebsdOffStat       = 388
	freebsdSZOMB         = 5 // ki_stat of a zombie (sys/sys/proc.h)
)

// FreeBSD: struct kinfo_proc (sys/sys/user.h), KINFO_PROC_SIZE 1088 on
// amd64 and arm64. Counting its members on LP64:
//
//	int ki_structsize, ki_layout;                        //   0,   4
//	8 pointers (ki_args ... ki_wchan)                    //   8 .. 72
//	pid_t ki_pid, ki_ppid, ki_pgid, ki_tpgid, ki_sid, ki_tsid; // 72 .. 96
//	short ki_jobc, ki_spare_short1;                      //  96,  98
//	uint32_t ki_tdev_freebsd11;                          // 100
//	sigset_t ki_siglist, ki_sigmask, ki_sigignore, ki_sigcatch; // 4 x 16: 104 .. 168
//	uid_t ki_uid, ki_ruid, ki_svuid; gid_t ki_rgid, ki_svgid;   // 168 .. 188
//	short ki_ngroups, ki_spare_short2;                   // 188, 190
//	gid_t ki_groups[16];                                 // 192 .. 256
//	vm_size_t ki_size; segsz_t ki_rssize, ki_swrss, ki_tsize, ki_dsize, ki_ssize; // 256 .. 304
//	u_short ki_xstat, ki_acflag;                         // 304, 306
//	fixpt_t ki_pctcpu; u_int ki_estcpu, ki_slptime, ki_swtime, ki_cow; // 308 .. 328
//	uint64_t ki_runtime;                                 // 328
//	struct timeval ki_start;                             // 336 (tv_sec), 344 (tv_usec)
//	struct timeval ki_childtime;                         // 352
//	long ki_flag, ki_kiflag;                             // 368, 376
//	int ki_traceflag;                                    // 384
//	char ki_stat;                                        // 388
//
// struct timeval is { time_t tv_sec; suseconds_t tv_usec; }, both 8 bytes.

// parseDarwinKinfo reads a macOS kinfo_proc. The start time is the wall
// clock time at which the process was created, fixed for its life.
func parseDarwinKinfo(b []byte) (procInfo, bool) {
	if len(b) != darwinKinfoSize {
		return procInfo{}, false
	}
	sec := int64(binary.LittleEndian.Uint64(b[darwinOffStartSec:]))
	usec := int32(binary.LittleEndian.Uint32(b[darwinOffStartUsec:]))
	if sec < 0 || usec < 0 || usec > darwinMaxStartUsec {
		return procInfo{}, false
	}
	return procInfo{
		pid:    int32(binary.LittleEndian.Uint32(b[darwinOffPid:])),
		zombie: b[darwinOffStat] == darwinSZOMB,
		start:  uint64(sec)*1e6 + uint64(usec),
	}, true
}

// parseFreeBSDKinfo reads a FreeBSD kinfo_proc. FreeBSD keeps the start time
// as time since boot and reports it added to the boot time, which moves
// when the clock is stepped: the caller subtracts kern.boottime (read at the
// same moment) to get a value that is fixed for the life of the process.
func parseFreeBSDKinfo(b []byte) (procInfo, bool) {
	if len(b) != freebsdKinfoSize || binary.LittleEndian.Uint32(b[freebsdOffStructsize:]) != freebsdKinfoSize {
		return procInfo{}, false
	}
	sec := int64(binary.LittleEndian.Uint64(b[freebsdOffStartSec:]))
	usec := int64(binary.LittleEndian.Uint64(b[freebsdOffStartUsec:]))
	if sec < 0 || usec < 0 || usec > 999_999 {
		return procInfo{}, false
	}
	return procInfo{
		pid:    int32(binary.LittleEndian.Uint32(b[freebsdOffPid:])),
		zombie: b[freebsdOffStat] == freebsdSZOMB,
		start:  uint64(sec)*1e6 + uint64(usec),
	}, true
}

// parseTimeval reads a 64-bit struct timeval ({ int64 tv_sec; 8-byte
// tv_usec }: 16 bytes on FreeBSD amd64/arm64, whose kern.boottime it is) as
// microseconds.
func parseTimeval(b []byte) (uint64, bool) {
	if len(b) != 16 {
		return 0, false
	}
	sec := int64(binary.LittleEndian.Uint64(b))
	usec := int64(binary.LittleEndian.Uint64(b[8:]))
	if sec < 0 || usec < 0 || usec > 999_999 {
		return 0, false
	}
	return uint64(sec)*1e6 + uint64(usec), true
}

// sinceBoot returns start - boot (both in microseconds): the process's start
// as time since boot, which a clock step does not change.
func sinceBoot(start, boot uint64) (uint64, bool) {
	if start < boot {
		return 0, false
	}
	return start - boot, true
}
