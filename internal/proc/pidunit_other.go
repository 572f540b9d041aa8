//go:build !windows

package proc

// pidUnit: ID.PID is the PID itself.
const pidUnit = 1
