//go:build !linux

package shm

import (
	"math"
	"time"
)

// zeroHeaderWait is how long an opener waits for a segment whose header is
// all zero to get one: here the segment exists before its header is
// written, so the opener waits as long as for a header being written.
const zeroHeaderWait time.Duration = math.MaxInt64
