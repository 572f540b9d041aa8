package main

import (
	"fmt"
	"text/tabwriter"
)

func init() {
	register(&command{
		name:    "ls",
		summary: "list the shared-memory segments on this machine",
		help: `
Lists every segment with its size in bytes, its permissions, the user id
that owns it, whether it is a managed segment of this library (MANAGED:
yes, no, or ? when its first bytes cannot be read; it says nothing of who
owns it), the process that created it and whether it still has the segment
open (for managed segments; "-" for others), and how many other processes
map it now (MAPS, from /proc, by device and inode; only those whose maps
this user may read). Names are printed escaped when they hold anything
but printable ASCII. On Linux the segments are the files
in /dev/shm; other systems offer no way to list them, and ls says so.`,
		run: runLs,
	})
}

func runLs(e *env, args []string) error {
	if len(args) > 0 {
		return usageErrorf("ls takes no arguments")
	}
	segs, err := listSegments()
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(w, "SIZE\tMODE\tUID\tMANAGED\tCREATOR\tMAPS\tNAME\n")
	for _, s := range segs {
		fmt.Fprintf(w, "%d\t%v\t%s\t%s\t%s\t%s\t%s\n", s.size, s.mode, uidString(s.uid), s.managed,
			creatorString(creatorOf(s.name, s.head)), mapsString(s.name), show(s.name))
	}
	return w.Flush()
}

func uidString(uid int) string {
	if uid < 0 {
		return "?"
	}
	return fmt.Sprint(uid)
}
