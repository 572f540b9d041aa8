package futex

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// The events' security: the same access as the mapping's (so that whoever
// may open the segment for writing may set them, whoever made them), and
// what a waker does when it is refused all the same.

type ace struct {
	typ  byte
	mask uint32
	sid  string
}

func listACL(t *testing.T, acl *windows.ACL) []ace {
	t.Helper()
	var out []ace
	for i := range uint32(acl.AceCount) {
		var a *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(acl, i, &a); err != nil {
			t.Fatal(err)
		}
		sid := (*windows.SID)(unsafe.Pointer(&a.SidStart))
		out = append(out, ace{a.Header.AceType, uint32(a.Mask), sid.String()})
	}
	return out
}

func TestWindowsMirrorDACL(t *testing.T) {
	const user = "S-1-5-21-1-2-3-1000"
	sd, err := windows.SecurityDescriptorFromString("D:" +
		"(A;;0xF001F;;;" + user + ")" + // SECTION_ALL_ACCESS
		"(A;;0x4;;;S-1-5-32-545)" + // FILE_MAP_READ only
		"(D;;0x2;;;S-1-5-32-546)" + // denied FILE_MAP_WRITE
		"(A;;GA;;;SY)" + // GENERIC_ALL, as Wine keeps it
		"(A;;GW;;;S-1-5-32-547)") // GENERIC_WRITE
	if err != nil {
		t.Fatal(err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		t.Fatal(err)
	}
	ev := mirrorDACL(dacl)
	if ev == nil {
		t.Fatal("mirrorDACL gave up on allowed and denied entries")
	}
	const all = windows.EVENT_ALL_ACCESS
	const std = windows.DELETE | windows.READ_CONTROL | windows.WRITE_DAC | windows.WRITE_OWNER
	want := []ace{
		{windows.ACCESS_ALLOWED_ACE_TYPE, std | windows.SYNCHRONIZE | windows.EVENT_MODIFY_STATE | eventQueryState, user},
		{windows.ACCESS_ALLOWED_ACE_TYPE, windows.SYNCHRONIZE | eventQueryState, "S-1-5-32-545"},
		{windows.ACCESS_DENIED_ACE_TYPE, windows.EVENT_MODIFY_STATE, "S-1-5-32-546"},
		{windows.ACCESS_ALLOWED_ACE_TYPE, all, "S-1-5-18"},
		{windows.ACCESS_ALLOWED_ACE_TYPE, windows.SYNCHRONIZE | windows.EVENT_MODIFY_STATE, "S-1-5-32-547"},
	}
	got := listACL(t, ev)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events' DACL\n got  %x\n want %x", got, want)
	}
	// The mapping's own DACL is left as it was.
	if m := listACL(t, dacl); m[0].mask != 0xF001F {
		t.Fatalf("mirrorDACL changed the mapping's DACL: %x", m)
	}

	// An entry of another kind (an object entry here): no guessing, the
	// default security instead.
	acl, b := copyACL(dacl)
	b[8] = 5 // ACCESS_ALLOWED_OBJECT_ACE_TYPE
	if mirrorDACL(acl) != nil {
		t.Fatal("mirrorDACL translated an entry of unknown kind")
	}
	if sas := eventSecurity(nil); len(sas) != 1 || sas[0] != nil {
		t.Fatalf("eventSecurity(nil) = %v, want only the default", sas)
	}
}

// eventOf returns the name of the event that a sleeper on w sleeps on now.
func eventOf(w *uint32) *uint16 {
	r := lookup(w)
	b, bw := r.bucket(w)
	var buf nameBuf
	name := r.eventName(&buf, b, genOf(atomic.LoadUint64(bw)))
	n := windows.UTF16PtrToString(name)
	p, _ := windows.UTF16PtrFromString(n)
	return p
}

