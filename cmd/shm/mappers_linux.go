package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"github.com/go-shm/shm"
)

// mappers counts the processes other than this one that map the segment
// name, from /proc/PID/maps. Processes whose maps cannot be read (other
// users', without privilege) are not counted, so the count is a lower bound
// unless running as root.
func mappers(name string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	path := shm.Dir + "/" + name
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if mapsFile(pid, path) {
			n++
		}
	}
	return n, nil
}

func mapsFile(pid int, path string) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), " (deleted)")
		if strings.HasSuffix(line, " "+path) {
			return true
		}
	}
	return false
}
