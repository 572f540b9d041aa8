// Command queue_send is the producing half of the queue example: it waits
// for the segment queue_recv creates (default name shm_queue_example),
// and sends messages into its queue, each written in place (Claim, fill,
// Commit): an 8-byte sequence number, then 0 to 255 bytes that all equal
// the sequence number's low byte. When the queue is full it waits for the
// consumer (back-pressure: nothing is dropped). It prints the rate and
// "Done", or exits 1 if the segment never appears or it is interrupted.
//
//	go run ./examples/queue_recv & go run ./examples/queue_send
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-shm/shm"
)

func main() {
	os.Exit(run())
}

func run() int {
	name := flag.String("name", "shm_queue_example", "name of the segment to open")
	count := flag.Int("n", 1000000, "how many messages to send")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for the segment, or for room")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	m, err := openWhenThere(ctx, *name, *timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "queue_send: %v\n", err)
		return 1
	}
	defer m.Close()
	if m.NumQueues() < 1 {
		fmt.Fprintf(os.Stderr, "queue_send: segment %q has no queue\n", m.Name())
		return 1
	}
	q, err := m.Queue(0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "queue_send: %v\n", err)
		return 1
	}
	// A Producer keeps one producer slot for this goroutine: the fastest
	// way to send from one goroutine (Queue.Claim works too, from any).
	p, err := q.Producer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "queue_send: %v\n", err)
		return 1
	}
	defer p.Close()
	fmt.Printf("Opened segment %q; sending %d messages\n", m.Name(), *count)

	start := time.Now()
	for seq := uint64(0); seq < uint64(*count); seq++ {
		n := 8 + int(seq%256)
		c, err := p.TryClaim(n)
		if errors.Is(err, shm.ErrFull) {
			// Wait for the consumer, until the timeout or a signal.
			wait, cancel := context.WithTimeout(ctx, *timeout)
			c, err = p.ClaimContext(wait, n)
			cancel()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "queue_send: message %d: %v\n", seq, err)
			return 1
		}
		b := c.Bytes() // n bytes inside the ring: write the message there
		binary.LittleEndian.PutUint64(b, seq)
		for i := 8; i < n; i++ {
			b[i] = byte(seq)
		}
		if err := c.Commit(); err != nil {
			fmt.Fprintf(os.Stderr, "queue_send: %v\n", err)
			return 1
		}
	}
	d := time.Since(start)
	fmt.Printf("Sent %d messages in %v: %.0f messages/s\n", *count, d.Round(time.Millisecond), float64(*count)/d.Seconds())
	fmt.Println("Done")
	return 0
}

func openWhenThere(ctx context.Context, name string, patience time.Duration) (*shm.Managed, error) {
	deadline := time.Now().Add(patience)
	for {
		m, err := shm.OpenManaged(name)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return m, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("segment %q did not appear within %v (run: go run ./examples/queue_recv)", name, patience)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
