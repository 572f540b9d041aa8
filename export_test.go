package shm

import (
	"encoding/json"
	"os"
	"os/exec"
)

// For the external test package (package shm_test), whose benchmarks use
// internal/bench, which imports this package: the multi-process test
// helpers of main_test.go.

var (
	RegisterChild = registerChild
	TestName      = testName
)

// ChildCommand returns the command that runs role in a new process of this
// test binary with args, as startChild starts it, for a caller that needs
// to set up the process itself.
func ChildCommand(role string, args ...string) *exec.Cmd {
	if args == nil {
		args = []string{}
	}
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childArgsEnv+"="+string(a))
	return cmd
}
