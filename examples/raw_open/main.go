// Command raw_open is the opening half of the raw example: it opens the
// segment some_raw_map that raw_create made, sets its first byte to 1 with
// an atomic store, and prints "Done".
//
// If the segment does not exist yet, it waits for it (up to 30 s), so the
// two halves may be started in any order.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-shm/shm"
)

func main() {
	os.Exit(run())
}

func run() int {
	name := flag.String("name", "some_raw_map", "name of the segment to open")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for the segment to appear")
	flag.Parse()

	deadline := time.Now().Add(*timeout)
	var seg *shm.Segment
	for {
		var err error
		seg, err = shm.Open(*name)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "raw_open: %v (is raw_create running?)\n", err)
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer seg.Close() // not the owner: the segment stays for raw_create

	fmt.Printf("Opened segment %q: %d bytes\n", seg.Name(), seg.Size())
	storeByte0(seg.Bytes(), 1)
	fmt.Println("Done")
	return 0
}

// storeByte0 atomically sets the first byte of b to v, leaving the other
// bytes of its aligned 32-bit word as they are (Go has no atomic byte store).
func storeByte0(b []byte, v byte) {
	p := (*uint32)(unsafe.Pointer(&b[0]))
	for {
		old := atomic.LoadUint32(p)
		var word [4]byte
		binary.NativeEndian.PutUint32(word[:], old)
		word[0] = v
		if atomic.CompareAndSwapUint32(p, old, binary.NativeEndian.Uint32(word[:])) {
			return
		}
	}
}
