//go:build !linux

package futex

import "time"

// Selective is whether WakeBits wakes only the sleepers whose bits meet
// its own: not on this system, where WaitBits is Wait and WakeBits is
// Wake.
const Selective = false

// WaitBits is Wait here (see the Linux version).
func WaitBits(addr *uint32, val uint32, timeout time.Duration, bits uint32) error {
	return Wait(addr, val, timeout)
}

// WakeBits is Wake here: it wakes up to n sleepers, whatever their bits.
func WakeBits(addr *uint32, n int, bits uint32) int { return Wake(addr, n) }
