package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/go-shm/shm"
)

func init() {
	register(&command{
		name:    "inspect",
		args:    "[-n BYTES] NAME",
		summary: "show a segment's size, mode, owner and first bytes",
		help: `
Opens the segment read-only (it is never changed) and prints its size,
permissions, owner, whether it is a managed segment of this library, and
its first bytes in hex. NAME may start with '/', as shm_open users write it.`,
		flags: func(fs *flag.FlagSet) {
			fs.Int("n", 64, "how many of the first bytes to show in hex")
		},
		run: runInspect,
	})
}

func runInspect(e *env, args []string) error {
	if len(args) != 1 {
		return usageErrorf("inspect takes one segment name")
	}
	n := e.flags.Lookup("n").Value.(flag.Getter).Get().(int)
	if n < 0 {
		return usageErrorf("-n must not be negative")
	}
	seg, err := shm.Open(args[0], shm.ReadOnly())
	if err != nil {
		return err
	}
	defer seg.Close()
	b := seg.Bytes()
	info, serr := statSegment(seg.Name())
	w := e.stdout
	fmt.Fprintf(w, "name:    %s\n", seg.Name())
	fmt.Fprintf(w, "size:    %d bytes\n", seg.Size())
	if serr == nil {
		fmt.Fprintf(w, "mode:    %v\n", info.mode)
		fmt.Fprintf(w, "owner:   uid %s\n", uidString(info.uid))
	} else if errors.Is(serr, errors.ErrUnsupported) {
		fmt.Fprintf(w, "mode:    unknown on this system\n")
		fmt.Fprintf(w, "owner:   unknown on this system\n")
	} else {
		return serr
	}
	managed := "no"
	if isManaged(b) {
		managed = "yes"
	}
	fmt.Fprintf(w, "managed: %s\n", managed)
	show := min(n, len(b))
	fmt.Fprintf(w, "first %s bytes:\n%s", strconv.Itoa(show), hex.Dump(b[:show]))
	return nil
}
