//go:build !linux

package main

import (
	"errors"
	"fmt"
	"runtime"
)

// Outside Linux the system offers no portable way to enumerate named
// shared memory (macOS has none at all; Windows and FreeBSD keep it in
// kernel tables this tool does not read yet).

const canList = false

var errNoList = fmt.Errorf("listing segments is not possible on %s: the system offers no way to enumerate them (shm inspect NAME works for a name you know): %w", runtime.GOOS, errors.ErrUnsupported)

func listSegments() ([]segInfo, error) { return nil, errNoList }

// statSegment says what can be known without listing: nothing beyond what
// opening the segment tells (inspect does that).
func statSegment(name string) (segInfo, error) {
	return segInfo{name: name, size: -1, uid: -1}, errors.ErrUnsupported
}
