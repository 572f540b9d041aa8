// Package owner names the process that holds a lock in shared memory, and
// answers whether that process is still there, in a way that no live
// process can be mistaken for a dead one.
//
// A process is named by a Token, 56 bits that a lock word (or a reader slot,
// or a creator record) stores:
//
//	bits  0..21  PID, as the holder's system numbers it (on Windows, PID/4),
//	             for people (shm inspect); never 0
//	bits 22..55  instance: tells this process apart from every other one
//	             that had or will have the same PID
//
// The verdict comes from the kernel wherever it can:
//
//   - Linux: the instance is 34 random bits, and every process that maps a
//     segment through this package holds an open-file-description read
//     lock (F_OFD_SETLK) on one byte of the segment's file, at offset
//     LockBase + its token, for as long as it has the segment open. The
//     kernel drops that lock when the process closes its last descriptor
//     of the open file, which happens at the latest when it dies, however
//     it dies. A waiter asks, with F_OFD_GETLK on its own descriptor of the
//     same file, whether any process still holds that byte: no PID lookup,
//     so a zombie main thread, /proc hidden (hidepid), a /proc of another
//     PID namespace, or a holder in another PID namespace or container
//     that shares the file, can none of them fool it. A token's byte is
//     locked by nobody but its process, so "not locked" means "gone".
//     What a peer can do with locks of its own over the whole file (fcntl
//     with l_len 0, as lockf-style code takes): a read lock covers every
//     token's byte, so while it is held every owner looks alive and no
//     lock is taken over (timed waits still return); a write lock makes
//     this package's opens of the segment fail. Liveness locks are read
//     locks so that the common case, a peer's shared whole-file lock,
//     never makes an open fail; write locks would trade that for deaths
//     seen through such a lock.
//   - Windows, macOS and FreeBSD: the instance is a tag of the process's
//     start time, and the verdict is internal/proc's: the PID is looked up
//     and said dead only when the system says for sure that no process with
//     that PID and that start time runs.
//
// Alive never says false when it cannot tell: a lock that cannot be judged
// is waited for, never taken.
package owner

// Token names one process for its whole life. The zero Token names nobody.
type Token uint64

const (
	// Bits is the width of a Token.
	Bits = 56
	// Mask keeps the bits of a Token.
	Mask = 1<<Bits - 1

	pidBits  = 22
	pidMask  = 1<<pidBits - 1
	instBits = Bits - pidBits
	instMask = 1<<instBits - 1

	// bigPID is the PID field of a process whose PID does not fit: such a
	// token is never judged by PID (see Alive).
	bigPID = pidMask
)

// PIDField returns the PID bits of t as stored (on Windows, PID/4).
func (t Token) PIDField() uint32 { return uint32(t & pidMask) }

// Instance returns the instance bits of t.
func (t Token) Instance() uint64 { return uint64(t>>pidBits) & instMask }

func makeToken(pidField uint32, inst uint64) Token {
	if pidField == 0 || pidField > pidMask {
		pidField = bigPID
	}
	if inst&instMask == 0 {
		inst = 1
	}
	return Token(uint64(pidField) | (inst&instMask)<<pidBits)
}

// Self returns this process's token.
func Self() Token { return self }

var self = selfToken()
