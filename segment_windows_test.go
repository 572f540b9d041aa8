package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/go-shm/shm/internal/futex"
	"github.com/go-shm/shm/internal/proc"
)

// Windows-specific behaviour of segments and of the wait/wake layer, with
// real mappings and real processes (under Wine in CI).

// winPattern is the byte expected at offset i of a segment in these tests.
func winPattern(i int) byte { return byte(i*7 + i>>8 + 1) }

func init() {
	// args: name, size, ... : opens each, checks its size and pattern, and
	// flips the last byte so the parent sees the child's write.
	registerChild("win-sizes", func(args []string) error {
		for i := 0; i+1 < len(args); i += 2 {
			name, size := args[i], atoi(args[i+1])
			s, err := Open(name)
			if err != nil {
				return err
			}
			if s.Size() != size || len(s.Bytes()) != size {
				s.Close()
				return fmt.Errorf("%s: Size %d, len(Bytes) %d, want %d", name, s.Size(), len(s.Bytes()), size)
			}
			b := s.Bytes()
			for _, off := range []int{0, size / 2, size - 1} {
				if b[off] != winPattern(off) {
					s.Close()
					return fmt.Errorf("%s: byte %d is %d, want %d", name, off, b[off], winPattern(off))
				}
			}
			b[size-1] ^= 0xff
			s.Close()
		}
		return nil
	})
}

func TestWindowsSizes(t *testing.T) {
	sizes := []int{1, 7, 100, 4095, 4096, 4097, 8192, 65536 + 3, 1<<20 + 1}
	var args []string
	for _, size := range sizes {
		name := testName(t)
		s, err := Create(name, size)
		if err != nil {
			t.Fatalf("Create(%d): %v", size, err)
		}
		defer s.Close()
		if s.Size() != size || len(s.Bytes()) != size {
			t.Fatalf("Create(%d): Size %d, len(Bytes) %d", size, s.Size(), len(s.Bytes()))
		}
		b := s.Bytes()
		for _, off := range []int{0, size / 2, size - 1} {
			b[off] = winPattern(off)
		}
		// An opener in this process sees the same size and bytes.
		o, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if o.Size() != size || o.Bytes()[size-1] != winPattern(size-1) {
			t.Fatalf("Open of a %d-byte segment: Size %d, last byte %d", size, o.Size(), o.Bytes()[size-1])
		}
		o.Close()
		args = append(args, name, strconv.Itoa(size))
	}
	startChild(t, "win-sizes", args...).wait(60 * time.Second)
	for i := 0; i < len(args); i += 2 {
		s, err := Open(args[i])
		if err != nil {
			t.Fatal(err)
		}
		size := atoi(args[i+1])
		if got, want := s.Bytes()[size-1], winPattern(size-1)^0xff; got != want {
			t.Errorf("%d-byte segment: the child's write is not seen (last byte %d, want %d)", size, got, want)
		}
		s.Close()
	}
}

// TestWindowsLargeSegment checks a size above 4 GiB, which CreateFileMapping
// takes as two 32-bit words: the opener must see the same size and bytes at
// offsets past 4 GiB. Only two pages are touched.
func TestWindowsLargeSegment(t *testing.T) {
	const size = 4<<30 + 4097
	name := testName(t)
	s, err := Create(name, size)
	if err != nil {
		t.Skipf("the host refuses a %d-byte paging-file mapping: %v", size, err)
	}
	defer s.Close()
	if s.Size() != size {
		t.Fatalf("Size = %d, want %d", s.Size(), size)
	}
	b := s.Bytes()
	b[4<<30] = 0x42
	b[size-1] = 0x43
	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Size() != size {
		t.Fatalf("opener's Size = %d, want %d", o.Size(), size)
	}
	if o.Bytes()[4<<30] != 0x42 || o.Bytes()[size-1] != 0x43 {
		t.Fatal("the opener does not see the bytes past 4 GiB")
	}
}

