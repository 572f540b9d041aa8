// Command simple_create is the model crate's "simple" example, creator side:
// a managed segment of 4096 bytes with one mutex over all of it, found by
// its peer through the link file shared_mem.link. It writes a welcome
// message, waits for a listener to register, writes a goodbye that counts
// the listeners, and exits once the listener has read it.
//
// Run it next to simple_open:
//
//	go run ./examples/simple_create & go run ./examples/simple_open
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/go-shm/shm"
)

// State is what the two programs share, under lock 0.
type State struct {
	Listeners uint32 // raised by each listener
	Done      uint32 // set by the listener once it read the goodbye
	Message   [256]byte
}

const (
	linkPath = "shared_mem.link"
	patience = 10 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "simple_create:", err)
		os.Exit(1)
	}
}

func run() error {
	conf := shm.Config{Link: linkPath, Size: 4096}
	conf.AddLock(shm.LockMutex, 0, 4096)
	m, err := conf.Create()
	if err != nil {
		return err
	}
	defer m.Close() // we own it: this removes the segment and the link
	fmt.Printf("Created segment %q (%d bytes of data), linked at %s\n", m.Name(), len(m.Data()), linkPath)

	if err := update(m, func(s *State) { setMessage(s, "Welcome, we currently have 0 listeners!") }); err != nil {
		return err
	}
	fmt.Println("Waiting for the first listener to connect...")
	if err := waitFor(m, func(s *State) bool { return s.Listeners > 0 }); err != nil {
		return fmt.Errorf("no listener came: %w", err)
	}
	fmt.Println("We have a listener!")
	if err := update(m, func(s *State) { setMessage(s, fmt.Sprintf("Goodbye %d listener(s)!", s.Listeners)) }); err != nil {
		return err
	}
	if err := waitFor(m, func(s *State) bool { return s.Done != 0 }); err != nil {
		return fmt.Errorf("the listener did not read the goodbye: %w", err)
	}
	fmt.Println("Done")
	return nil
}

func setMessage(s *State, msg string) {
	clear(s.Message[:])
	copy(s.Message[:len(s.Message)-1], msg)
}

// update runs f on the state with lock 0 held.
func update(m *shm.Managed, f func(*State)) error {
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

// waitFor polls the state under the lock until cond holds.
func waitFor(m *shm.Managed, cond func(*State) bool) error {
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		ok := false
		if err := update(m, func(s *State) { ok = cond(s) }); err != nil {
			return err
		}
		if ok {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return shm.ErrTimeout
}
