package proc

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"
)

// The kinfo_proc parsers, tested on every system. The offsets in kinfo.go
// were counted by hand from the C headers; here the compiler counts them
// again from Go structs that copy the C declarations member by member (on
// a 64-bit host Go lays out int32/int64/pointer members exactly as the LP64
// C ABI does), and the two must agree.

type timeval64 struct { // struct timeval on FreeBSD LP64
	sec  int64
	usec int64
}

type darwinTimeval struct { // struct timeval on macOS: { long; __int32_t }
	sec  int64
	usec int32
}

// darwinExternProcPrefix copies the start of struct extern_proc from xnu
// bsd/sys/proc.h.
type darwinExternProcPrefix struct {
	starttime darwinTimeval // p_un: union of two pointers and the timeval, 16 bytes
	vmspace   uintptr       // struct vmspace *p_vmspace
	sigacts   uintptr       // struct sigacts *p_sigacts
	flag      int32         // int p_flag
	stat      int8          // char p_stat
	pid       int32         // pid_t p_pid
}

// freebsdKinfoPrefix copies the start of struct kinfo_proc from FreeBSD
// sys/sys/user.h, up to ki_stat.
type freebsdKinfoPrefix struct {
	structsize int32      // int ki_structsize
	layout     int32      // int ki_layout
	ptrs       [8]uintptr // ki_args, ki_paddr, ki_addr, ki_tracep, ki_textvp, ki_fd, ki_vmspace, ki_wchan
	pid        int32      // pid_t ki_pid
	ids        [5]int32   // ki_ppid, ki_pgid, ki_tpgid, ki_sid, ki_tsid
	jobc       int16      // short ki_jobc
	spare1     int16      // short ki_spare_short1
	tdev11     uint32     // uint32_t ki_tdev_freebsd11
	sigs       [4][4]uint32
	creds      [5]uint32 // ki_uid, ki_ruid, ki_svuid, ki_rgid, ki_svgid
	ngroups    int16
	spare2     int16
	groups     [16]uint32 // KI_NGROUPS
	sizes      [6]int64   // ki_size, ki_rssize, ki_swrss, ki_tsize, ki_dsize, ki_ssize
	xstat      uint16
	acflag     uint16
	pctcpu     uint32
	estcpu     uint32
	slptime    uint32
	swtime     uint32
	cow        uint32
	runtime    uint64
	start      timeval64
	childtime  timeval64
	flag       int64
	kiflag     int64
	traceflag  int32
	stat       int8
}

func need64LE(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the mirror structs describe LP64 layouts; this host is not 64-bit")
	}
	var x uint16 = 1
	if *(*byte)(unsafe.Pointer(&x)) != 1 {
		t.Skip("the parsers read little-endian bytes; this host is big-endian")
	}
}

func TestDarwinOffsets(t *testing.T) {
	need64LE(t)
	var p darwinExternProcPrefix
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"p_starttime.tv_sec", unsafe.Offsetof(p.starttime) + unsafe.Offsetof(p.starttime.sec), darwinOffStartSec},
		{"p_starttime.tv_usec", unsafe.Offsetof(p.starttime) + unsafe.Offsetof(p.starttime.usec), darwinOffStartUsec},
		{"p_stat", unsafe.Offsetof(p.stat), darwinOffStat},
		{"p_pid", unsafe.Offsetof(p.pid), darwinOffPid},
		{"sizeof(p_un)", unsafe.Sizeof(p.starttime), 16},
	} {
		if c.got != c.want {
			t.Errorf("%s: the header gives offset %d, kinfo.go says %d", c.name, c.got, c.want)
		}
	}
}

func TestFreeBSDOffsets(t *testing.T) {
	need64LE(t)
	var k freebsdKinfoPrefix
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"ki_structsize", unsafe.Offsetof(k.structsize), freebsdOffStructsize},
		{"ki_pid", unsafe.Offsetof(k.pid), freebsdOffPid},
		{"ki_groups", unsafe.Offsetof(k.groups), 192},
		{"ki_size", unsafe.Offsetof(k.sizes), 256}, // also asserted by other readers of this struct
		{"ki_runtime", unsafe.Offsetof(k.runtime), 328},
		{"ki_start.tv_sec", unsafe.Offsetof(k.start), freebsdOffStartSec},
		{"ki_start.tv_usec", unsafe.Offsetof(k.start) + unsafe.Offsetof(k.start.usec), freebsdOffStartUsec},
		{"ki_stat", unsafe.Offsetof(k.stat), freebsdOffStat},
	} {
		if c.got != c.want {
			t.Errorf("%s: the header gives offset %d, kinfo.go says %d", c.name, c.got, c.want)
		}
	}
}

// bytesOf returns the memory of *v, padded with zeros to size.
func bytesOf[T any](v *T, size int) []byte {
	b := make([]byte, size)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v)))
	return b
}

// A start time to recognise: 2024-03-09 16:00:00.123456 UTC.
var sampleStart = time.Date(2024, 3, 9, 16, 0, 0, 123456000, time.UTC)