func TestWindowsNamespaces(t *testing.T) {
	var session uint32
	if err := windows.ProcessIdToSessionId(windows.GetCurrentProcessId(), &session); err != nil {
		t.Fatal(err)
	}
	local := testName(t)
	s, err := Create(local, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if o, err := Open(local); err != nil {
		t.Fatalf("Open without Global: %v", err)
	} else {
		o.Close()
	}

	global := testName(t)
	t.Cleanup(func() { removeGlobal(global) })
	g, err := Create(global, 64, Global())
	if errors.Is(err, fs.ErrPermission) {
		t.Skipf("creating in Global\\ needs SeCreateGlobalPrivilege: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Bytes()[0] = 9
	o, err := Open(global, Global())
	if err != nil {
		t.Fatalf("Open with Global: %v", err)
	}
	if o.Bytes()[0] != 9 {
		t.Error("Global\\ opener does not see the creator's byte")
	}
	o.Close()

	if session == 0 {
		t.Skip("in session 0, Local\\ is the global namespace: nothing more to tell apart")
	}
	if _, err := Open(global); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a Global\\ segment without Global = %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(local, Global()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a Local\\ segment with Global = %v, want fs.ErrNotExist", err)
	}
	// The same name in the other namespace is another segment.
	l2, err := Create(global, 32)
	if err != nil {
		t.Fatalf("Create in Local\\ of a name taken in Global\\: %v", err)
	}
	if l2.Bytes()[0] != 0 {
		t.Error("Local\\ segment shares bytes with the Global\\ one")
	}
	l2.Close()
}

// removeGlobal is testName's cleanup for a Global\ segment.
func removeGlobal(name string) {
	if s, err := Open(name, Global()); err == nil {
		s.SetOwner(true)
		s.Close()
	}
}

func init() {
	// args: name: opens read-only and writes, which must fault.
	registerChild("win-write-readonly", func(args []string) error {
		s, err := Open(args[0], ReadOnly())
		if err != nil {
			return err
		}
		fmt.Println("opened")
		s.Bytes()[0] = 1
		return errors.New("writing to a read-only mapping did not fault")
	})
}

func TestWindowsReadOnly(t *testing.T) {
	name := testName(t)
	s, err := Create(name, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Bytes()[0] = 7
	r, err := Open(name, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.ReadOnly() || r.Size() != 100 || r.Bytes()[0] != 7 {
		t.Fatalf("read-only opener: ReadOnly %v, Size %d, byte %d", r.ReadOnly(), r.Size(), r.Bytes()[0])
	}
	var mbi windows.MemoryBasicInformation
	if err := windows.VirtualQuery(uintptr(unsafe.Pointer(&r.Bytes()[0])), &mbi, unsafe.Sizeof(mbi)); err != nil {
		t.Fatal(err)
	}
	if mbi.Protect != windows.PAGE_READONLY {
		t.Errorf("read-only view has protection %#x, want PAGE_READONLY", mbi.Protect)
	}
	if err := windows.VirtualQuery(uintptr(unsafe.Pointer(&s.Bytes()[0])), &mbi, unsafe.Sizeof(mbi)); err != nil {
		t.Fatal(err)
	}
	if mbi.Protect != windows.PAGE_READWRITE {
		t.Errorf("creator's view has protection %#x, want PAGE_READWRITE", mbi.Protect)
	}
	c := startChild(t, "win-write-readonly", name)
	err = c.waitErr(60 * time.Second)
	if err == nil || !strings.Contains(c.output(), "opened") {
		t.Fatalf("child writing to a read-only mapping: %v\n%s", err, c.output())
	}
	if s.Bytes()[0] != 7 {
		t.Fatal("the read-only opener's write went through")
	}
}

// TestWindowsRemove shows what Remove does on Windows: new openers no longer
// find the segment, mappings already open keep working, and the name stays
// taken until the last handle closes.
func TestWindowsRemove(t *testing.T) {
	name := testName(t)
	s, err := Create(name, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open after Remove = %v, want fs.ErrNotExist", err)
	}
	if err := Remove(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second Remove = %v, want fs.ErrNotExist", err)
	}
	s.Bytes()[3] = 5
	if o.Bytes()[3] != 5 {
		t.Fatal("mappings stopped sharing after Remove")
	}
	if _, err := Create(name, 10); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create while the removed segment is still open = %v, want fs.ErrExist", err)
	}
	s.Close()
	o.Close()
	n, err := Create(name, 20)
	if err != nil {
		t.Fatalf("Create after every handle closed: %v", err)
	}
	defer n.Close()
	if n.Size() != 20 || n.Bytes()[3] != 0 {
		t.Fatal("the new segment is not fresh")
	}
	if _, err := Open("bad\\name"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Open of a name with a backslash = %v, want ErrInvalidName", err)
	}
	if _, err := Open(testName(t)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing name = %v, want fs.ErrNotExist", err)
	}
}

// handleCount returns how many handles this process has open:
// GetProcessHandleCount where it works (Wine's answers 0), else a count of
// this process's entries in the system's handle table.
func handleCount(t testing.TB) int {
	var n uint32
	if r, _, _ := procGetProcessHandleCount.Call(uintptr(windows.CurrentProcess()), uintptr(unsafe.Pointer(&n))); r != 0 && n != 0 {
		return int(n)
	}
	// SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX
	type entry struct {
		object, pid, handle uintptr
		access              uint32
		backTrace, typ      uint16
		attributes          uint32
		reserved            uint32
	}
	buf := make([]byte, 1<<20)
	for {
		var got uint32
		err := windows.NtQuerySystemInformation(windows.SystemExtendedHandleInformation, unsafe.Pointer(&buf[0]), uint32(len(buf)), &got)
		if err == windows.STATUS_INFO_LENGTH_MISMATCH && len(buf) < 1<<28 {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			t.Fatalf("cannot count handles: GetProcessHandleCount says 0 and NtQuerySystemInformation: %v", err)
		}
		break
	}
	num := *(*uintptr)(unsafe.Pointer(&buf[0]))
	if uintptr(len(buf)-16)/unsafe.Sizeof(entry{}) < num {
		t.Fatalf("handle table of %d entries does not fit its buffer", num)
	}
	me := uintptr(windows.GetCurrentProcessId())
	c := 0
	for _, e := range unsafe.Slice((*entry)(unsafe.Pointer(&buf[16])), num) {
		if e.pid == me {
			c++
		}
	}
	return c
}

var procGetProcessHandleCount = windows.NewLazySystemDLL("kernel32.dll").NewProc("GetProcessHandleCount")

// TestWindowsHandleCount checks the measuring stick of the cleanup test: it
// must see handles come and go (give or take a few of the runtime's own).
func TestWindowsHandleCount(t *testing.T) {
	const n = 200
	before := handleCount(t)
	var hs []windows.Handle
	for range n {
		h, err := windows.CreateEvent(nil, 0, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	during := handleCount(t)
	for _, h := range hs {
		windows.CloseHandle(h)
	}
	after := handleCount(t)
	if during < before+n-20 || after > during-n+20 {
		t.Fatalf("handle counts %d, %d with %d more, %d after closing them", before, during, n, after)
	}
}

// TestWindowsHandleCleanup opens and closes segments, waits and wakes
// through them, and locks and unlocks a Mutex in one, thousands of times:
// the process's handle count must not grow (a leak of one handle per cycle
// would add thousands).
func TestWindowsHandleCleanup(t *testing.T) {
	name := testName(t)
	s, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	word := (*uint32)(unsafe.Pointer(&s.Bytes()[64]))
	mu, err := View[Mutex](s.Bytes()[512:])
	if err != nil {
		t.Fatal(err)
	}
	counter := (*uint64)(unsafe.Pointer(&s.Bytes()[1024]))
	cycle := func(i int) {
		o, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			c, err := Create(testNameNoCleanup(), 100)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if i%5 == 0 {
			pingPong(t, word, 2)
		}
		if i%50 == 0 {
			contend(t, mu, counter, 20)
		}
		mu.Lock()
		*counter++
		mu.Unlock()
	}
	for i := range 100 { // warm up: the runtime's own handles, lazy DLLs
		cycle(i)
	}
	before := handleCount(t)
	for i := range 10000 {
		cycle(i)
	}
	after := handleCount(t)
	t.Logf("handles: %d before, %d after 10000 cycles", before, after)
	if after > before+16 {
		t.Fatalf("handle count grew from %d to %d over 10000 cycles", before, after)
	}
}

// contend has two goroutines take the mutex n times each, so that they
// sleep on it and wake each other.
func contend(t testing.TB, mu *Mutex, counter *uint64, n int) {
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				mu.Lock()
				*counter++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func testNameNoCleanup() string {
	return fmt.Sprintf("%s%d-%d", testPrefix, os.Getpid(), nameCounter.Add(1))
}

// pingPong passes the word back and forth between two goroutines rounds
// times, each waiting in futex.Wait for its turn: a lost wake-up hangs it
// (the caller's watchdog, the test timeout, then reports it).
func pingPong(t testing.TB, w *uint32, rounds uint32) {
	atomic.StoreUint32(w, 0)
	var wg sync.WaitGroup
	player := func(parity uint32) {
		defer wg.Done()
		for {
			v := atomic.LoadUint32(w)
			if v >= 2*rounds {
				return
			}
			if v%2 != parity {
				if err := futex.Wait(w, v, futex.Forever); err != nil {
					t.Error(err)
					return
				}
				continue
			}
			atomic.StoreUint32(w, v+1)
			futex.Wake(w, futex.All)
		}
	}
	wg.Add(2)
	go player(0)
	go player(1)
	wg.Wait()
}

func init() {
	// args: name, parity, rounds: plays one side of a ping-pong on the word
	// at offset 128, and on offset 256 (same bucket or not, it must work)
	// counts itself into a Wake(All) test.
	registerChild("win-futex", func(args []string) error {
		s, err := Open(args[0])
		if err != nil {
			return err
		}
		defer s.Close()
		parity, rounds := uint32(atoi(args[1])), uint32(atoi(args[2]))
		w := (*uint32)(unsafe.Pointer(&s.Bytes()[128]))
		for {
			v := atomic.LoadUint32(w)
			if v >= 2*rounds {
				break
			}
			if v%2 != parity {
				if err := futex.Wait(w, v, 30*time.Second); err == futex.ErrTimeout {
					return fmt.Errorf("no wake-up within 30 s at round %d (a lost wake-up)", v)
				} else if err != nil {
					return err
				}
				continue
			}
			atomic.StoreUint32(w, v+1)
			futex.Wake(w, 1)
		}
		// Wake(All): announce ourselves, then sleep until the gate opens.
		gate := (*uint32)(unsafe.Pointer(&s.Bytes()[256]))
		count := (*uint32)(unsafe.Pointer(&s.Bytes()[260]))
		atomic.AddUint32(count, 1)
		deadline := time.Now().Add(30 * time.Second)
		for atomic.LoadUint32(gate) == 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return errors.New("not released by Wake(All) within 30 s")
			}
			futex.Wait(gate, 0, left)
		}
		return nil
	})
}

// TestWindowsFutexProcesses plays ping-pong between this process and a child
// through futex.Wait/Wake on a word in a segment (each move wakes the other
// process, so any lost wake-up stalls it), then releases several sleeping
// processes with one Wake(All).
func TestWindowsFutexProcesses(t *testing.T) {
	name := testName(t)
	s, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rounds = 500
	c := startChild(t, "win-futex", name, "1", strconv.Itoa(rounds))
	others := []*child{
		startChild(t, "win-futex", name, "1", "0"),
		startChild(t, "win-futex", name, "1", "0"),
	}
	w := (*uint32)(unsafe.Pointer(&s.Bytes()[128]))
	start := time.Now()
	for {
		v := atomic.LoadUint32(w)
		if v >= 2*rounds {
			break
		}
		if v%2 != 0 {
			if err := futex.Wait(w, v, 30*time.Second); err == futex.ErrTimeout {
				t.Fatalf("no wake-up from the child within 30 s at round %d (a lost wake-up)\n%s", v, c.output())
			}
			continue
		}
		atomic.StoreUint32(w, v+1)
		futex.Wake(w, 1)
	}
	t.Logf("%d round trips between two processes in %v", rounds, time.Since(start))

	count := (*uint32)(unsafe.Pointer(&s.Bytes()[260]))
	for atomic.LoadUint32(count) < 3 {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("only %d of 3 children reached the gate", atomic.LoadUint32(count))
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let them go to sleep
	gate := (*uint32)(unsafe.Pointer(&s.Bytes()[256]))
	atomic.StoreUint32(gate, 1)
	futex.Wake(gate, futex.All)
	c.wait(30 * time.Second)
	for _, o := range others {
		o.wait(30 * time.Second)
	}
}

func TestWindowsFutexTimeout(t *testing.T) {
	name := testName(t)
	s, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := (*uint32)(unsafe.Pointer(&s.Bytes()[8]))
	for _, d := range []time.Duration{0, time.Microsecond, 30 * time.Millisecond} {
		start := time.Now()
		err := futex.Wait(w, 0, d)
		for err == nil && time.Since(start) < d {
			err = futex.Wait(w, 0, d-time.Since(start))
		}
		if err != futex.ErrTimeout {
			t.Fatalf("Wait(%v) = %v, want ErrTimeout", d, err)
		}
		if el := time.Since(start); el < d || el > d+5*time.Second {
			t.Fatalf("Wait(%v) returned after %v", d, el)
		}
	}
	atomic.StoreUint32(w, 1)
	start := time.Now()
	if err := futex.Wait(w, 0, time.Minute); err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("Wait on a changed word = %v after %v", err, time.Since(start))
	}
	if n := futex.Wake(w, futex.All); n != 0 {
		t.Fatalf("Wake with no sleeper reported %d", n)
	}
}

func init() {
	// args: name: reports its own process identity in the segment and
	// waits (bounded) for the parent to let it go.
	registerChild("win-proc", func(args []string) error {
		s, err := Open(args[0])
		if err != nil {
			return err
		}
		defer s.Close()
		id := proc.Self()
		b := s.Bytes()
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[8])), id.Start)
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[0])), id.PID)
		release := (*uint32)(unsafe.Pointer(&b[16]))
		for deadline := time.Now().Add(30 * time.Second); atomic.LoadUint32(release) == 0; {
			if time.Now().After(deadline) {
				return errors.New("never released")
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	})
}

func TestWindowsProcessIdentity(t *testing.T) {
	self := proc.Self()
	if self.PID*4 != windows.GetCurrentProcessId() || self.Start == 0 {
		t.Fatalf("Self() = %+v for PID %d", self, windows.GetCurrentProcessId())
	}
	if !proc.Alive(self) {
		t.Fatal("this process is not alive")
	}
	name := testName(t)
	s, err := Create(name, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := startChild(t, "win-proc", name)
	b := s.Bytes()
	pidw := (*uint32)(unsafe.Pointer(&b[0]))
	for deadline := time.Now().Add(30 * time.Second); atomic.LoadUint32(pidw) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the child never reported its identity")
		}
		time.Sleep(time.Millisecond)
	}
	id := proc.ID{PID: atomic.LoadUint32(pidw), Start: atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[8])))}
	if int(id.PID*4) != c.cmd.Process.Pid {
		t.Fatalf("child says PID/4 = %d, its PID is %d", id.PID, c.cmd.Process.Pid)
	}
	if !proc.Alive(id) {
		t.Fatal("the running child is not alive")
	}
	if proc.Alive(proc.ID{PID: id.PID, Start: id.Start + 1}) {
		t.Fatal("a process with the child's PID but another start time is alive")
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[16])), 1)
	c.wait(30 * time.Second)
	if proc.Alive(id) {
		t.Fatal("the child that exited is still alive")
	}
}

