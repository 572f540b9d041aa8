// Command raw_create is the creating half of the raw example: a segment with
// no header, as a C, Python or Rust peer would share it.
//
// It creates a 4096-byte segment named some_raw_map, prints its name and
// size, and waits until another process (raw_open) sets its first byte.
// Then it prints "Done" and exits 0. If nobody comes within 30 s, or it is
// interrupted, it exits 1. Whatever happens (short of SIGKILL), it removes
// the segment on the way out.
//
//	go run ./examples/raw_create &
//	go run ./examples/raw_open
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
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/go-shm/shm"
)

func main() {
	os.Exit(run())
}

func run() int {
	name := flag.String("name", "some_raw_map", "name of the segment to create")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for raw_open")
	flag.Parse()

	// Ctrl-C and kill end the wait instead of the process, so that the
	// deferred Close still removes the segment.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	seg, err := shm.Create(*name, 4096)
	if err != nil {
		fmt.Fprintf(os.Stderr, "raw_create: %v\n", err)
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintf(os.Stderr, "raw_create: a previous run may have been killed; remove the segment with: go run ./cmd/shm rm %s\n", *name)
		}
		return 1
	}
	defer seg.Close() // we own it: Close removes it

	fmt.Printf("Created segment %q: %d bytes\n", seg.Name(), seg.Size())
	fmt.Printf("Waiting for another process to set byte 0 (run: go run ./examples/raw_open)...\n")

	deadline := time.NewTimer(*timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for loadByte0(seg.Bytes()) == 0 {
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "raw_create: interrupted before anyone set byte 0\n")
			return 1
		case <-deadline.C:
			fmt.Fprintf(os.Stderr, "raw_create: nobody set byte 0 within %v (is raw_open running?)\n", *timeout)
			return 1
		case <-tick.C:
		}
	}
	fmt.Println("Done")
	return 0
}

// loadByte0 atomically loads the first byte of b. Go has no atomic byte
// load, so it loads the aligned 32-bit word holding it (a mapping starts
// page-aligned) and picks the byte at the lowest address.
func loadByte0(b []byte) byte {
	w := atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[0])))
	var word [4]byte
	binary.NativeEndian.PutUint32(word[:], w)
	return word[0]
}
