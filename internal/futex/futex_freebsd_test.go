package futex

import (
	"testing"
	"unsafe"
)

// struct _umtx_time (sys/sys/_umtx.h) is a struct timespec followed by two
// uint32_t: 24 bytes where timespec is 16 (amd64, arm64, arm, riscv64) and
// 16 where it is 8 (i386). The kernel reads a bare timespec when uaddr1 is
// not larger than a timespec, so the size we pass must be the full struct.
func TestUmtxTimeLayout(t *testing.T) {
	var ut umtxTime
	want := unsafe.Sizeof(ut.timeout) + 8
	if got := unsafe.Sizeof(ut); got != want {
		t.Fatalf("sizeof(_umtx_time) = %d, want %d", got, want)
	}
	if unsafe.Sizeof(uintptr(0)) == 8 && unsafe.Sizeof(ut) != 24 {
		t.Fatalf("sizeof(_umtx_time) = %d on a 64-bit port, want 24", unsafe.Sizeof(ut))
	}
	if off := unsafe.Offsetof(ut.clockid); off != unsafe.Sizeof(ut.timeout)+4 {
		t.Fatalf("_clockid at offset %d", off)
	}
}
