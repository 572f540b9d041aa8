// Package futex waits on and wakes a 32-bit word in shared memory, across
// processes: the one primitive every lock and event of package shm is built
// on, so that everything above it is the same code on every system.
//
// Wait(addr, val, timeout) sleeps only if *addr still holds val when the
// kernel looks (atomically with respect to Wake), and returns when woken,
// when the word changed, when the timeout passed, or spuriously. Callers
// always re-check their condition in a loop and never rely on a wake-up
// being for them. Wake(addr, n) wakes up to n sleepers on addr.
// WaitBits and WakeBits do the same with a set of bits: where Selective
// (Linux), WakeBits wakes only the sleepers whose bits meet its own, so
// that one word can have kinds of sleepers that are woken apart.
//
// The word must be 4-byte aligned and inside a mapping shared by the
// processes (a shm.Segment). Linux uses futex(2) without FUTEX_PRIVATE_FLAG.
package futex

import (
	"errors"
	"math"
	"time"
)

// ErrTimeout is returned by Wait when the timeout passed.
var ErrTimeout = errors.New("futex: timeout")

// All, passed to Wake, wakes every sleeper.
const All = math.MaxInt32

// Forever, passed to Wait as the timeout, waits with no limit.
const Forever time.Duration = -1
