// Command custom_create is the model crate's "custom" example, creator side:
// a configuration with one mutex and two auto-reset events, found by the
// peer through the link file shared_mem.link. The two processes take turns:
// the opener signals event 0 when it is there and after each round; the
// creator writes a round number under the lock and signals event 1.
//
// Run it next to custom_open:
//
//	go run ./examples/custom_create & go run ./examples/custom_open
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/go-shm/shm"
)

const (
	linkPath = "shared_mem.link"
	patience = 10 * time.Second
	rounds   = 5
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "custom_create:", err)
		os.Exit(1)
	}
}

func run() error {
	conf := shm.Config{Link: linkPath, Size: 4096}
	conf.AddLock(shm.LockMutex, 0, 4096)
	toCreator := conf.AddEvent(shm.EventAuto) // event 0: opener -> creator
	toOpener := conf.AddEvent(shm.EventAuto)  // event 1: creator -> opener
	m, err := conf.Create()
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf("Created segment %q with %d lock(s) and %d event(s), linked at %s\n", m.Name(), m.NumLocks(), m.NumEvents(), linkPath)

	in, err := m.Event(toCreator)
	if err != nil {
		return err
	}
	out, err := m.Event(toOpener)
	if err != nil {
		return err
	}
	fmt.Println("Waiting for the opener to signal event 0...")
	if err := in.WaitTimeout(patience); err != nil {
		return fmt.Errorf("the opener never came: %w", err)
	}
	for i := uint64(1); i <= rounds; i++ {
		g, err := m.LockTimeout(0, patience)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(g.Bytes(), i)
		g.Unlock()
		fmt.Printf("Round %d: signalling event 1\n", i)
		if err := out.Set(); err != nil {
			return err
		}
		if err := in.WaitTimeout(patience); err != nil {
			return fmt.Errorf("round %d: the opener did not answer: %w", i, err)
		}
	}
	fmt.Println("Done")
	return nil
}
