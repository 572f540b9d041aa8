// Command simple_open is the model crate's "simple" example, opener side: it
// opens the segment named by shared_mem.link (waiting for simple_create to
// make it), prints the creator's welcome, registers as a listener, and
// prints the goodbye that counts it.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/go-shm/shm"
)

// State is what the two programs share, under lock 0 (the same type as in
// simple_create).
type State struct {
	Listeners uint32
	Done      uint32
	Message   [256]byte
}

const (
	linkPath = "shared_mem.link"
	patience = 10 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "simple_open:", err)
		os.Exit(1)
	}
}

func run() error {
	m, err := openWhenThere()
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf("Opened segment %q through %s: %d lock(s), %d bytes of data\n", m.Name(), linkPath, m.NumLocks(), len(m.Data()))

	var welcome string
	if err := withState(m, func(s *State) {
		welcome = message(s)
		s.Listeners++
	}); err != nil {
		return err
	}
	fmt.Println("Creator says:", welcome)

	deadline := time.Now().Add(patience)
	for {
		var msg string
		if err := withState(m, func(s *State) { msg = message(s) }); err != nil {
			return err
		}
		if msg != welcome {
			fmt.Println("Creator says:", msg)
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the creator never said goodbye")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := withState(m, func(s *State) { s.Done = 1 }); err != nil {
		return err
	}
	fmt.Println("Done")
	return nil
}

// openWhenThere opens the link, waiting for the creator to write it.
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

func withState(m *shm.Managed, f func(*State)) error {
	g, err := m.LockTimeout(0, patience)
	if err != nil {
		return err
	}
	defer g.Unlock()
	s, err := shm.View[State](g.Bytes())
	if err != nil {
		return err
	}
	f(s)
	return nil
}

func message(s *State) string {
	b := s.Message[:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
