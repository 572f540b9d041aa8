package examples_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestLinkedPairs runs the model crate's simple and custom pairs as a user
// would: both programs started together in one directory, where the
// creator's link file shared_mem.link appears; both must exit 0, say Done,
// and leave neither the link nor the segment behind.
func TestLinkedPairs(t *testing.T) {
	for _, pair := range []struct {
		name       string
		createSays []string
		openSays   []string
	}{
		{"simple",
			[]string{"We have a listener!", "Done"},
			[]string{"Creator says: Welcome, we currently have 0 listeners!", "Creator says: Goodbye 1 listener(s)!", "Done"}},
		{"custom",
			[]string{"Round 5: signalling event 1", "Done"},
			[]string{"Got event 1, round 1", "Got event 1, round 5", "Done"}},
	} {
		for _, openFirst := range []bool{false, true} {
			name := pair.name
			if openFirst {
				name += "/opener first"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				var c, o *proc
				if openFirst {
					o = startIn(t, dir, pair.name+"_open")
					time.Sleep(100 * time.Millisecond)
					c = startIn(t, dir, pair.name+"_create")
				} else {
					c = startIn(t, dir, pair.name+"_create")
					o = startIn(t, dir, pair.name+"_open")
				}
				for _, p := range []*proc{o, c} {
					if err := p.wait(t, 20*time.Second); err != nil {
						t.Fatalf("%s: %v\n%s", filepath.Base(p.cmd.Path), err, p.out.String())
					}
				}
				for _, x := range []struct {
					p    *proc
					says []string
				}{{c, pair.createSays}, {o, pair.openSays}} {
					for _, want := range x.says {
						if !strings.Contains(x.p.out.String(), want+"\n") {
							t.Errorf("%s did not say %q:\n%s", filepath.Base(x.p.cmd.Path), want, x.p.out.String())
						}
					}
				}
				if _, err := os.Lstat(filepath.Join(dir, "shared_mem.link")); !os.IsNotExist(err) {
					t.Errorf("the link file is still there (%v)", err)
				}
			})
		}
	}
}

// startIn starts an example in dir.
func startIn(t *testing.T, dir, prog string) *proc {
	t.Helper()
	if binDir == "" {
		t.Skip(noBin)
	}
	if runtime.GOOS == "windows" {
		prog += ".exe"
	}
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	return start(t, prog)
}
