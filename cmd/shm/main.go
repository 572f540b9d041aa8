// Command shm runs a demo of shared memory between processes, measures it,
// and lists, inspects and removes shared-memory segments.
//
//	shm demo               worker processes share a counter and bounce an event
//	shm bench              measure locks and events against sync, pipes, sockets, futex (Linux)
//	shm ls                 list the segments on this machine, their creators and users
//	shm inspect NAME       show a segment's size, mode, owner, header, locks and events
//	shm rm NAME...         remove segments
//	shm rm --link PATH...  remove link files and the segments they name
//	shm rm --stale [PATH...] remove segments and links whose creator is dead and that nobody maps
//	shm help [COMMAND]     show usage
//
// Each subcommand lives in its own file and registers itself with register
// in an init function; main only dispatches.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// A command is one subcommand of shm.
type command struct {
	name    string // as typed: "ls"
	args    string // synopsis of its arguments: "NAME..."
	summary string // one line for the command list
	help    string // longer text for "shm help NAME"; may be empty
	// flags, if not nil, declares the command's flags on fs. run then gets
	// the arguments left after them.
	flags func(fs *flag.FlagSet)
	run   func(e *env, args []string) error
}

// env is what a command may touch: its output streams and its flags.
type env struct {
	stdout, stderr io.Writer
	flags          *flag.FlagSet
}

// errUsage marks an error in how the command was called (exit status 2).
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return errUsage{fmt.Sprintf(format, args...)}
}

var commands = map[string]*command{}

// register adds c to shm's commands. Call it from an init function.
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("shm: duplicate command " + c.name)
	}
	commands[c.name] = c
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs shm with args and returns the exit status: 0 on success, 1 when
// the command failed, 2 when it was called wrongly.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) == 0 {
			usage(stdout)
			return 0
		}
		c := commands[args[0]]
		if c == nil {
			fmt.Fprintf(stderr, "shm help: unknown command %q\n", args[0])
			usage(stderr)
			return 2
		}
		commandUsage(stdout, c)
		return 0
	}
	c := commands[name]
	if c == nil {
		fmt.Fprintf(stderr, "shm: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("shm "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if c.flags != nil {
		c.flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(stdout, c)
			return 0
		}
		fmt.Fprintf(stderr, "shm %s: %v\n", c.name, err)
		shortUsage(stderr, c)
		return 2
	}
	e.flags = fs
	if err := c.run(e, fs.Args()); err != nil {
		fmt.Fprintf(stderr, "shm %s: %v\n", c.name, err)
		var u errUsage
		if errors.As(err, &u) {
			shortUsage(stderr, c)
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `shm runs a demo of shared memory between processes, measures it, and lists,
inspects and removes shared-memory segments.

Usage:
	shm COMMAND [ARGUMENTS]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(tw, "\t%s\t%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Run "shm help COMMAND" (or "shm COMMAND -h") for a command's details.
Exit status: 0 on success, 1 if the command failed, 2 if it was called wrongly.
`)
}

func shortUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: shm %s (run \"shm help %s\" for details)\n", strings.TrimSpace(c.name+" "+c.args), c.name)
}

func commandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: shm %s\n\n%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	if c.flags != nil {
		// Flags whose usage starts with "internal:" are how the command
		// talks to its own child processes: not for people.
		all := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(all)
		shown := flag.NewFlagSet(c.name, flag.ContinueOnError)
		all.VisitAll(func(f *flag.Flag) {
			if !strings.HasPrefix(f.Usage, "internal:") {
				shown.Var(f.Value, f.Name, f.Usage)
			}
		})
		fmt.Fprintf(w, "\nFlags:\n")
		shown.SetOutput(w)
		shown.PrintDefaults()
	}
}
