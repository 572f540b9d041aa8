package proc

import (
	"golang.org/x/sys/windows"
)

// On Windows a process is named by its PID divided by 4 (Windows PIDs are
// multiples of 4, so nothing is lost, and the result fits in 30 bits like
// PIDs elsewhere) and by a tag of its creation time from GetProcessTimes,
// which never changes for a process and differs between two processes that
// had the same PID.

// pidUnit: Windows PIDs are multiples of 4 and ID.PID is PID/4.
const pidUnit = 4

func selfID() ID {
	pid := windows.GetCurrentProcessId()
	start, err := creationTime(windows.CurrentProcess())
	if err != nil {
		return ID{PID: pid / 4, Start: 1}
	}
	return ID{PID: pid / 4, Start: tag(start)}
}

func alive(id ID) bool {
	if id.PID > 1<<30-1 {
		return false // no PID divided by 4 is that large
	}
	pid := id.PID * 4
	// SYNCHRONIZE tells an exited process whose handle someone still holds
	// from a running one without trusting exit code 259 (STILL_ACTIVE).
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION|windows.SYNCHRONIZE, false, pid)
	if err == windows.ERROR_ACCESS_DENIED {
		h, err = windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	}
	switch err {
	case nil:
	case windows.ERROR_INVALID_PARAMETER:
		return false // no process has that PID
	default:
		return true // access denied (a process we may not look at) or unknown
	}
	defer windows.CloseHandle(h)
	if ev, err := windows.WaitForSingleObject(h, 0); err == nil {
		if ev == windows.WAIT_OBJECT_0 {
			return false // exited
		}
	} else {
		var code uint32
		if err := windows.GetExitCodeProcess(h, &code); err == nil && code != uint32(windows.STATUS_PENDING) {
			return false // STILL_ACTIVE is STATUS_PENDING, 259
		}
	}
	start, err := creationTime(h)
	if err != nil {
		return true
	}
	return tag(start) == id.Start
}

func creationTime(h windows.Handle) (uint64, error) {
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return 0, err
	}
	return uint64(created.HighDateTime)<<32 | uint64(created.LowDateTime), nil
}
