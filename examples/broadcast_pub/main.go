// Command broadcast_pub is the publishing half of the broadcast example: one
// publisher, any number of subscribers (broadcast_sub), each of which reads
// every message.
//
// It creates a managed segment (default name shm_broadcast_example) holding
// a broadcast Log (a 1 MiB ring, messages up to 256 bytes) and a Cell with
// the publisher's latest status (messages published so far, the total, and
// whether it is done). It waits until -subs subscribers have attached to
// the log, then appends -n messages at a pace of -rate a second: each an
// 8-byte sequence number, 8 to 207 bytes that depend on it, and an 8-byte
// FNV-1a checksum of the rest. It stores its status in the cell every 1000
// messages and once done, waits for the subscribers to finish (each
// detaches when it has accounted for every message), prints the rate and
// "Done", and removes the segment on the way out.
//
// A log's writer never waits for readers: a subscriber that falls more than
// the ring behind is told how many messages it lost (shm.ErrLost) and goes
// on. It exits 1 if the subscribers do not come, or do not finish, within
// -timeout, or if it is interrupted.
//
//	go run ./examples/broadcast_pub -subs 3 &
//	go run ./examples/broadcast_sub & go run ./examples/broadcast_sub & go run ./examples/broadcast_sub
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
	"unsafe"

	"github.com/go-shm/shm"
)

// status is the cell's value: the publisher's latest status (a pointer-free
// type, the same in broadcast_sub).
type status struct {
	Published uint64 // messages appended so far
	Total     uint64 // messages to publish
	Done      uint64 // 1 once all of them are appended
}

func main() {
	os.Exit(run())
}

func run() int {
	name := flag.String("name", "shm_broadcast_example", "name of the segment to create")
	count := flag.Int("n", 100000, "how many messages to publish")
	subs := flag.Int("subs", 1, "how many subscribers to wait for before publishing")
	rate := flag.Int("rate", 200000, "messages a second (0: as fast as possible)")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for the subscribers to come, and to finish")
	flag.Parse()

	// Ctrl-C and kill end the waits instead of the process, so that the
	// deferred Close still removes the segment.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	conf := shm.Config{Name: *name, Size: 64}
	li := conf.AddLog(1<<20, 256) // a 1 MiB ring, messages up to 256 bytes
	ci := conf.AddCell(int(unsafe.Sizeof(status{})))
	m, err := conf.Create()
	if err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintf(os.Stderr, "broadcast_pub: a previous run may have been killed; remove the segment with: go run ./cmd/shm rm %s\n", *name)
		}
		return 1
	}
	defer m.Close() // we created it: Close removes it
	l, err := m.Log(li)
	if err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
		return 1
	}
	w, err := l.Writer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
		return 1
	}
	defer w.Close()
	c, err := m.Cell(ci)
	if err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
		return 1
	}
	cw, err := c.Writer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
		return 1
	}
	defer cw.Close()
	st := status{Total: uint64(*count)}
	if err := shm.StoreValue(cw, &st); err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
		return 1
	}
	fmt.Printf("Created segment %q with a log of %d bytes; waiting for %d subscriber(s) (run: go run ./examples/broadcast_sub)\n",
		m.Name(), l.Capacity(), *subs)

	// Subscribers register in the log's reader slots: wait for them.
	if err := waitReaders(ctx, l, func(n int) bool { return n >= *subs }, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: waiting for %d subscriber(s): %v\n", *subs, err)
		return 1
	}

	buf := make([]byte, 256)
	start := time.Now()
	for seq := uint64(0); seq < uint64(*count); seq++ {
		if *rate > 0 && seq%100 == 0 {
			// Keep to the pace: sleep while ahead of it.
			if ahead := time.Duration(seq)*time.Second/time.Duration(*rate) - time.Since(start); ahead > time.Millisecond {
				select {
				case <-ctx.Done():
					fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", ctx.Err())
					return 1
				case <-time.After(ahead):
				}
			}
		}
		// Append copies the message into the log (Claim+Commit would let us
		// write it in place instead).
		if err := w.Append(message(buf, seq)); err != nil {
			fmt.Fprintf(os.Stderr, "broadcast_pub: message %d: %v\n", seq, err)
			return 1
		}
		if (seq+1)%1000 == 0 {
			st.Published = seq + 1
			if err := shm.StoreValue(cw, &st); err != nil {
				fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
				return 1
			}
		}
	}
	d := time.Since(start)
	st.Published, st.Done = uint64(*count), 1
	if err := shm.StoreValue(cw, &st); err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: %v\n", err)
		return 1
	}
	fmt.Printf("Published %d messages in %v: %.0f messages/s\n", *count, d.Round(time.Millisecond), float64(*count)/d.Seconds())

	// The subscribers detach when they have accounted for every message:
	// keep the segment until then.
	if err := waitReaders(ctx, l, func(n int) bool { return n == 0 }, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "broadcast_pub: waiting for the subscribers to finish: %v\n", err)
		return 1
	}
	fmt.Println("Done")
	return 0
}

// waitReaders waits until ok(the count of live registered readers of l)
// holds, for at most patience.
func waitReaders(ctx context.Context, l *shm.Log, ok func(n int) bool, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		st, err := l.Stats()
		if err != nil {
			return err
		}
		n := 0
		for _, r := range st.Readers {
			if r.Process.Alive {
				n++
			}
		}
		if ok(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d subscriber(s) attached after %v", n, patience)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// message writes message seq into buf and returns it: the sequence number,
// 8 to 207 bytes that depend on it, and the FNV-1a checksum of all that.
func message(buf []byte, seq uint64) []byte {
	n := 8 + 8 + int(seq%200) + 8
	b := buf[:n]
	binary.LittleEndian.PutUint64(b, seq)
	for i := 8; i < n-8; i++ {
		b[i] = byte(seq*7 + uint64(i))
	}
	binary.LittleEndian.PutUint64(b[n-8:], checksum(b[:n-8]))
	return b
}

// checksum is the 64-bit FNV-1a hash of b.
func checksum(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, x := range b {
		h ^= uint64(x)
		h *= 1099511628211
	}
	return h
}
