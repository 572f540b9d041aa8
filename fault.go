package shm

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Memory faults.
//
// A process that may write a segment's file can shrink it (ftruncate):
// the pages past its new end are gone from every mapping, and touching them
// raises SIGBUS, which Go turns into a fatal error of the whole process
// unless the goroutine asked for a panic instead (debug.SetPanicOnFault).
// So every call of this package that waits, or that reads a managed
// segment's tables, asks for that around its work, and turns such a fault
// into an error matching ErrCorrupt (or, in a call that returns no error,
// such as Lock, into a panic with that error, which the caller may
// recover): what a peer does to the file never kills the process. The
// Timeout and Context forms, and every write-lock call of an RWMutex, are
// guarded from their first instruction. The plain forms' few-instruction
// fast paths (an uncontended Mutex Lock or TryLock, Unlock, RLock,
// TryRLock, RUnlock, an untimed Wait that finds its event set, Set, Reset)
// are not, since that would double their cost: on a mapping a peer may
// shrink, use the Timeout or Context forms, the managed API (every call of
// which is guarded), or guard your own calls, and your reads of Bytes, with
// debug.SetPanicOnFault.

// catchFault ends a guarded call: deferred as
//
//	defer catchFault(&err, debug.SetPanicOnFault(true))
//
// it restores the goroutine's setting and turns a memory fault into an
// error matching ErrCorrupt. Other panics go on.
func catchFault(err *error, old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		*err = faultError(r)
	}
}

// panicOnFault ends a guarded call that returns no error: a fault becomes a
// panic with an error matching ErrCorrupt.
func panicOnFault(old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		panic(faultError(r))
	}
}

// faultError returns the error for the fault r, and panics again with r if
// r is not a memory fault (or the panic of a guarded call that returns no
// error, inside this one).
func faultError(r any) error {
	f, ok := r.(interface{ Addr() uintptr })
	if !ok {
		if err, isErr := r.(error); isErr && errors.Is(err, ErrCorrupt) {
			return err // from panicOnFault, nested
		}
		panic(r)
	}
	return fmt.Errorf("%w: memory fault at %#x: another process shrank the segment's file (or it was unmapped)", ErrCorrupt, f.Addr())
}
