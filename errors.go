package shm

import (
	"errors"
	"os"
	"strings"
)

// Sentinel errors. Every error returned by this package wraps one of these or
// one of the standard errors (fs.ErrExist, fs.ErrNotExist, fs.ErrPermission,
// errors.ErrUnsupported) where the meaning is the same, so callers test them
// with errors.Is.
var (
	// ErrTimeout is returned when a timed wait expires. It also matches
	// os.ErrDeadlineExceeded under errors.Is.
	ErrTimeout error = timeoutError{}

	// ErrOwnerDead is returned, with the lock held by the caller, when the
	// process that held a lock died without unlocking it. The data the lock
	// guards may be half-updated: repair it, then call MarkConsistent.
	ErrOwnerDead = errors.New("shm: previous lock owner died")

	// ErrCorrupt is returned when a segment's header or a primitive's shared
	// state holds values this package never writes.
	ErrCorrupt = errors.New("shm: corrupt shared state")

	// ErrNotManaged is returned when a segment opened as managed does not
	// start with this package's header. It wraps ErrCorrupt.
	ErrNotManaged = &wrapError{msg: "shm: not a managed segment", err: ErrCorrupt}

	// ErrNotLink is returned when a file read as a link file is not one
	// (not this package's format: /etc/passwd, a directory, a FIFO). It
	// wraps ErrCorrupt.
	ErrNotLink = &wrapError{msg: "shm: not a shm link file", err: ErrCorrupt}

	// ErrNotReady is returned when a managed segment's creator did not finish
	// publishing its header within the open timeout (it may have died while
	// creating it). It wraps ErrCorrupt.
	ErrNotReady = &wrapError{msg: "shm: managed segment never became ready", err: ErrCorrupt}

	// ErrClosed is returned when a closed segment is used.
	ErrClosed = errors.New("shm: segment is closed")

	// ErrInvalidName is wrapped by every *NameError.
	ErrInvalidName = errors.New("shm: invalid segment name")

	// ErrInvalidSize is returned for a size that is zero, negative or too
	// large for the platform.
	ErrInvalidSize = errors.New("shm: invalid size")

	// ErrRange is returned for a lock or event index, or a byte range, that is
	// out of range.
	ErrRange = errors.New("shm: index or range out of bounds")

	// ErrConflict is returned when options, or a Config and options,
	// contradict each other (two different modes, two different links).
	ErrConflict = errors.New("shm: conflicting options")

	// ErrWrongKind is returned when a lock or event is asked for as a kind
	// it is not (Managed.RWMutex of a mutex, say).
	ErrWrongKind = errors.New("shm: wrong kind of lock or event")
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "shm: timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// Is makes ErrTimeout match os.ErrDeadlineExceeded, as net.Conn timeouts do.
func (timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

// NameError reports a segment name that breaks one of the naming rules.
type NameError struct {
	Name string // the name as given
	Rule string // the rule it broke, in words
}

func (e *NameError) Error() string { return "shm: invalid name " + quote(e.Name) + ": " + e.Rule }

// Unwrap returns ErrInvalidName.
func (e *NameError) Unwrap() error { return ErrInvalidName }

// Error is the error type for failed segment operations: it names the
// operation and the segment, and wraps the cause.
type Error struct {
	Op   string // "create", "open", "remove", "link", ...
	Name string // the segment name or link path
	Err  error
}

func (e *Error) Error() string {
	// One "shm: " in front: the sentinels' own prefix is dropped from the
	// cause (an Error wrapping an Error reads "shm: open link "p": open "x": ...").
	return "shm: " + e.Op + " " + quote(e.Name) + ": " + strings.TrimPrefix(e.Err.Error(), "shm: ")
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func quote(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}
