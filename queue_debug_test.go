package shm

import (
	"fmt"
	"sync/atomic"
)

// debugState describes the queue's shared words and its held producer
// slots, for the failure messages of the queue tests.
func (q *Queue) debugState() string {
	s := fmt.Sprintf("head %d tail %d cwake %#x pwake %#x consumer %#x", atomic.LoadUint64(q.head), atomic.LoadUint64(q.tail), atomic.LoadUint32(q.cwake), atomic.LoadUint32(q.pwake), atomic.LoadUint64(q.consumer))
	h := atomic.LoadUint64(q.head)
	s += fmt.Sprintf(" hd@head %#x hc %#x (want %#x)", atomic.LoadUint64(q.hd(h)), atomic.LoadUint64(q.hc(h)), commitWord(h))
	for i := 0; i < q.nsl; i++ {
		tok := atomic.LoadUint64(q.slotWord(i, 0))
		if tok != 0 {
			s += fmt.Sprintf("\n slot %d tok %#x start %d total %d", i, tok, atomic.LoadUint64(q.slotWord(i, 1)), atomic.LoadUint64(q.slotWord(i, 2)))
		}
	}
	return s
}
