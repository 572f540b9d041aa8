package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/go-shm/shm"
	"golang.org/x/sys/unix"
)

// On Linux every named segment is a file in /dev/shm, so listing them is
// listing that directory.

const canList = true

func listSegments() ([]segInfo, error) {
	ents, err := os.ReadDir(shm.Dir)
	if err != nil {
		return nil, err
	}
	var segs []segInfo
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // directories, FIFOs, sockets: not segments
		}
		s, err := statSegment(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // removed while we listed
		}
		if err != nil {
			s = segInfo{name: e.Name(), uid: -1, managed: "?"}
		}
		segs = append(segs, s)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].name < segs[j].name })
	return segs, nil
}

// statSegment describes the segment name without mapping it. It refuses a
// symbolic link and anything that is not a regular file.
func statSegment(name string) (segInfo, error) {
	p := filepath.Join(shm.Dir, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return segInfo{}, err
	}
	if !fi.Mode().IsRegular() {
		return segInfo{}, fmt.Errorf("%s is not a shared-memory segment (%v)", p, fi.Mode().Type())
	}
	s := segInfo{name: name, size: fi.Size(), mode: fi.Mode().Perm(), uid: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.uid = int(st.Uid)
	}
	head, err := peek(p)
	s.managed, s.head = managedString(head, err), head
	return s, nil
}

// peek reads the first bytes of the segment file at p, without following a
// symlink or blocking on a FIFO swapped in meanwhile.
func peek(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, headerPeek)
	n, err := io.ReadFull(f, b)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return b[:n], err
}
