package main

import (
	"flag"
	"fmt"

	"github.com/go-shm/shm"
)

func init() {
	register(&command{
		name:    "rm",
		args:    "NAME... | --link PATH... | --stale [-n] [PATH...]",
		summary: "remove segments, or link files and the segments they name",
		help: `
Removes each named segment. Processes that have it mapped keep their
mapping until they close it; new openers no longer find it.

With --link, every argument is the path of a link file: the segment it
names is removed (if it still exists) and so is the link file. A path that
is not a link file is left alone.

With --stale, removes every segment of ours (a managed segment, which
records its creator) whose creator is dead and that no process maps, and
says what it removed. The arguments, if any, are link files or directories
holding link files: a link whose creator is dead is removed too, with its
segment if nobody maps that. Segments without our header never count as
stale: nothing says who made them. A link is removed only if it belongs to
you (or you are root) and its segment to the link's owner. With -n it only
says what it would remove.

Every argument is tried; the exit status is 1 if any of them failed.`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("link", false, "the arguments are link files, not segment names")
			fs.Bool("stale", false, "remove segments and link files whose creator is dead and that nobody maps")
			fs.Bool("n", false, "with --stale: say what would be removed, remove nothing")
		},
		run: runRm,
	})
}

func runRm(e *env, args []string) error {
	links := e.flags.Lookup("link").Value.(flag.Getter).Get().(bool)
	if e.flags.Lookup("stale").Value.(flag.Getter).Get().(bool) {
		if links {
			return usageErrorf("--stale and --link do not go together")
		}
		return removeStale(e, args, e.flags.Lookup("n").Value.(flag.Getter).Get().(bool))
	}
	if e.flags.Lookup("n").Value.(flag.Getter).Get().(bool) {
		return usageErrorf("-n goes with --stale only")
	}
	if len(args) == 0 {
		return usageErrorf("rm needs at least one name")
	}
	var errs []error
	for _, a := range args {
		var err error
		if links {
			err = shm.RemoveLink(a)
		} else {
			err = shm.Remove(a)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "shm rm: %v\n", err)
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d not removed", len(errs), len(args))
	}
	return nil
}
