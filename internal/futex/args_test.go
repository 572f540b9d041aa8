package futex

import (
	"math"
	"testing"
	"time"
)

// The pure logic of the macOS and FreeBSD layers, tested on every system.

// TestHeaderConstants checks each constant against the value in the header
// it comes from (the header is named in each row).
func TestHeaderConstants(t *testing.T) {
	for _, c := range []struct {
		name   string
		got    uint64
		want   uint64
		header string
	}{
		{"OS_SYNC_WAIT_ON_ADDRESS_SHARED", osSyncWaitOnAddressShared, 0x1, "os/os_sync_wait_on_address.h"},
		{"OS_SYNC_WAKE_BY_ADDRESS_SHARED", osSyncWakeByAddressShared, 0x1, "os/os_sync_wait_on_address.h"},
		{"OS_CLOCK_MACH_ABSOLUTE_TIME", osClockMachAbsoluteTime, 32, "os/clock.h"},
		{"UL_COMPARE_AND_WAIT_SHARED", ulCompareAndWaitShared, 3, "xnu bsd/sys/ulock.h"},
		{"ULF_WAKE_ALL", ulfWakeAll, 0x100, "xnu bsd/sys/ulock.h"},
		{"ULF_NO_ERRNO", ulfNoErrno, 0x01000000, "xnu bsd/sys/ulock.h"},
		{"ENOENT (darwin)", darwinENOENT, 2, "xnu bsd/sys/errno.h"},
		{"EINTR (darwin)", darwinEINTR, 4, "xnu bsd/sys/errno.h"},
		{"ENOMEM (darwin)", darwinENOMEM, 12, "xnu bsd/sys/errno.h"},
		{"EFAULT (darwin)", darwinEFAULT, 14, "xnu bsd/sys/errno.h"},
		{"ETIMEDOUT (darwin)", darwinETIMEDOUT, 60, "xnu bsd/sys/errno.h"},
		{"UMTX_OP_WAKE", umtxOpWake, 3, "FreeBSD sys/sys/umtx.h"},
		{"UMTX_OP_WAIT_UINT", umtxOpWaitUint, 11, "FreeBSD sys/sys/umtx.h"},
		{"CLOCK_MONOTONIC (FreeBSD)", clockMonotonic, 4, "FreeBSD sys/sys/_clock_id.h"},
		{"EINTR (FreeBSD)", freebsdEINTR, 4, "FreeBSD sys/sys/errno.h"},
		{"ETIMEDOUT (FreeBSD)", freebsdETIMEDOUT, 60, "FreeBSD sys/sys/errno.h"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x (%s)", c.name, c.got, c.want, c.header)
		}
	}
}

func TestULockOps(t *testing.T) {
	if got, want := ulockWaitOp(), uint32(0x01000003); got != want {
		t.Errorf("wait op = %#x, want %#x (UL_COMPARE_AND_WAIT_SHARED|ULF_NO_ERRNO)", got, want)
	}
	for _, c := range []struct {
		n    int
		want uint32
	}{
		{1, 0x01000003},   // one sleeper
		{2, 0x01000103},   // more than one: all (ULF_WAKE_ALL)
		{All, 0x01000103}, // all
	} {
		if got := ulockWakeOp(c.n); got != c.want {
			t.Errorf("wake op for n=%d = %#x, want %#x", c.n, got, c.want)
		}
	}
}

func TestULockTimeout(t *testing.T) {
	maxUs := time.Duration(math.MaxUint32) * time.Microsecond
	for _, c := range []struct {
		d       time.Duration
		us      uint32
		clamped bool
	}{
		{0, 0, false}, // not passed to the kernel: Wait answers a zero timeout itself
		{1, 1, false}, // below 1 µs: 1 µs, never 0 (which would mean no limit)
		{999, 1, false},
		{time.Microsecond, 1, false},
		{time.Microsecond + 1, 2, false}, // rounded up: never wake early
		{1500 * time.Microsecond, 1500, false},
		{time.Second, 1_000_000, false},
		{maxUs, math.MaxUint32, false},
		{maxUs + 1, math.MaxUint32, true},
		{time.Hour * 24 * 365, math.MaxUint32, true},
		{math.MaxInt64, math.MaxUint32, true},
	} {
		us, clamped := ulockTimeout(c.d)
		if us != c.us || clamped != c.clamped {
			t.Errorf("ulockTimeout(%v) = %d, %v; want %d, %v", c.d, us, clamped, c.us, c.clamped)
		}
		if c.d > 0 && us == 0 {
			t.Errorf("ulockTimeout(%v) = 0: would wait forever", c.d)
		}
	}
}

