package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/go-shm/shm"
	"golang.org/x/sys/unix"
)

// mappers counts the processes other than this one that map the segment
// name, from /proc/PID/maps. A mapping is the segment's when it is of the
// same file (device and inode), whatever path it shows: the creator's own
// mapping was made before the file had its name ("/dev/shm/#N (deleted)").
// Processes whose maps cannot be read (other users', without privilege) are
// not counted, so the count is a lower bound unless running as root.
func mappers(name string) (int, error) {
	var st unix.Stat_t
	if err := unix.Lstat(shm.Dir+"/"+name, &st); err != nil {
		return 0, err
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev)) // as maps prints it
	ino := strconv.FormatUint(st.Ino, 10)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if mapsFile(pid, dev, ino) {
			n++
		}
	}
	return n, nil
}

// mapsFile reports whether process pid maps the file dev (as maps prints
// it, "major:minor" in hexadecimal) and inode ino.
func mapsFile(pid int, dev, ino string) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// address perms offset dev inode [path]
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && fields[4] == ino && fields[3] == dev {
			return true
		}
	}
	return false
}
