package main

import (
	"io/fs"

	"github.com/go-shm/shm"
)

// segInfo is what the system says about a segment, beyond its bytes.
type segInfo struct {
	name    string
	size    int64
	mode    fs.FileMode
	uid     int    // -1 where the system does not say
	managed string // "yes", "no", or "?" when its first bytes could not be read
	head    []byte // its first bytes (up to headerPeek), nil if unread
}

// isManaged reports whether a segment whose first bytes are b is one of
// ours: a managed segment, starting with this library's header (its magic
// number; whether the rest is valid is for shm.OpenManaged to say).
func isManaged(b []byte) bool { return shm.IsManaged(b) }

// managedString turns the first bytes of a segment (or the error reading
// them) into the "ours" column.
func managedString(b []byte, err error) string {
	switch {
	case err != nil:
		return "?"
	case isManaged(b):
		return "yes"
	}
	return "no"
}

// headerPeek is how many bytes isManaged is given.
const headerPeek = 4096
