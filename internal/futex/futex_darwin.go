package futex

import "time"

// Placeholder until the port for this system lands: it sleeps briefly and
// reports a spurious wake-up, which every caller tolerates (they re-check
// their word in a loop), so the primitives work, slowly.

// Wait sleeps for a short while (at most timeout) and returns.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	d := 50 * time.Microsecond
	if timeout >= 0 && timeout < d {
		time.Sleep(timeout)
		return ErrTimeout
	}
	time.Sleep(d)
	return nil
}

// Wake does nothing: sleepers poll.
func Wake(addr *uint32, n int) int { return 0 }
