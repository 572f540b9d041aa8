package owner

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestTokenFields(t *testing.T) {
	tok := makeToken(4194303, 1<<33|5)
	if tok.PIDField() != 4194303 || tok.Instance() != 1<<33|5 || tok&^Mask != 0 {
		t.Fatalf("token %#x: pid %d instance %#x", uint64(tok), tok.PIDField(), tok.Instance())
	}
	if makeToken(0, 0) == 0 || makeToken(7, 0).Instance() == 0 {
		t.Fatal("a token is never 0 and its instance never 0")
	}
	if self.PIDField() != uint32(os.Getpid()) || self.PID() != os.Getpid() {
		t.Fatalf("Self() = %#x, pid %d", uint64(self), os.Getpid())
	}
}

// A child holds the liveness lock of a token on a file; the parent asks.
func TestMain(m *testing.M) {
	if path := os.Getenv("OWNER_TEST_HOLD"); path != "" {
		fd, err := unix.Open(path, unix.O_RDONLY, 0)
		if err != nil {
			os.Exit(2)
		}
		if err := Attach(fd, 0, 0); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString(strconv.FormatUint(uint64(self), 10) + "\n")
		time.Sleep(time.Hour)
	}
	os.Exit(m.Run())
}

func TestAliveFollowsTheKernel(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "seg")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), "OWNER_TEST_HOLD="+f.Name())
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	v, err := strconv.ParseUint(string(buf[:n-1]), 10, 64)
	if err != nil {
		t.Fatalf("child said %q", buf[:n])
	}
	child := Token(v)

	fd, err := unix.Open(f.Name(), unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	mem := make([]byte, 64)
	base := uintptr(unsafe.Pointer(&mem[0]))
	if err := Attach(fd, base, 64); err != nil {
		t.Fatal(err)
	}
	defer Detach(base)
	addr := unsafe.Pointer(&mem[8])
	if !Alive(addr, child) || !HeldIn(fd, child) {
		t.Fatal("a live child holding its lock is judged dead")
	}
	if Alive(addr, child^1<<30) {
		t.Fatal("a token nobody holds is judged alive")
	}
	if !Alive(addr, self) || !Alive(unsafe.Pointer(&buf[0]), child^1<<30) {
		t.Fatal("self, or a word outside every attached mapping, is judged dead")
	}
	if any, err := AnyHolder(fd); err != nil || !any {
		t.Fatalf("AnyHolder = %v, %v", any, err)
	}
	c.Process.Kill()
	c.Wait()
	if Alive(addr, child) {
		t.Fatal("a killed child is judged alive")
	}
}