func TestParseDarwinKinfo(t *testing.T) {
	need64LE(t)
	p := darwinExternProcPrefix{
		starttime: darwinTimeval{sec: sampleStart.Unix(), usec: 123456},
		flag:      0x4004,
		stat:      2, // SRUN
		pid:       4242,
	}
	info, ok := parseDarwinKinfo(bytesOf(&p, darwinKinfoSize))
	if !ok {
		t.Fatal("a well-formed kinfo_proc did not parse")
	}
	if info.pid != 4242 || info.zombie || info.start != uint64(sampleStart.UnixMicro()) {
		t.Fatalf("parsed %+v, want pid 4242, running, start %d", info, sampleStart.UnixMicro())
	}

	p.stat = 5 // SZOMB
	if info, _ := parseDarwinKinfo(bytesOf(&p, darwinKinfoSize)); !info.zombie {
		t.Error("p_stat SZOMB not seen as a zombie")
	}

	for name, b := range map[string][]byte{
		"empty (no such process)": nil,
		"short":                   bytesOf(&p, darwinKinfoSize-8),
		"long":                    bytesOf(&p, darwinKinfoSize+8),
		"tv_usec out of range":    bytesOf(&darwinExternProcPrefix{starttime: darwinTimeval{sec: 1, usec: 1_000_000}}, darwinKinfoSize),
		"negative tv_sec":         bytesOf(&darwinExternProcPrefix{starttime: darwinTimeval{sec: -1}}, darwinKinfoSize),
	} {
		if _, ok := parseDarwinKinfo(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestParseFreeBSDKinfo(t *testing.T) {
	need64LE(t)
	k := freebsdKinfoPrefix{
		structsize: freebsdKinfoSize,
		pid:        31337,
		start:      timeval64{sec: sampleStart.Unix(), usec: 123456},
		stat:       3, // SSLEEP
	}
	info, ok := parseFreeBSDKinfo(bytesOf(&k, freebsdKinfoSize))
	if !ok {
		t.Fatal("a well-formed kinfo_proc did not parse")
	}
	if info.pid != 31337 || info.zombie || info.start != uint64(sampleStart.UnixMicro()) {
		t.Fatalf("parsed %+v, want pid 31337, running, start %d", info, sampleStart.UnixMicro())
	}
	k.stat = 5 // SZOMB
	if info, _ := parseFreeBSDKinfo(bytesOf(&k, freebsdKinfoSize)); !info.zombie {
		t.Error("ki_stat SZOMB not seen as a zombie")
	}

	bad := k
	bad.structsize = 1096 // another layout than the one described
	for name, b := range map[string][]byte{
		"short":                bytesOf(&k, freebsdKinfoSize-8),
		"other ki_structsize":  bytesOf(&bad, freebsdKinfoSize),
		"tv_usec out of range": bytesOf(&freebsdKinfoPrefix{structsize: freebsdKinfoSize, start: timeval64{usec: 1_000_000}}, freebsdKinfoSize),
	} {
		if _, ok := parseFreeBSDKinfo(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestBootRelativeStart(t *testing.T) {
	boot := timeval64{sec: sampleStart.Unix() - 3600, usec: 500000}
	bt := make([]byte, 16)
	binary.LittleEndian.PutUint64(bt, uint64(boot.sec))
	binary.LittleEndian.PutUint64(bt[8:], uint64(boot.usec))
	b, ok := parseTimeval(bt)
	if !ok || b != uint64(boot.sec)*1e6+uint64(boot.usec) {
		t.Fatalf("parseTimeval = %d, %v", b, ok)
	}
	up, ok := sinceBoot(uint64(sampleStart.UnixMicro()), b)
	if want := uint64(3600e6 - 500000 + 123456); !ok || up != want {
		t.Fatalf("sinceBoot = %d, %v; want %d", up, ok, want)
	}
	// A clock step moves the reported start and boot time together: the
	// time since boot, and so the tag, stays.
	const step = 90e6
	if up2, _ := sinceBoot(uint64(sampleStart.UnixMicro())+step, b+step); up2 != up {
		t.Fatalf("after a clock step: %d, want %d", up2, up)
	}
	if _, ok := sinceBoot(0, b); ok {
		t.Error("a start before boot was accepted")
	}
	if _, ok := parseTimeval(bt[:8]); ok {
		t.Error("a short timeval parsed")
	}
}

func TestVerdict(t *testing.T) {
	const start = 1_700_000_000_000_000
	id := ID{PID: 99, Start: tag(start)}
	if id.Start == unknownStart {
		t.Fatal("sample start folds to the unknown tag; pick another")
	}
	for _, c := range []struct {
		name string
		id   ID
		info procInfo
		r    lookupResult
		want bool
	}{
		{"running, same start", id, procInfo{start: start}, found, true},
		{"PID reused", id, procInfo{start: start + 1}, found, false},
		{"zombie", id, procInfo{start: start, zombie: true}, found, false},
		{"no such process", id, procInfo{}, gone, false},
		{"sysctl refused", id, procInfo{}, unknown, true},
		{"start not reported (swapped out)", id, procInfo{}, found, true},
		{"owner's start unknown", ID{PID: 99, Start: unknownStart}, procInfo{start: start + 1}, found, true},
		{"owner's start unknown, zombie", ID{PID: 99, Start: unknownStart}, procInfo{start: start, zombie: true}, found, false},
	} {
		if got := verdict(c.id, c.info, c.r); got != c.want {
			t.Errorf("%s: alive = %v, want %v", c.name, got, c.want)
		}
	}
}
