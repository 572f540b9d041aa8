package shm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// pyShm is the Python side of the interop test. It attaches to (or
// creates) a segment with multiprocessing.shared_memory and never lets
// Python's resource tracker unlink it at exit: track=False where Python has
// it (3.13+), an explicit unregister before that, where the tracker also
// tracks segments that were only attached.
//
//	python3 -c pyShm attach NAME SIZE EXPECT_HEX OFFSET REPLY_HEX
//	python3 -c pyShm create NAME SIZE DATA_HEX
const pyShm = `
import sys
from multiprocessing import shared_memory, resource_tracker

def attach(name, create=False, size=0):
    try:
        return shared_memory.SharedMemory(name=name, create=create, size=size, track=False)
    except TypeError:
        shm = shared_memory.SharedMemory(name=name, create=create, size=size)
        resource_tracker.unregister(shm._name, "shared_memory")
        return shm

op, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
if op == "attach":
    expect, off, reply = bytes.fromhex(sys.argv[4]), int(sys.argv[5]), bytes.fromhex(sys.argv[6])
    shm = attach(name)
    if shm.size < size:
        sys.exit("python sees size %d, want at least %d" % (shm.size, size))
    got = bytes(shm.buf[:len(expect)])
    if got != expect:
        sys.exit("python read %r, want %r" % (got, expect))
    shm.buf[off:off + len(reply)] = reply
    shm.close()
else:
    data = bytes.fromhex(sys.argv[4])
    shm = attach(name, create=True, size=size)
    shm.buf[:len(data)] = data
    shm.close()
print("ok")
`

func python(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: skipping the interop test with multiprocessing.shared_memory")
	}
	if out, err := exec.Command(py, "-c", "import multiprocessing.shared_memory").CombinedOutput(); err != nil {
		t.Skipf("python3 has no multiprocessing.shared_memory (Python 3.8+ needed): %v\n%s", err, out)
	}
	return py
}

func runPy(t *testing.T, py string, args ...string) {
	t.Helper()
	out, err := exec.Command(py, append([]string{"-c", pyShm}, args...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		// Anything else, a resource tracker warning included, is a failure.
		t.Fatalf("python3 %s: %v\n%s", args[0], err, out)
	}
}

func TestInteropPython(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Python names Windows segments its own way; see the Windows port")
	}
	py := python(t)

	t.Run("go creates, python reads and answers", func(t *testing.T) {
		name := testName(t)
		s := mustCreate(t, name, 4096)
		msg := []byte("written by Go \x00\x01\x02\xff")
		copy(s.Bytes(), msg)
		reply := []byte("answered by Python")
		// Python passes the name with its '/', as shm_open users write it.
		runPy(t, py, "attach", "/"+name, "4096", hex.EncodeToString(msg), "1024", hex.EncodeToString(reply))
		if got := s.Bytes()[1024 : 1024+len(reply)]; !bytes.Equal(got, reply) {
			t.Fatalf("Go reads %q where Python wrote %q", got, reply)
		}
		if !exists(t, name) {
			t.Fatal("Python's exit removed Go's segment")
		}
	})

	t.Run("python creates, go reads and answers", func(t *testing.T) {
		name := testName(t)
		data := []byte("written by Python \x00\xfe")
		runPy(t, py, "create", name, "8192", hex.EncodeToString(data))
		s, err := Open(name)
		if err != nil {
			t.Fatalf("Go cannot open Python's segment: %v", err)
		}
		s.SetOwner(true) // Go removes it when done
		defer s.Close()
		if s.Size() != 8192 {
			t.Fatalf("Go sees size %d, want 8192", s.Size())
		}
		if got := s.Bytes()[:len(data)]; !bytes.Equal(got, data) {
			t.Fatalf("Go reads %q where Python wrote %q", got, data)
		}
		reply := []byte("answered by Go")
		copy(s.Bytes()[4096:], reply)
		// Python reads Go's answer in the segment it created.
		want := append(append(append([]byte{}, data...), make([]byte, 4096-len(data))...), reply...)
		runPy(t, py, "attach", name, "8192", hex.EncodeToString(want), "0", hex.EncodeToString(data))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("segment still there after Go's owner Close: %v", err)
		}
	})
}