func TestWindowsLinkFiles(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "seg.link")
	name := testName(t)
	s, err := Create(name, 64, WithLink(link))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Create(testName(t), 64, WithLink(link)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create over a live link = %v, want fs.ErrExist", err)
	}
	o, err := OpenLink(link)
	if err != nil {
		t.Fatal(err)
	}
	if o.Name() != name || o.Orphaned() {
		t.Fatalf("OpenLink: name %q, orphaned %v", o.Name(), o.Orphaned())
	}
	o.Close()

	// A symbolic link to a link file is never followed.
	sym := filepath.Join(dir, "sym.link")
	if err := os.Symlink(link, sym); err != nil {
		t.Logf("no symbolic links here (%v): skipping that part", err)
	} else if _, err := OpenLink(sym); err == nil {
		t.Fatal("OpenLink followed a symbolic link")
	}

	// The lock on a link file does not block its readers.
	f, err := openNoFollow(link)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLink(link); err != nil {
		t.Fatalf("ReadLink while the link is locked: %v", err)
	}
	if err := unlockFile(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the owner's Close left the link file: %v", err)
	}
}

// TestWindowsMappingSecurity: both the creator and an opener (whose handle
// has only map rights) can read the mapping's security descriptor, which
// the futex events copy.
func TestWindowsMappingSecurity(t *testing.T) {
	name := testName(t)
	s, err := Create(name, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, seg := range []*Segment{s, o} {
		if sd := mappingSecurity(seg.sys.h, seg.sys.obj); sd == nil {
			t.Fatalf("cannot read the security of the mapping through %v's handle", seg.sys.h)
		} else {
			t.Logf("mapping security: %q", sd.String())
		}
	}
}

// TestWindowsTrailerSizeFlip: a peer rewrites the size in the trailer while
// Open reads it. Open must read it once: it returns a segment of the size
// it checked, or an error, never a slice past the mapping (a size checked
// and then read again gave Bytes() of 1 TiB over a 4 KiB view).
func TestWindowsTrailerSizeFlip(t *testing.T) {
	const size = 100
	name := testName(t)
	s, err := Create(name, size)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := trailerAt(s.sys.view, s.sys.r)
	stop := make(chan struct{})
	var flipper sync.WaitGroup
	flipper.Add(1)
	go func() {
		defer flipper.Done()
		for {
			select {
			case <-stop:
				atomic.StoreUint64(&tr.size, size)
				return
			default:
			}
			for range 64 {
				atomic.StoreUint64(&tr.size, 1<<40)
				atomic.StoreUint64(&tr.size, size)
			}
		}
	}()
	var opened, failed int
	sizes := map[int]int{}
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		o, err := Open(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidSize) {
				close(stop)
				t.Fatalf("Open while the size flips: %v", err)
			}
			failed++
			continue
		}
		opened++
		if n := len(o.Bytes()); n != size {
			sizes[n]++
		}
		o.Close()
	}
	close(stop)
	flipper.Wait()
	t.Logf("%d opens, %d refused", opened, failed)
	if len(sizes) > 0 {
		t.Fatalf("Open gave segments of the wrong size (size: count): %v", sizes)
	}
	if opened == 0 {
		t.Fatal("no Open succeeded")
	}
}

