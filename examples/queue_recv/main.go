// Command queue_recv is the consuming half of the queue example: it creates
// a managed segment (default name shm_queue_example) holding one queue,
// attaches as the queue's consumer, and receives the messages queue_send
// sends, in place (Receive, then Release), checking each one: its
// sequence number and its bytes. It prints the rate and "Done" once it has
// the count it was told to expect, and exits 1 if a message is wrong, if
// none comes for the timeout, or if it is interrupted. It removes the
// segment on the way out.
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
	name := flag.String("name", "shm_queue_example", "name of the segment to create")
	count := flag.Int("n", 1000000, "how many messages to expect")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for a message")
	flag.Parse()

	// Ctrl-C and kill end the wait instead of the process, so that the
	// deferred Close still removes the segment.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	conf := shm.Config{Name: *name, Size: 64}
	qi := conf.AddQueue(1<<20, 4096) // a 1 MiB ring, messages up to 4 KiB
	m, err := conf.Create()
	if err != nil {
		fmt.Fprintf(os.Stderr, "queue_recv: %v\n", err)
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintf(os.Stderr, "queue_recv: a previous run may have been killed; remove the segment with: go run ./cmd/shm rm %s\n", *name)
		}
		return 1
	}
	defer m.Close() // we created it: Close removes it
	q, err := m.Queue(qi)
	if err != nil {
		fmt.Fprintf(os.Stderr, "queue_recv: %v\n", err)
		return 1
	}
	c, err := q.Consumer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "queue_recv: %v\n", err)
		return 1
	}
	fmt.Printf("Created segment %q with a queue of %d bytes; waiting for %d messages (run: go run ./examples/queue_send)\n",
		m.Name(), q.Capacity(), *count)

	var start time.Time
	var bytes int
	for seq := uint64(0); seq < uint64(*count); seq++ {
		msg, err := c.TryReceive()
		if errors.Is(err, shm.ErrEmpty) {
			// Wait for a producer, until the timeout or a signal.
			wait, cancel := context.WithTimeout(ctx, *timeout)
			msg, err = c.ReceiveContext(wait)
			cancel()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "queue_recv: message %d: %v\n", seq, err)
			return 1
		}
		if seq == 0 {
			start = time.Now()
		}
		if err := check(msg.Bytes(), seq); err != nil {
			fmt.Fprintf(os.Stderr, "queue_recv: message %d: %v\n", seq, err)
			return 1
		}
		bytes += len(msg.Bytes())
		// Release frees the message's space for the producers (and every
		// message received before it: a consumer may release in batches).
		if err := c.Release(msg); err != nil {
			fmt.Fprintf(os.Stderr, "queue_recv: %v\n", err)
			return 1
		}
	}
	d := time.Since(start)
	fmt.Printf("Received and checked %d messages (%d bytes) in %v: %.0f messages/s\n",
		*count, bytes, d.Round(time.Millisecond), float64(*count)/d.Seconds())
	fmt.Println("Done")
	return 0
}

// check verifies a message of queue_send: an 8-byte sequence number, then
// bytes that all equal the sequence number's low byte.
func check(b []byte, seq uint64) error {
	if len(b) < 8 {
		return fmt.Errorf("%d bytes, want 8 at least", len(b))
	}
	if got := binary.LittleEndian.Uint64(b); got != seq {
		return fmt.Errorf("sequence number %d, want %d (a message lost or repeated)", got, seq)
	}
	if want := 8 + int(seq%256); len(b) != want {
		return fmt.Errorf("%d bytes, want %d", len(b), want)
	}
	for i, x := range b[8:] {
		if x != byte(seq) {
			return fmt.Errorf("byte %d is %#x, want %#x", 8+i, x, byte(seq))
		}
	}
	return nil
}
