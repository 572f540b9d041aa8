package shm

import "time"

// zeroHeaderWait is how long an opener waits for a segment whose header is
// all zero to get one. On Linux, Create writes the header before the name
// exists, so all zero means not managed; the short wait covers only
// kernels without O_TMPFILE, where creation takes two steps.
const zeroHeaderWait = 100 * time.Millisecond
