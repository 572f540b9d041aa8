package cerrno

import (
	"errors"
	"io/fs"
	"syscall"
	"testing"
)

// Error numbers of macOS (xnu bsd/sys/errno.h), spelled out so that the
// test means the same on every system.
const (
	darwinENOENT    = 2
	darwinEINTR     = 4
	darwinEEXIST    = 17
	darwinEINVAL    = 22
	darwinETIMEDOUT = 60
)

// garbage is what may sit above errno in the 64 bits purego reads.
var garbage = []uint64{0, 0xdeadbeef, 0xffffffff, 0x00000001, 0x80000000}

func TestNum(t *testing.T) {
	for _, hi := range garbage {
		if hi != 0 && ^uintptr(0)>>32 == 0 {
			continue // 32-bit: purego's errno has no upper half
		}
		for _, n := range []uint64{0, darwinENOENT, darwinEINTR, darwinEEXIST, darwinEINVAL, darwinETIMEDOUT, 106, 0x7fffffff} {
			e := uintptr(hi<<32 | n)
			if got := Num(e); got != syscall.Errno(n) {
				t.Errorf("Num(%#x) = %#x, want %d", e, uintptr(got), n)
			}
		}
	}
}

func TestErr(t *testing.T) {
	for _, hi := range garbage {
		if hi != 0 && ^uintptr(0)>>32 == 0 {
			continue
		}
		e := func(n uint64) uintptr { return uintptr(hi<<32 | n) }
		for _, c := range []struct {
			errno uint64
			want  error
		}{
			{darwinEEXIST, syscall.Errno(darwinEEXIST)},
			{darwinENOENT, syscall.Errno(darwinENOENT)},
			{darwinETIMEDOUT, syscall.Errno(darwinETIMEDOUT)},
			{0, syscall.EINVAL}, // failed without setting errno
		} {
			if got := Err(e(c.errno)); got != c.want {
				t.Errorf("Err(%#x) = %v (%#v), want %v", e(c.errno), got, got, c.want)
			}
		}
		// What the callers rely on: OpenOrCreate and the random-name retry
		// look for fs.ErrExist, Open, Remove and Close for fs.ErrNotExist.
		// The numbers are macOS's; they are the same on the other Unix
		// systems, where syscall's Is methods can check them.
		if syscall.EEXIST != darwinEEXIST || syscall.ENOENT != darwinENOENT {
			continue // Windows: syscall's numbers are invented
		}
		if err := Err(e(darwinEEXIST)); !errors.Is(err, fs.ErrExist) {
			t.Errorf("Err(%#x) = %v: not fs.ErrExist", e(darwinEEXIST), err)
		}
		if err := Err(e(darwinENOENT)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Err(%#x) = %v: not fs.ErrNotExist", e(darwinENOENT), err)
		}
	}
}

// The example of the report: EEXIST with 0xdeadbeef above it.
func TestDeadbeefEEXIST(t *testing.T) {
	if ^uintptr(0)>>32 == 0 {
		t.Skip("32-bit: purego's errno has no upper half")
	}
	var v uint64 = 0xdeadbeef_00000011
	if got := Num(uintptr(v)); got != darwinEEXIST {
		t.Errorf("Num(%#x) = %#x, want EEXIST (17)", v, uintptr(got))
	}
}
