package main

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/go-shm/shm"
)

// A segment name made by another program may hold terminal escape
// sequences or newlines; ls, inspect and rm --stale must print it escaped,
// never raw.
func TestHostileNamesPrintedEscaped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("makes the file in /dev/shm directly")
	}
	name := namePrefix() + "evil\x1b]0;pwned\x07\x1b[2J\nFAKE ROW"
	path := shm.Dir + "/" + name
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	// Our own Create refuses such a name.
	if s, err := shm.Create(name, 4096); err == nil {
		s.Close()
		t.Fatal("Create accepted a name with control characters")
	}
	for _, args := range [][]string{{"ls"}, {"inspect", name}, {"rm", "--stale"}} {
		r := shmCmd(t, args...)
		for _, out := range []string{r.stdout, r.stderr} {
			if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "\nFAKE ROW") {
				t.Errorf("shm %s printed the name raw:\n%q", strings.Join(args, " "), out)
			}
		}
		if args[0] != "rm" && !strings.Contains(r.stdout, `\x1b]0;pwned`) {
			t.Errorf("shm %s does not show the name escaped:\n%s", strings.Join(args, " "), r.stdout)
		}
	}
}
