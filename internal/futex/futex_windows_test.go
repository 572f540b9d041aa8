package futex

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// The contract of Wait and Wake on Windows, in both of its modes: on words in
// a registered mapping (named events) and on ordinary memory (the fallback).
// Sharing between processes is tested with real segments in package shm.

// mapped returns a word in a fresh named mapping registered with this
// package, laid out as package shm lays out its segments (bucket table in
// the same mapping).
func mapped(t *testing.T) *uint32 {
	w, _ := mappedNamed(t)
	return w
}

// mappedNamed is mapped, and also returns the mapping's name, for a child
// process to open it (openMapped).
func mappedNamed(t *testing.T) (*uint32, string) {
	t.Helper()
	name := fmt.Sprintf(`Local\futextest-%d-%d`, os.Getpid(), time.Now().UnixNano())
	n, _ := windows.UTF16PtrFromString(name)
	// With an explicit DACL, as Windows gives every object (Wine gives
	// none by default), so that the events copy it.
	h, err := windows.CreateFileMapping(windows.InvalidHandle, userOnly(t), windows.PAGE_READWRITE, 0, mappedSize, n)
	if err != nil {
		t.Fatal(err)
	}
	w, view, err := registerView(h, name)
	if err != nil {
		windows.CloseHandle(h)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Unregister(view)
		windows.UnmapViewOfFile(view)
		windows.CloseHandle(h)
	})
	return w, name
}

const mappedSize = 8192

// userOnly returns security attributes that grant all access to this
// process's user and SYSTEM, and nothing to anyone else: what Windows
// gives an object by default.
func userOnly(t *testing.T) *windows.SecurityAttributes {
	t.Helper()
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	sd, err := windows.SecurityDescriptorFromString("D:(A;;GA;;;" + u.User.Sid.String() + ")(A;;GA;;;SY)")
	if err != nil {
		t.Fatal(err)
	}
	return &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
}

// registerView maps the mapping h named name, registers it as package shm
// would, and returns the test word (offset 64) and the view.
func registerView(h windows.Handle, name string) (*uint32, uintptr, error) {
	view, err := windows.MapViewOfFile(h, windows.FILE_MAP_READ|windows.FILE_MAP_WRITE, 0, 0, 0)
	if err != nil {
		return nil, 0, err
	}
	b := unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&view))), mappedSize)
	sd, _ := windows.GetSecurityInfo(h, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION|windows.LABEL_SECURITY_INFORMATION)
	Register(view, mappedSize, (*[Buckets]uint64)(unsafe.Pointer(&b[4096])), name, sd)
	return (*uint32)(unsafe.Pointer(&b[64])), view, nil
}

// openMapped opens, in a child process, the mapping a parent made with
// mappedNamed, and returns its test word.
func openMapped(name string) (*uint32, error) {
	n, _ := windows.UTF16PtrFromString(name)
	r, _, e := procOpenFileMappingW.Call(windows.FILE_MAP_READ|windows.FILE_MAP_WRITE|windows.READ_CONTROL, 0, uintptr(unsafe.Pointer(n)))
	if r == 0 {
		return nil, e
	}
	w, _, err := registerView(windows.Handle(r), name)
	return w, err
}

var procOpenFileMappingW = windows.NewLazySystemDLL("kernel32.dll").NewProc("OpenFileMappingW")

func both(t *testing.T, f func(t *testing.T, w *uint32)) {
	t.Run("mapped", func(t *testing.T) { f(t, mapped(t)) })
	t.Run("private", func(t *testing.T) { f(t, new(uint32)) })
}

func TestWindowsWaitValueMismatch(t *testing.T) {
	both(t, func(t *testing.T, w *uint32) {
		*w = 1
		start := time.Now()
		if err := Wait(w, 2, time.Second); err != nil {
			t.Fatalf("Wait with a stale value = %v, want nil", err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("Wait with a stale value slept %v", d)
		}
	})
}

func TestWindowsWaitTimeout(t *testing.T) {
	both(t, func(t *testing.T, w *uint32) {
		for _, d := range []time.Duration{0, time.Nanosecond, 20 * time.Millisecond} {
			start := time.Now()
			err := Wait(w, 0, d)
			for err == nil && time.Since(start) < d {
				err = Wait(w, 0, d-time.Since(start))
			}
			if err != ErrTimeout {
				t.Fatalf("Wait(%v) = %v, want ErrTimeout", d, err)
			}
			if el := time.Since(start); el < d {
				t.Fatalf("Wait(%v) returned after %v", d, el)
			}
		}
	})
}

func TestWindowsWakeAll(t *testing.T) {
	both(t, func(t *testing.T, w *uint32) {
		const n = 6
		var wg sync.WaitGroup
		var asleep atomic.Int32
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				asleep.Add(1)
				for atomic.LoadUint32(w) == 0 {
					Wait(w, 0, Forever)
				}
			}()
		}
		for asleep.Load() < n {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // let them sleep
		atomic.StoreUint32(w, 1)
		Wake(w, All)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Wake(All) did not release every sleeper")
		}
	})
}

// TestWindowsNoLostWakeup hands a token around three goroutines thousands of
// times, each waking only one sleeper per move: a single lost wake-up stalls
// the ring and the watchdog fails the test.
func TestWindowsNoLostWakeup(t *testing.T) {
	both(t, func(t *testing.T, w *uint32) {
		const players, moves = 3, 3000
		var wg sync.WaitGroup
		for p := range uint32(players) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					v := atomic.LoadUint32(w)
					if v >= moves {
						return
					}
					if v%players != p {
						Wait(w, v, Forever)
						continue
					}
					atomic.StoreUint32(w, v+1)
					Wake(w, 1)
					// A player woken for nothing must not have eaten the
					// wake-up meant for the next one: Wake(1) above is the
					// only wake each move gets.
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("stalled at move %d of %d (a lost wake-up)", atomic.LoadUint32(w), moves)
		}
	})
}

func TestWindowsMillis(t *testing.T) {
	for _, c := range []struct {
		d      time.Duration
		ms     uint32
		capped bool
	}{
		{Forever, windows.INFINITE, false},
		{0, 0, false},
		{1, 1, false},
		{time.Millisecond, 1, false},
		{time.Millisecond + 1, 2, false},
		{1 << 62, windows.INFINITE - 1, true},
	} {
		ms, capped := millis(c.d)
		if ms != c.ms || capped != c.capped {
			t.Errorf("millis(%v) = %d, %v; want %d, %v", c.d, ms, capped, c.ms, c.capped)
		}
	}
}
