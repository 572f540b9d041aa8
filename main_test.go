package shm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Multi-process tests re-execute the test binary as a child. The child's role
// is named by an environment variable; TestMain runs the registered function
// for that role instead of the tests, and exits with its status.

const (
	childEnv     = "SHM_TEST_CHILD"
	childArgsEnv = "SHM_TEST_ARGS"
	testPrefix   = "shmtest-"
)

var children = map[string]func(args []string) error{}

// registerChild makes fn runnable as a child process under role. Call it
// from an init function.
func registerChild(role string, fn func(args []string) error) {
	if _, dup := children[role]; dup {
		panic("duplicate child role " + role)
	}
	children[role] = fn
}

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	code := m.Run()
	if code == 0 {
		if left := leftovers(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: the tests left segments behind: %v\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

func runChild(role string) int {
	fn := children[role]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "child: unknown role %q\n", role)
		return 3
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(childArgsEnv)), &args); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: bad args: %v\n", role, err)
		return 3
	}
	if err := fn(args); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		return 1
	}
	return 0
}

// leftovers lists this test process's segments still in the system's
// namespace (only where it can be listed).
func leftovers() []string {
	if runtime.GOOS != "linux" {
		return nil
	}
	ents, _ := os.ReadDir("/dev/shm")
	prefix := fmt.Sprintf("%s%d-", testPrefix, os.Getpid())
	var left []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			left = append(left, e.Name())
		}
	}
	return left
}

var nameCounter atomic.Int64

// testName returns a segment name unique to this test process and call, and
// removes the segment when the test ends, whatever happened.
func testName(t testing.TB) string {
	n := fmt.Sprintf("%s%d-%d", testPrefix, os.Getpid(), nameCounter.Add(1))
	t.Cleanup(func() { Remove(n) })
	return n
}

// child is a running child process.
type child struct {
	t      testing.TB
	role   string
	cmd    *exec.Cmd
	out    bytes.Buffer
	done   chan struct{}
	err    error
	killed bool
}

// startChild runs role in a new process of this test binary with args.
// The child is killed, if still running, when the test ends.
func startChild(t testing.TB, role string, args ...string) *child {
	t.Helper()
	if args == nil {
		args = []string{}
	}
	a, _ := json.Marshal(args)
	c := &child{t: t, role: role, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"="+role, childArgsEnv+"="+string(a))
	c.cmd.Stdout = &c.out
	c.cmd.Stderr = &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", role, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			c.reap()
		}
	})
	return c
}

// wait waits for the child to exit and fails the test if it failed or took
// longer than timeout.
func (c *child) wait(timeout time.Duration) {
	c.t.Helper()
	if err := c.waitErr(timeout); err != nil {
		c.t.Fatalf("child %s: %v\n%s", c.role, err, c.out.String())
	}
}

// waitErr waits for the child to exit within timeout and returns how it ended.
func (c *child) waitErr(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		c.cmd.Process.Kill()
		c.reap()
		return fmt.Errorf("did not finish within %v (killed)", timeout)
	}
}

// kill kills the child with SIGKILL and waits for it to be gone.
func (c *child) kill() {
	c.killed = true
	c.cmd.Process.Kill()
	c.reap()
}

// killGrace is how long a killed child may take to be gone before the test
// gives up on it (and fails) rather than wait forever: under Wine a killed
// process has been seen to linger.
const killGrace = time.Minute

// reap waits for a child that was just killed to be gone, for killGrace at
// most; a child that outlives that fails the test, which goes on.
func (c *child) reap() {
	select {
	case <-c.done:
	case <-time.After(killGrace):
		c.t.Errorf("child %s (pid %d) still there %v after it was killed", c.role, c.cmd.Process.Pid, killGrace)
	}
}

// output returns what the child printed so far (only safe after it exited).
func (c *child) output() string { return c.out.String() }
