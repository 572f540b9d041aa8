package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-shm/shm"
)

// What a segment's creator and its users say about whether it is stale.

// creatorOf returns the creator recorded in the header of the segment name,
// judged on a mapping of the segment (on Linux the kernel's record of who has
// it open); ok is false if it cannot be opened or carries no header. head is
// what was read of it already: a segment without our magic is not opened.
func creatorOf(name string, head []byte) (p shm.Process, ok bool) {
	if !shm.IsManaged(head) {
		return shm.Process{}, false
	}
	seg, err := shm.Open(name, shm.ReadOnly(), shm.TrustAnyOwner())
	if err != nil {
		return shm.Process{}, false
	}
	defer seg.Close()
	return shm.Creator(seg.Bytes())
}

// creatorString describes the creator recorded in a managed segment's
// header: "pid N (alive)", "pid N (dead)", or "-" when there is no record.
func creatorString(p shm.Process, ok bool) string {
	if !ok || p.PID == 0 {
		return "-"
	}
	return p.String()
}

// staleReason says why the segment whose first bytes are b is stale, or ""
// if it is not: it must carry our header, its creator must be dead, and no
// process may map it.
func staleReason(name string, b []byte) string {
	p, ok := creatorOf(name, b)
	if !ok || p.PID == 0 || p.Alive {
		return ""
	}
	n, err := mappers(name)
	if err != nil || n != 0 {
		return ""
	}
	return fmt.Sprintf("creator pid %d is dead and no process maps it", p.PID)
}

func mapsString(name string) string {
	n, err := mappers(name)
	if err != nil {
		return "?"
	}
	return fmt.Sprint(n)
}

// removeStale implements rm --stale; dry only says what it would remove.
func removeStale(e *env, paths []string, dry bool) error {
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	var errs []error
	fail := func(err error) {
		fmt.Fprintf(e.stderr, "shm rm: %v\n", err)
		errs = append(errs, err)
	}
	removed := 0
	done := map[string]bool{} // segments removed (or, dry, to be) with their links
	for _, p := range paths {
		links, err := linkFiles(p)
		if err != nil {
			fail(err)
			continue
		}
		for _, l := range links {
			info, err := shm.ReadLink(l)
			if err != nil || info.CreatorAlive() {
				continue
			}
			if n, err := mappers(info.Name); err != nil || n != 0 {
				if err == nil {
					fmt.Fprintf(e.stdout, "kept link %s: its creator pid %d is dead, but %d process(es) map segment %s\n", show(l), info.PID, n, show(info.Name))
				}
				continue
			}
			if !dry {
				if err := shm.RemoveLink(l); err != nil {
					if !errors.Is(err, fs.ErrNotExist) {
						fail(err)
					}
					continue // gone already: nothing removed
				}
			}
			removed++
			done[info.Name] = true
			fmt.Fprintf(e.stdout, "%s link %s and its segment %s (creator pid %d is dead and no process maps it)\n", verb, show(l), show(info.Name), info.PID)
		}
	}
	if canList {
		segs, err := listSegments()
		if err != nil {
			fail(err)
		}
		for _, s := range segs {
			if done[s.name] {
				continue
			}
			why := staleReason(s.name, s.head)
			if why == "" {
				continue
			}
			if !dry {
				if err := shm.Remove(s.name); err != nil {
					if !errors.Is(err, fs.ErrNotExist) {
						fail(err)
					}
					continue // removed by someone else meanwhile: not by us
				}
			}
			removed++
			fmt.Fprintf(e.stdout, "%s segment %s (%s)\n", verb, show(s.name), why)
		}
	} else if len(paths) == 0 {
		return errNoListStale
	}
	if removed == 0 && len(errs) == 0 {
		fmt.Fprintln(e.stdout, "nothing stale")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d error(s)", len(errs))
	}
	return nil
}

var errNoListStale = fmt.Errorf("cannot look for stale segments without listing them; name link files or directories: %w", errors.ErrUnsupported)

// linkFiles returns path if it is a link file, or the link files directly
// inside it if it is a directory.
func linkFiles(path string) ([]string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			p := filepath.Join(path, e.Name())
			if _, err := shm.ReadLink(p); err == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}