func TestOSSyncTimeout(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want uint64
	}{
		{1, 1},
		{time.Millisecond, 1_000_000},
		{90 * time.Minute, 5_400_000_000_000},
		{math.MaxInt64, math.MaxInt64},
		{0, 1}, // never 0, which the call rejects with EINVAL
	} {
		if got := osSyncTimeout(c.d); got != c.want {
			t.Errorf("osSyncTimeout(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

func TestClassifyDarwinWait(t *testing.T) {
	for _, c := range []struct {
		ret     int32
		errno   uintptr
		clamped bool
		want    waitResult
		wantErr uintptr
	}{
		{0, 0, false, woken, 0},
		{3, 0, false, woken, 0},                   // os_sync: waiters left
		{-1, darwinETIMEDOUT, false, timedOut, 0}, // os_sync: -1, errno
		{-darwinETIMEDOUT, darwinETIMEDOUT, false, timedOut, 0},
		{-darwinETIMEDOUT, darwinETIMEDOUT, true, woken, 0}, // cut short by us: go round again
		{-1, darwinEINTR, false, woken, 0},
		{-1, darwinEFAULT, false, woken, 0}, // transient per the header
		{-1, darwinENOMEM, false, woken, 0},
		{-1, 22, false, failed, 22}, // EINVAL
		{0, 22, false, woken, 0},    // errno is stale when the call succeeded
	} {
		got, e := classifyDarwinWait(c.ret, c.errno, c.clamped)
		if got != c.want || e != c.wantErr {
			t.Errorf("classifyDarwinWait(%d, %d, %v) = %v, %d; want %v, %d", c.ret, c.errno, c.clamped, got, e, c.want, c.wantErr)
		}
	}
	for ret, want := range map[int32]uintptr{0: 0, 5: 0, -darwinETIMEDOUT: darwinETIMEDOUT, -darwinEINTR: darwinEINTR} {
		if got := ulockErrno(ret); got != want {
			t.Errorf("ulockErrno(%d) = %d, want %d", ret, got, want)
		}
	}
}

func TestDarwinWoken(t *testing.T) {
	for _, c := range []struct {
		ret   int32
		errno uintptr
		n     int
		again bool
	}{
		{0, 0, 1, false},
		{-1, darwinENOENT, 0, false}, // os_sync: nobody waiting
		{-darwinENOENT, darwinENOENT, 0, false},
		{-darwinEINTR, darwinEINTR, 0, true},
		{-1, 22, 0, false},
	} {
		n, again := darwinWoken(c.ret, c.errno)
		if n != c.n || again != c.again {
			t.Errorf("darwinWoken(%d, %d) = %d, %v; want %d, %v", c.ret, c.errno, n, again, c.n, c.again)
		}
	}
}

// purego reads errno on macOS with a 64-bit load, but errno is a 32-bit int
// followed by another field: the upper half of the value it returns is
// garbage. The classification must look at the low 32 bits only.
func TestDarwinErrnoGarbageUpperBits(t *testing.T) {
	if ^uintptr(0)>>32 == 0 {
		t.Skip("32-bit: purego's errno has no upper half")
	}
	for _, hi := range []uint64{0xdeadbeef, 0xffffffff, 0x00000001, 0x80000000} {
		e := func(n uint64) uintptr { return uintptr(hi<<32 | n) }
		for _, c := range []struct {
			errno   uint64
			clamped bool
			want    waitResult
			wantErr uintptr
		}{
			{darwinETIMEDOUT, false, timedOut, 0},
			{darwinETIMEDOUT, true, woken, 0},
			{darwinEINTR, false, woken, 0},
			{darwinEFAULT, false, woken, 0},
			{darwinENOMEM, false, woken, 0},
			{22, false, failed, 22}, // EINVAL, reported without the garbage
		} {
			got, err := classifyDarwinWait(-1, e(c.errno), c.clamped)
			if got != c.want || err != c.wantErr {
				t.Errorf("classifyDarwinWait(-1, %#x, %v) = %v, %d; want %v, %d", e(c.errno), c.clamped, got, err, c.want, c.wantErr)
			}
		}
		if n, again := darwinWoken(-1, e(darwinEINTR)); n != 0 || !again {
			t.Errorf("darwinWoken(-1, %#x) = %d, %v; want 0, true (interrupted: call again)", e(darwinEINTR), n, again)
		}
		if n, again := darwinWoken(-1, e(darwinENOENT)); n != 0 || again {
			t.Errorf("darwinWoken(-1, %#x) = %d, %v; want 0, false (nobody waiting)", e(darwinENOENT), n, again)
		}
	}
}

func TestUmtxTimeout(t *testing.T) {
	for _, c := range []struct {
		d       time.Duration
		ns      int64
		clamped bool
	}{
		{0, 0, false},
		{1, 1, false},
		{1500 * time.Millisecond, 1_500_000_000, false},
		{umtxMaxTimeout, int64(umtxMaxTimeout), false},
		{umtxMaxTimeout + 1, int64(umtxMaxTimeout), true},
		{math.MaxInt64, int64(umtxMaxTimeout), true},
	} {
		ns, clamped := umtxTimeout(c.d)
		if ns != c.ns || clamped != c.clamped {
			t.Errorf("umtxTimeout(%v) = %d, %v; want %d, %v", c.d, ns, clamped, c.ns, c.clamped)
		}
	}
	// The longest timeout must fit a 32-bit time_t (FreeBSD/i386) in seconds.
	if s := int64(umtxMaxTimeout / time.Second); s > math.MaxInt32 {
		t.Errorf("umtxMaxTimeout is %d s, more than a 32-bit tv_sec holds", s)
	}
}

func TestUmtxWakeCount(t *testing.T) {
	for _, c := range []struct {
		n    int
		want uintptr
	}{{1, 1}, {7, 7}, {All, math.MaxInt32}, {math.MaxInt, math.MaxInt32}} {
		if got := umtxWakeCount(c.n); got != c.want {
			t.Errorf("umtxWakeCount(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

func TestClassifyUmtxWait(t *testing.T) {
	for _, c := range []struct {
		errno   uintptr
		clamped bool
		want    waitResult
	}{
		{0, false, woken},
		{freebsdEINTR, false, woken},
		{freebsdETIMEDOUT, false, timedOut},
		{freebsdETIMEDOUT, true, woken},
		{14, false, failed}, // EFAULT
		{22, false, failed}, // EINVAL
	} {
		if got := classifyUmtxWait(c.errno, c.clamped); got != c.want {
			t.Errorf("classifyUmtxWait(%d, %v) = %v, want %v", c.errno, c.clamped, got, c.want)
		}
	}
}
