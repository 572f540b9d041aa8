//go:build !linux

package shm

import "runtime"

// usableCPUs returns how many CPUs the process may run on, as it was when
// the process started.
func usableCPUs() int { return runtime.NumCPU() }

// osYield lets other goroutines run; on these systems it does not give the
// CPU to other processes.
func osYield() { runtime.Gosched() }