// TestWindowsRemoveRacesCreate runs Remove against a concurrent Create of the
// same name, many times. Remove must either remove the segment (Open then
// fails with fs.ErrNotExist) or report fs.ErrNotExist (it did not exist
// yet): never success while the segment stays openable. RemoveLink takes
// the same path.
func TestWindowsRemoveRacesCreate(t *testing.T) {
	const trials = 300
	var removed, notYet, stillThere int
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < trials && time.Now().Before(deadline); i++ {
		name := testName(t)
		start := make(chan struct{})
		var seg *Segment
		var cerr error
		created := make(chan struct{})
		go func() {
			<-start
			seg, cerr = Create(name, 64)
			close(created)
		}()
		close(start)
		// Remove until it finds the name: the first time it does is, as
		// often as not, while Create is still at work on it.
		var rerr error
		for {
			finished := false
			select {
			case <-created:
				finished = true
			default:
			}
			rerr = Remove(name)
			if finished || !errors.Is(rerr, fs.ErrNotExist) {
				break
			}
		}
		<-created
		if cerr != nil {
			t.Fatalf("trial %d: Create: %v", i, cerr)
		}
		switch {
		case rerr == nil:
			o, err := Open(name)
			if err == nil {
				o.Close()
				stillThere++
			} else if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("trial %d: Open after a successful Remove: %v", i, err)
			} else {
				removed++
			}
		case errors.Is(rerr, fs.ErrNotExist):
			notYet++
		default:
			t.Fatalf("trial %d: Remove: %v", i, rerr)
		}
		seg.Close()
	}
	t.Logf("Remove removed %d, found nothing yet %d, reported success but removed nothing %d", removed, notYet, stillThere)
	if stillThere > 0 {
		t.Fatalf("Remove reported success %d times while the segment stayed openable", stillThere)
	}
}
