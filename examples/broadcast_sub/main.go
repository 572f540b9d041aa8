// Command broadcast_sub is a subscribing half of the broadcast example:
// start as many as you like, before or after broadcast_pub. Each waits for
// the segment broadcast_pub creates (default name shm_broadcast_example),
// attaches a reader to its log from the oldest message still there, and
// reads every message in place (Receive, then Check: the publisher never
// waits for readers and may have overwritten the message meanwhile),
// checking its sequence number, length and checksum. Messages the log
// reports lost (this subscriber fell more than the ring behind) are
// counted. It stops once it has accounted for every message the publisher's
// status cell says were published, and checks that received plus lost is
// that count; it prints a summary and "Done", and exits 1 on any mismatch,
// if the segment does not appear or the messages stop coming for -timeout,
// or if it is interrupted.
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

	"github.com/go-shm/shm"
)

// status is the publisher's status cell (the same type as broadcast_pub's).
type status struct {
	Published uint64 // messages appended so far
	Total     uint64 // messages to publish
	Done      uint64 // 1 once all of them are appended
}

func main() {
	os.Exit(run())
}

func run() int {
	name := flag.String("name", "shm_broadcast_example", "name of the segment to open")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for the segment, or for the next message")
	flag.Parse()
	me := fmt.Sprintf("broadcast_sub[%d]", os.Getpid())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	m, err := openWhenThere(ctx, *name, *timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", me, err)
		return 1
	}
	defer m.Close()
	if m.NumLogs() < 1 || m.NumCells() < 1 {
		fmt.Fprintf(os.Stderr, "%s: segment %q has no log or no cell\n", me, m.Name())
		return 1
	}
	l, err := m.Log(0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", me, err)
		return 1
	}
	c, err := m.Cell(0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", me, err)
		return 1
	}
	// The reader registers in a slot of the log (shm inspect shows it, and
	// the publisher counts it); Close frees the slot.
	r, err := l.Reader(shm.LogOldest)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", me, err)
		return 1
	}
	defer r.Close()
	fmt.Printf("%s: opened segment %q; reading\n", me, m.Name())

	var (
		next     uint64 // the sequence number of the next message
		received uint64
		lost     uint64
		early    uint64 // published before this reader attached, and gone
		st       status
		start    time.Time
		last     = time.Now() // the last message or status change
	)
	for {
		msg, err := r.TryReceive()
		if errors.Is(err, shm.ErrEmpty) {
			// Nothing there: wait a little, then look at the status.
			msg, err = r.ReceiveTimeout(20 * time.Millisecond)
		}
		var le *shm.LostError
		if received+lost == 0 {
			// The first message (or loss) this reader sees: a reader that
			// attached after the log went round once starts after the
			// messages it never had, which count as lost here.
			first := msg.Seq()
			if errors.As(err, &le) {
				first = le.Seq
			}
			if err == nil || le != nil {
				if first > next {
					early, lost, next = first, first, first
				}
				start = time.Now()
			}
		}
		switch {
		case errors.As(err, &le):
			// Messages overwritten before we read them: the next call goes on
			// from the oldest one still there.
			if le.Seq != next {
				fmt.Fprintf(os.Stderr, "%s: %d message(s) lost from %d, but %d was next\n", me, le.Count, le.Seq, next)
				return 1
			}
			next += le.Count
			lost += le.Count
			last = time.Now()
			continue
		case errors.Is(err, shm.ErrTimeout):
			if ctx.Err() != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", me, ctx.Err())
				return 1
			}
			// Nothing for a while: has the publisher finished?
			v := st
			if _, err := shm.LoadValue(c, &st); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", me, err)
				return 1
			}
			if st.Done == 1 && next >= st.Published {
				return summary(me, st, next, received, lost, early, time.Since(start))
			}
			if st != v {
				last = time.Now()
			} else if time.Since(last) > *timeout {
				fmt.Fprintf(os.Stderr, "%s: nothing new for %v (%d received, %d lost; publisher status %+v)\n", me, *timeout, received, lost, st)
				return 1
			}
			continue
		case err != nil:
			fmt.Fprintf(os.Stderr, "%s: message %d: %v\n", me, next, err)
			return 1
		}
		last = time.Now()
		switch s := msg.Seq(); {
		case s < next:
			fmt.Fprintf(os.Stderr, "%s: message %d after %d: out of order\n", me, s, next-1)
			return 1
		case s > next:
			fmt.Fprintf(os.Stderr, "%s: message %d after %d, and no loss reported\n", me, s, next-1)
			return 1
		}
		b := msg.Bytes() // the message in the log's ring: read it, then Check
		seq, ok := check(b)
		if err := r.Check(msg); err != nil {
			// Overwritten while we read it: whatever we read is void.
			if !errors.Is(err, shm.ErrLost) {
				fmt.Fprintf(os.Stderr, "%s: message %d: %v\n", me, next, err)
				return 1
			}
			next++
			lost++
			continue
		}
		if !ok || seq != next {
			fmt.Fprintf(os.Stderr, "%s: message %d (%d bytes): bad contents (sequence number %d, checksum ok: %v)\n", me, next, len(b), seq, ok)
			return 1
		}
		next++
		received++
	}
}

func summary(me string, st status, next, received, lost, early uint64, d time.Duration) int {
	fmt.Printf("%s: received and checked %d messages in order in %v, lost %d (%d of them before it attached), of %d published\n",
		me, received, d.Round(time.Millisecond), lost, early, st.Published)
	if received+lost != st.Published || next != st.Published || st.Published != st.Total {
		fmt.Fprintf(os.Stderr, "%s: received %d + lost %d != published %d (total %d)\n", me, received, lost, st.Published, st.Total)
		return 1
	}
	fmt.Printf("%s: Done\n", me)
	return 0
}

// check verifies a message of broadcast_pub (an 8-byte sequence number, 8
// to 207 bytes that depend on it, an 8-byte checksum) and returns its
// sequence number.
func check(b []byte) (seq uint64, ok bool) {
	if len(b) < 24 {
		return 0, false
	}
	seq = binary.LittleEndian.Uint64(b)
	n := len(b)
	if n != 8+8+int(seq%200)+8 || binary.LittleEndian.Uint64(b[n-8:]) != checksum(b[:n-8]) {
		return seq, false
	}
	for i := 8; i < n-8; i++ {
		if b[i] != byte(seq*7+uint64(i)) {
			return seq, false
		}
	}
	return seq, true
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

func openWhenThere(ctx context.Context, name string, patience time.Duration) (*shm.Managed, error) {
	deadline := time.Now().Add(patience)
	for {
		m, err := shm.OpenManaged(name)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return m, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("segment %q did not appear within %v (run: go run ./examples/broadcast_pub)", name, patience)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
