// Command custom_open is the model crate's "custom" example, opener side: it
// opens the segment named by shared_mem.link, signals event 0, and then, for
// each signal on event 1, reads the round number under the lock and answers
// on event 0.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
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
		fmt.Fprintln(os.Stderr, "custom_open:", err)
		os.Exit(1)
	}
}

func run() error {
	m, err := openWhenThere()
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf("Opened segment %q: %d lock(s), %d event(s)\n", m.Name(), m.NumLocks(), m.NumEvents())
	if m.NumEvents() < 2 || m.NumLocks() < 1 {
		return errors.New("the segment does not have the lock and two events this example needs")
	}
	toCreator, err := m.Event(0)
	if err != nil {
		return err
	}
	fromCreator, err := m.Event(1)
	if err != nil {
		return err
	}
	fmt.Println("Signalling event 0")
	if err := toCreator.Set(); err != nil {
		return err
	}
	for i := uint64(1); i <= rounds; i++ {
		if err := fromCreator.WaitTimeout(patience); err != nil {
			return fmt.Errorf("round %d: no signal from the creator: %w", i, err)
		}
		g, err := m.LockTimeout(0, patience)
		if err != nil {
			return err
		}
		got := binary.LittleEndian.Uint64(g.Bytes())
		g.Unlock()
		fmt.Printf("Got event 1, round %d\n", got)
		if got != i {
			return fmt.Errorf("expected round %d, read %d", i, got)
		}
		if err := toCreator.Set(); err != nil {
			return err
		}
	}
	fmt.Println("Done")
	return nil
}

func openWhenThere() (*shm.Managed, error) {
	deadline := time.Now().Add(patience)
	for {
		m, err := shm.OpenManagedLink(linkPath)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			return m, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
