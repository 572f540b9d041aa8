package shm

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// usableCPUs returns how many CPUs the calling thread may run on (its
// affinity mask, which taskset and cgroup cpusets narrow).
func usableCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return runtime.NumCPU()
	}
	return set.Count()
}

// osYield gives the CPU to another thread or process that is ready to run
// on it, if there is one.
func osYield() {
	unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}
