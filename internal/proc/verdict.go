package proc

// The decision shared by the systems that identify a process through
// sysctl (macOS, FreeBSD), as a pure function so that it is tested
// everywhere.

// unknownStart is the tag of a process whose start time could not be read.
// Alive then only asks whether the PID is a live process: PID reuse goes
// unnoticed for it, but a live owner is never taken for dead because its
// start time could not be read when it recorded itself.
const unknownStart = 1

type lookupResult int

const (
	found   lookupResult = iota // the PID names a process, described by the info
	gone                        // no process has the PID
	unknown                     // the system did not say
)

// verdict decides whether the process id names is alive, given what a
// lookup of id.PID found. It says false only when sure: no such process, a
// zombie, or a process that started at another time than id's.
func verdict(id ID, info procInfo, r lookupResult) bool {
	switch r {
	case gone:
		return false
	case unknown:
		return true
	}
	if info.zombie {
		return false
	}
	if info.start == 0 || id.Start == unknownStart {
		return true
	}
	return tag(info.start) == id.Start
}
