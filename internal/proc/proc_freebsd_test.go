package proc

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// wantVanished is what lookup says of a PID whose process has been reaped:
// FreeBSD answers ESRCH, which means gone only where this process sees
// every process (freebsdESRCH).
func wantVanished() lookupResult { return esrch() }

// TestESRCHHere reports this host's settings and checks that lookup's
// answer for ESRCH follows them.
func TestESRCHHere(t *testing.T) {
	for _, name := range []string{sysctlJailed, sysctlSuserEnabled, sysctlSeeOtherUIDs, sysctlSeeOtherGIDs, sysctlSeeJailProc} {
		v, err := unix.SysctlUint32(name)
		t.Logf("%s = %d (%v)", name, v, err)
	}
	want := freebsdESRCH(os.Geteuid(), unix.SysctlUint32)
	t.Logf("euid %d: ESRCH means %v (gone %v, unknown %v)", os.Geteuid(), want, gone, unknown)
	if got := esrch(); got != want {
		t.Fatalf("esrch() = %v, want %v", got, want)
	}
}
