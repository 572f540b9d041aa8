package bench

import (
	"fmt"
	"unsafe"

	"github.com/go-shm/shm"
)

// Uncontended queue operations: one goroutine sends and receives, so that
// nothing ever waits, on a queue of opsRing bytes.

const opsRing = 64 << 10

// QueueOpsSize is how many bytes NewQueueOps needs.
func QueueOpsSize() int { return shm.QueueSize(opsRing, 0) + 64 }

// QueueOps is a queue with a Producer and the Consumer attached in this
// process, for the uncontended loops.
type QueueOps struct {
	q   *shm.Queue
	p   *shm.Producer
	c   *shm.Consumer
	msg [64]byte
	buf [64]byte
}

// NewQueueOps lays out a queue in mem (QueueOpsSize bytes: in a segment or
// in process memory) and attaches its producer and consumer.
func NewQueueOps(mem []byte) (*QueueOps, error) {
	if len(mem) < QueueOpsSize() {
		return nil, fmt.Errorf("bench: %d bytes for a queue of %d", len(mem), QueueOpsSize())
	}
	off := (64 - uintptr(unsafe.Pointer(&mem[0]))%64) % 64
	q, err := shm.FormatQueue(mem[off:], opsRing, 0, 0)
	if err != nil {
		return nil, err
	}
	o := &QueueOps{q: q}
	if o.p, err = q.Producer(); err != nil {
		return nil, err
	}
	if o.c, err = q.Consumer(); err != nil {
		o.p.Close()
		return nil, err
	}
	return o, nil
}

// Close detaches the producer and the consumer.
func (o *QueueOps) Close() {
	o.p.Close()
	o.c.Close()
	o.q.Close()
}

func (o *QueueOps) receive() {
	m, err := o.c.Receive()
	if err == nil {
		err = o.c.Release(m)
	}
	if err != nil {
		panic("bench: " + err.Error())
	}
}

// ProducerClaimLoop claims 64 bytes with the Producer, commits them,
// receives the message and releases it, n times.
func (o *QueueOps) ProducerClaimLoop(n int) {
	for i := 0; i < n; i++ {
		c, err := o.p.Claim(64)
		if err == nil {
			err = c.Commit()
		}
		if err != nil {
			panic("bench: " + err.Error())
		}
		o.receive()
	}
}

// QueueClaimLoop is ProducerClaimLoop with the Queue's Claim (a producer
// slot from the queue's pool for each claim).
func (o *QueueOps) QueueClaimLoop(n int) {
	for i := 0; i < n; i++ {
		c, err := o.q.Claim(64)
		if err == nil {
			err = c.Commit()
		}
		if err != nil {
			panic("bench: " + err.Error())
		}
		o.receive()
	}
}

// SendCopyLoop sends a 64-byte message with the Producer and copies it out
// (Consumer.Copy), n times.
func (o *QueueOps) SendCopyLoop(n int) {
	for i := 0; i < n; i++ {
		err := o.p.Send(o.msg[:])
		if err == nil {
			_, err = o.c.Copy(o.buf[:])
		}
		if err != nil {
			panic("bench: " + err.Error())
		}
	}
}

var baseChan = make(chan int, 1)

// ChanLoop sends a value on a buffered channel and receives it, n times:
// the baseline of the queue loops, Go's hand-off within a process.
func ChanLoop(n int) {
	for i := 0; i < n; i++ {
		baseChan <- i
		<-baseChan
	}
}

// CopyLoop returns a loop that copies size bytes from one buffer of
// process memory to another n times: the baseline of the queue's
// bandwidth.
func CopyLoop(size int) func(n int) {
	src, dst := make([]byte, size), make([]byte, size)
	return func(n int) {
		for i := 0; i < n; i++ {
			copy(dst, src)
		}
	}
}