// TestWindowsEventSecurity checks that a sleeper's event carries the
// mapping's access, translated, and that a waker may set it.
func TestWindowsEventSecurity(t *testing.T) {
	w := mapped(t) // a DACL for this user and SYSTEM
	done := sleeper(w)
	waitAsleep(t, w)
	name := eventOf(w)
	h, err := windows.OpenEvent(windows.READ_CONTROL|windows.EVENT_MODIFY_STATE, false, name)
	if err != nil {
		t.Fatalf("the waker's access to the sleeper's event: %v", err)
	}
	sd, err := windows.GetSecurityInfo(h, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION|windows.LABEL_SECURITY_INFORMATION)
	windows.CloseHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("event security: %v", sd)
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		t.Fatalf("the event has no DACL of its own (%v): it got the default security", err)
	}
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	got := listACL(t, dacl)
	want := []ace{
		{windows.ACCESS_ALLOWED_ACE_TYPE, windows.EVENT_ALL_ACCESS, u.User.Sid.String()},
		{windows.ACCESS_ALLOWED_ACE_TYPE, windows.EVENT_ALL_ACCESS, "S-1-5-18"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("event DACL %x, want %x", got, want)
	}
	if aboveMedium() {
		// Elevated (Wine's user is): an explicit Medium label, not ours.
		sacl, _, err := sd.SACL()
		if err != nil || sacl == nil {
			t.Fatalf("an elevated sleeper's event has no label (%v)", err)
		}
		if got := listACL(t, sacl); len(got) != 1 || got[0].typ != systemMandatoryLabelACE || got[0].sid != "S-1-16-8192" {
			t.Fatalf("event label %x, want Medium", got)
		}
	}
	atomic.StoreUint32(w, 1)
	Wake(w, All)
	released(t, done, 5*time.Second, "sleeper")
}

// TestWindowsWakeDenied: an event that the waker may not set (made by
// someone else with that name, or under a DACL that changed since). The
// sleeper must still be released, by the backstop, and the bucket's later
// sleepers sleep in short steps.
func TestWindowsWakeDenied(t *testing.T) {
	w := mapped(t)
	r := lookup(w)
	b, bw := r.bucket(w)
	g := genOf(atomic.LoadUint64(bw))
	// Make the events of the next two generations first, waitable by
	// anyone, settable by no one.
	sd, err := windows.SecurityDescriptorFromString("D:(A;;0x100000;;;WD)")
	if err != nil {
		t.Fatal(err)
	}
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
	for _, gen := range []uint32{g, g + 1} {
		var buf nameBuf
		h, err := windows.CreateEventEx(sa, r.eventName(&buf, b, gen), windows.CREATE_EVENT_MANUAL_RESET, windows.SYNCHRONIZE)
		if err != nil {
			t.Fatal(err)
		}
		defer windows.CloseHandle(h)
		if _, err := windows.OpenEvent(windows.EVENT_MODIFY_STATE, false, r.eventName(&buf, b, gen)); err != windows.ERROR_ACCESS_DENIED {
			t.Skipf("the system lets us set an event whose DACL forbids it (%v): nothing to test", err)
		}
	}

	setBackstop(t, 300*time.Millisecond)
	done := sleeper(w)
	waitAsleep(t, w)
	atomic.StoreUint32(w, 1)
	start := time.Now()
	Wake(w, All)
	if !released(t, done, 5*time.Second, "sleeper on a refused event") {
		return
	}
	t.Logf("released %v after the refused Wake", time.Since(start))
	if atomic.LoadUint64(bw)&deniedBit == 0 {
		t.Fatal("the refused Wake did not mark the bucket")
	}

	// The next sleeper of the bucket sleeps on generation g+1, refused too:
	// with the backstop taken away, the short steps must release it.
	setBackstop(t, time.Hour)
	atomic.StoreUint32(w, 0)
	done = sleeper(w)
	waitAsleep(t, w)
	atomic.StoreUint32(w, 1)
	start = time.Now()
	Wake(w, All)
	released(t, done, 5*time.Second, "later sleeper of a marked bucket")
	if d := time.Since(start); d > time.Second {
		t.Errorf("the later sleeper took %v", d)
	}
}
