// Package cerrno turns the error number that purego reports after a libc
// call on macOS into a syscall.Errno. It has no build constraint, so that
// it is tested on every system.
//
// purego's call trampoline (sys_amd64.s, sys_arm64.s: "save errno") reads
// errno through the pointer that libc's __error() returns with a 64-bit
// load. errno is a 32-bit int, and what follows it in the thread's data is
// another field, so the upper half of the value purego hands back is
// garbage: an EEXIST could arrive as 0xdeadbeef_00000011, which is no
// error number at all, and no longer matches fs.ErrExist. Every place that
// turns purego's errno into an error or compares it with an error number
// goes through Num or Err.
package cerrno

import "syscall"

// Num returns the error number in e, the errno result of a purego call:
// its low 32 bits, which are C's int errno.
func Num(e uintptr) syscall.Errno {
	return syscall.Errno(uint32(e))
}

// Err returns the error of a libc call that reported failure, given the
// errno result of the purego call: Num(e), or EINVAL when that is 0 (a
// failure that left errno unset).
func Err(e uintptr) error {
	if n := Num(e); n != 0 {
		return n
	}
	return syscall.EINVAL
}
