package proc

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// golang.org/x/sys/unix generates struct kinfo_proc from the macOS headers
// with cgo -godefs: kinfo.go's hand-counted offsets must match it.
func TestDarwinOffsetsMatchXSys(t *testing.T) {
	var k unix.KinfoProc
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(struct kinfo_proc)", unix.SizeofKinfoProc, darwinKinfoSize},
		{"p_starttime.tv_sec", unsafe.Offsetof(k.Proc) + unsafe.Offsetof(k.Proc.P_starttime) + unsafe.Offsetof(k.Proc.P_starttime.Sec), darwinOffStartSec},
		{"p_starttime.tv_usec", unsafe.Offsetof(k.Proc.P_starttime) + unsafe.Offsetof(k.Proc.P_starttime.Usec), darwinOffStartUsec},
		{"p_stat", unsafe.Offsetof(k.Proc.P_stat), darwinOffStat},
		{"p_pid", unsafe.Offsetof(k.Proc.P_pid), darwinOffPid},
	} {
		if c.got != c.want {
			t.Errorf("%s: x/sys says %d, kinfo.go says %d", c.name, c.got, c.want)
		}
	}
}

// wantVanished is what lookup says of a PID whose process has been reaped:
// macOS answers such a PID with no data.
func wantVanished() lookupResult { return gone }
