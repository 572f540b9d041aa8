//go:build linux

package shm

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestBreak2RWExclSameProcessStress: reader processes of several
// goroutines each against a writer process, with the RWMutex placed so that
// w and the idle words share page 1 and the slots are on page 2, and every
// process dropping page 1 from its page tables again and again: a reader's
// clearing of the idle bit after its claim of a marked slot (writers mark
// every free slot they pass) then takes a minor fault, during which another
// goroutine of the same process counts itself in the slot
// (TestBreak2RWSameProcessClaimInvisible, without userfaultfd). Found
// overlaps within 10-25 s on 2 CPUs, with and without the page dropping
// (79 in 24 s without it); none in 60 s once take() clears a set idle bit
// after any count. Long runs only (SHM_TORTURE=1; SHM_BREAK2_SECONDS sets
// the duration, 20 s by default).
func TestBreak2RWExclSameProcessStress(t *testing.T) {
	if !long() {
		t.Skip("long stress run (SHM_TORTURE=1)")
	}
	d := 20 * time.Second
	if s := envInt("SHM_BREAK2_SECONDS"); s > 0 {
		d = time.Duration(s) * time.Second
	}
	for _, zap := range []bool{false, true} {
		t.Run("zap="+strconv.FormatBool(zap), func(t *testing.T) {
			runExcl(t, 2*4096-64, 2, 1, 2, zap, false, d)
		})
	}
}

func envInt(k string) int {
	n, _ := strconv.Atoi(os.Getenv(k))
	return n
}
