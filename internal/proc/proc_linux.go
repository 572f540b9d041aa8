package proc

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the start time is field 22 of /proc/PID/stat, in clock ticks
// since boot: it never changes for a process and differs between two
// processes that had the same PID.

func selfID() ID {
	pid := uint32(os.Getpid())
	var ns uint8
	var nst unix.Stat_t
	if unix.Stat("/proc/self/ns/pid", &nst) == nil {
		ns = nsTag(nst.Ino)
	}
	st, ok := stat(0)
	if !ok || !st.exists {
		// /proc is not mounted: we cannot tell our start time. Use a tag that
		// no stat line yields so PID reuse detection degrades to kill(0).
		return ID{PID: pid, Start: unknownStart, NS: ns}
	}
	return ID{PID: pid, Start: tag(st.start), NS: ns}
}

func alive(id ID) bool {
	st, ok := stat(id.PID)
	if !ok {
		// Could not read /proc/PID/stat: ask the kernel whether the PID exists.
		err := unix.Kill(int(id.PID), 0)
		return err != unix.ESRCH
	}
	if !st.exists || st.state == 'Z' || st.state == 'X' {
		return false
	}
	return id.Start == unknownStart || tag(st.start) == id.Start
}

type procStat struct {
	exists bool
	state  byte
	start  uint64
}

// stat reads /proc/PID/stat without allocating (it runs on lock slow paths).
// ok is false when the file could not be read for a reason other than the
// process being gone.
// pid 0 reads /proc/self/stat, which names the caller even when /proc was
// mounted by another PID namespace.
func stat(pid uint32) (st procStat, ok bool) {
	var path [32]byte
	n := copy(path[:], "/proc/")
	if pid == 0 {
		n += copy(path[n:], "self")
	} else {
		n += putUint(path[n:], uint64(pid))
	}
	n += copy(path[n:], "/stat")
	path[n] = 0
	fd, _, e := syscall.Syscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&path[0])), unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
	if e != 0 {
		if e == unix.ENOENT || e == unix.ESRCH {
			return procStat{}, true
		}
		return procStat{}, false
	}
	var buf [1024]byte
	m, _, e := syscall.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	syscall.Syscall(unix.SYS_CLOSE, fd, 0, 0)
	if e != 0 {
		if e == unix.ESRCH {
			return procStat{}, true
		}
		return procStat{}, false
	}
	return parseStat(buf[:m])
}

// parseStat extracts the state (field 3) and start time (field 22) from a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// itself hold spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, bool) {
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	if i < 0 {
		return procStat{}, false
	}
	b = b[i+1:]
	field := 2
	st := procStat{exists: true}
	for j := 0; j < len(b); {
		for j < len(b) && b[j] == ' ' {
			j++
		}
		k := j
		for k < len(b) && b[k] != ' ' && b[k] != '\n' {
			k++
		}
		if k == j {
			break
		}
		field++
		switch field {
		case 3:
			st.state = b[j]
		case 22:
			v, ok := parseUint(b[j:k])
			if !ok {
				return procStat{}, false
			}
			st.start = v
			return st, true
		}
		j = k
	}
	return procStat{}, false
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

func putUint(b []byte, v uint64) int {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return copy(b, tmp[i:])
}

// atFDCWD is AT_FDCWD (-100) as a system call argument.
var atFDCWD = func() uintptr { fd := unix.AT_FDCWD; return uintptr(fd) }()
