package shm

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The logic shared by the macOS and FreeBSD segments, tested on every
// system (segment_bsd.go has no build constraint).

func TestShmObjectName(t *testing.T) {
	for name, want := range map[string]string{"cam0": "/cam0", "a.b-c_d": "/a.b-c_d"} {
		if got := shmObjectName(name); got != want {
			t.Errorf("shmObjectName(%q) = %q, want %q", name, got, want)
		}
	}
}

// macOS's shm_open takes names of at most PSHMNAMLEN = 31 bytes (sys/posix_shm.h)
// counting the '/': our names, which drop the '/', get 30.
func TestDarwinNameLimit(t *testing.T) {
	if darwinNameMax != 31 {
		t.Fatalf("darwinNameMax = %d, want PSHMNAMLEN = 31", darwinNameMax)
	}
	for n := 1; n <= 40; n++ {
		name := strings.Repeat("x", n)
		fits := len(shmObjectName(name)) <= darwinNameMax
		if want := n <= 30; fits != want {
			t.Errorf("a %d-byte name: fits = %v, want %v", n, fits, want)
		}
	}
	// Random names must be valid there too.
	if n := len(randomName()); n > darwinNameMax-1 {
		t.Errorf("random names are %d bytes, more than macOS takes", n)
	}
}

// shm_open's mode is variadic: it must be the third argument (darwin/amd64
// reads it from rdx) and the ninth (darwin/arm64 reads it from the first
// stack slot, where SyscallN puts its 9th argument), with nothing else in
// between that a callee could take for it.
func TestShmOpenArgs(t *testing.T) {
	const oflag, mode = 0x0a02, 0o640 // O_RDWR|O_CREAT|O_EXCL on darwin, rw-r-----
	a := shmOpenArgs(oflag, mode)
	// a holds arguments 2..9 (the name is the first).
	if a[0] != oflag {
		t.Errorf("argument 2 = %#x, want oflag %#x", a[0], oflag)
	}
	if a[1] != mode {
		t.Errorf("argument 3 (amd64: rdx) = %#o, want mode %#o", a[1], mode)
	}
	if a[7] != mode {
		t.Errorf("argument 9 (arm64: first stack slot) = %#o, want mode %#o", a[7], mode)
	}
	for i := 2; i < 7; i++ {
		if a[i] != 0 {
			t.Errorf("argument %d = %#x, want 0", i+2, a[i])
		}
	}
}

func TestShmSizeWaitsForCreator(t *testing.T) {
	calls := 0
	size, err := shmSize(func() (int64, uint32, error) {
		calls++
		if calls < 3 {
			return 0, sIFREG | 0o600, nil // created, not yet sized
		}
		return 8192, sIFREG | 0o600, nil
	}, true)
	if err != nil || size != 8192 {
		t.Fatalf("shmSize = %d, %v; want 8192", size, err)
	}
	if calls != 3 {
		t.Fatalf("stat called %d times, want 3", calls)
	}
}

func TestShmSizeEmpty(t *testing.T) {
	start := time.Now()
	_, err := shmSize(func() (int64, uint32, error) { return 0, 0o600, nil }, false)
	if !errors.Is(err, ErrInvalidSize) {
		t.Fatalf("an object that stays empty: %v, want ErrInvalidSize", err)
	}
	if d := time.Since(start); d < emptyWait {
		t.Fatalf("gave up after %v, before %v", d, emptyWait)
	}
}

func TestShmSizeChecks(t *testing.T) {
	if _, err := shmSize(func() (int64, uint32, error) { return 4096, 0o040755, nil }, true); !errors.Is(err, errNotShm) {
		t.Errorf("a directory: %v, want errNotShm", err)
	}
	// macOS reports only permission bits: no type check there.
	if size, err := shmSize(func() (int64, uint32, error) { return 16384, 0o600, nil }, false); err != nil || size != 16384 {
		t.Errorf("a macOS object: %d, %v", size, err)
	}
	if _, err := shmSize(func() (int64, uint32, error) { return -1, sIFREG, nil }, true); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("a negative size: %v, want ErrInvalidSize", err)
	}
	boom := errors.New("fstat failed")
	if _, err := shmSize(func() (int64, uint32, error) { return 0, 0, boom }, true); err != boom {
		t.Errorf("a failing fstat: %v", err)
	}
}
