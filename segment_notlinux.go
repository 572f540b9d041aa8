//go:build !linux && !windows

package shm

// osRemoveOwned removes the segment's name. Systems that cannot tell one
// segment from another of the same name remove whatever the name names.
func osRemoveOwned(name string, _ *osSegment) error { return osRemove(name) }
