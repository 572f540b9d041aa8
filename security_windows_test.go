package shm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Owner checks on Windows (trust_windows.go). Every process of a test runs
// as the same user, so "another user" is an owner SID set on the object:
//
//   - a mapping: created with security attributes that name another owner,
//     or given one afterwards (SetSecurityInfo on the creator's handle).
//     Windows allows that only with SeRestorePrivilege (ERROR_INVALID_OWNER
//     otherwise: those tests skip); Wine allows any owner.
//   - a link file: SetNamedSecurityInfo with another owner, the same way on
//     Windows. Wine accepts that call but ignores it: it derives a file's
//     owner from its Unix owner (this user's SID if it is Wine's own uid,
//     ANONYMOUS LOGON (S-1-5-7) otherwise). So under Wine, as root, the test
//     gives the file to another Unix user with chown, which Wine can run as
//     a Unix program; elsewhere those tests skip.
//
// Under Wine the process is always an administrator (its token holds
// BUILTIN\Administrators, enabled), so RemoveLink is tried only in the role
// of root on Unix; the refusals of an unprivileged caller are tested on the
// decision alone (TestWindowsLinkDecision).

var (
	anonymousSID, _ = windows.StringToSid("S-1-5-7")
	strangerSID, _  = windows.StringToSid("S-1-5-21-1-2-3-1001") // a user of no domain here
)

// ownedAttrs returns security attributes naming owner (and nothing else).
func ownedAttrs(t *testing.T, owner *windows.SID) *windows.SecurityAttributes {
	t.Helper()
	sd, err := windows.NewSecurityDescriptor()
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.SetOwner(owner, false); err != nil {
		t.Fatal(err)
	}
	return &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
}

// rawMapping creates a 4096-byte mapping named name in Local\, as another
// program would (no trailer), with the security attributes sa, and returns
// its owner as the system reports it (nil if it has none).
func rawMapping(t *testing.T, name string, sa *windows.SecurityAttributes) *windows.SID {
	t.Helper()
	n, err := windows.UTF16PtrFromString(`Local\` + name)
	if err != nil {
		t.Fatal(err)
	}
	h, err := windows.CreateFileMapping(windows.InvalidHandle, sa, windows.PAGE_READWRITE, 0, 4096, n)
	if errors.Is(err, windows.ERROR_INVALID_OWNER) {
		t.Skipf("this system does not let a process name another owner (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { windows.CloseHandle(h) })
	sid, err := ownerOf(h, windows.SE_KERNEL_OBJECT)
	if err != nil {
		t.Logf("owner of the raw mapping: %v", err)
		return nil
	}
	return sid
}

// giveSegment makes sid the owner of the mapping of s (the creator's handle
// may change it).
func giveSegment(t *testing.T, s *Segment, sid *windows.SID) {
	t.Helper()
	err := windows.SetSecurityInfo(s.sys.h, windows.SE_KERNEL_OBJECT, windows.OWNER_SECURITY_INFORMATION, sid, nil, nil, nil)
	if errors.Is(err, windows.ERROR_INVALID_OWNER) {
		t.Skipf("this system does not let a process name another owner (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ownerOf(s.sys.h, windows.SE_KERNEL_OBJECT); err != nil || !got.Equals(sid) {
		t.Fatalf("the segment's owner is %v (%v) after setting it to %v", got, err, sid)
	}
}

var wineUnixName = windows.NewLazySystemDLL("kernel32.dll").NewProc("wine_get_unix_file_name")

// giveFile makes the file at path belong to someone else and returns that
// owner's SID, or skips the test if it cannot (see the comment at the top).
func giveFile(t *testing.T, path string) *windows.SID {
	t.Helper()
	me, err := self()
	if err != nil {
		t.Fatal(err)
	}
	owner := func() *windows.SID {
		sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION)
		if err != nil {
			t.Fatal(err)
		}
		sid, _, err := sd.Owner()
		if err != nil || sid == nil {
			t.Fatalf("the file has no owner (%v)", err)
		}
		return sid
	}
	// Windows (with SeRestorePrivilege enabled).
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION, strangerSID, nil, nil, nil)
	if sid := owner(); !me.mine(sid) {
		return sid
	}
	t.Logf("SetNamedSecurityInfo(owner %v): %v, but the file is still this user's", strangerSID, err)
	// Wine: give it to another Unix user (nobody).
	if wineUnixName.Find() != nil {
		t.Skip("cannot give a file to another owner here")
	}
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := wineUnixName.Call(uintptr(unsafe.Pointer(p)))
	if r == 0 {
		t.Fatalf("wine_get_unix_file_name(%s) failed", path)
	}
	unix := windows.BytePtrToString((*byte)(addr(r))) // on Wine's heap
	// Wine starts a Unix program but gives no handle to wait on: watch
	// the owner change instead.
	proc, err := os.StartProcess(`Z:\bin\chown`, []string{"chown", "65534", unix}, &os.ProcAttr{Files: []*os.File{nil, os.Stderr, os.Stderr}})
	if err != nil {
		t.Skipf("cannot run chown under Wine: %v", err)
	}
	proc.Release()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if sid := owner(); !me.mine(sid) {
			t.Logf("under Wine: %s chowned to uid 65534, now owned by %s", path, sidName(sid))
			return sid
		}
	}
	t.Skip("chown 65534 did not change the file's owner (Wine not running as root?)")
	return nil
}

// mustRefuse checks that err is an owner refusal that names the way out.
func mustRefuse(t *testing.T, what string, err error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("%s: %v, want fs.ErrPermission", what, err)
	}
	for _, m := range append(mentions, "TrustAnyOwner()") {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: the error does not mention %q: %v", what, m, err)
		}
	}
}

// TestWindowsOwnSegmentOwner: Create names the token's default owner as the
// mapping's owner (Wine would leave it ownerless), which this process
// trusts, and an opener reads it through a handle of its own.
func TestWindowsOwnSegmentOwner(t *testing.T) {
	me, err := self()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("user %s, default owner %s, privileged %v", sidName(me.user), sidName(me.owner), me.privileged)
	name := testName(t)
	s, err := Create(name, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sid, exists, err := segmentOwner(name)
	if err != nil || !exists || !sid.Equals(me.owner) {
		t.Fatalf("segmentOwner: %v, exists %v, %v; want %v", sid, exists, err, me.owner)
	}
	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	if _, exists, err := segmentOwner(testName(t)); exists || err != nil {
		t.Fatalf("segmentOwner of no segment: exists %v, %v", exists, err)
	}
}

// TestWindowsForeignSegmentRefused: a mapping of another owner (a squatter
// took the name first) is refused by Open, OpenOrCreate and OpenManaged
// unless TrustAnyOwner; TrustOwner does not help on Windows.
func TestWindowsForeignSegmentRefused(t *testing.T) {
	for _, other := range []*windows.SID{anonymousSID, strangerSID} {
		name := testName(t)
		if got := rawMapping(t, name, ownedAttrs(t, other)); got == nil || !got.Equals(other) {
			t.Fatalf("the system made the mapping's owner %v, not %v", got, other)
		}
		_, err := Open(name)
		mustRefuse(t, "Open", err, other.String())
		t.Logf("Open: %v", err)
		_, _, err = OpenOrCreate(name, 4096)
		mustRefuse(t, "OpenOrCreate", err)
		_, err = OpenManaged(name)
		mustRefuse(t, "OpenManaged", err)
		_, err = Open(name, ReadOnly())
		mustRefuse(t, "Open(ReadOnly)", err)
		_, err = Open(name, TrustOwner(0, 1000, 65534))
		mustRefuse(t, "Open(TrustOwner(...))", err)
		s, err := Open(name, TrustAnyOwner())
		if err != nil {
			t.Fatalf("Open(TrustAnyOwner): %v", err)
		}
		if s.Size() != 4096 {
			t.Errorf("Open(TrustAnyOwner) of a 4096-byte mapping: size %d", s.Size())
		}
		s.Close()
	}

	// A segment of ours given away after it was made (with a trailer: one
	// this package could have made, as another user).
	name := testName(t)
	s, err := Create(name, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	giveSegment(t, s, strangerSID)
	_, err = Open(name)
	mustRefuse(t, "Open of a segment given away", err, strangerSID.String())
	o, err := Open(name, TrustAnyOwner())
	if err != nil || o.Size() != 100 {
		t.Fatalf("Open(TrustAnyOwner) of a segment given away: %v", err)
	}
	o.Close()
}

// TestWindowsTrustedOwners: mappings owned by BUILTIN\Administrators or
// LocalSystem are trusted, as root's are on Unix.
func TestWindowsTrustedOwners(t *testing.T) {
	for _, typ := range []windows.WELL_KNOWN_SID_TYPE{windows.WinBuiltinAdministratorsSid, windows.WinLocalSystemSid} {
		sid, err := windows.CreateWellKnownSid(typ)
		if err != nil {
			t.Fatal(err)
		}
		name := testName(t)
		if got := rawMapping(t, name, ownedAttrs(t, sid)); got == nil || !got.Equals(sid) {
			t.Fatalf("the system made the mapping's owner %v, not %v", got, sid)
		}
		s, err := Open(name)
		if err != nil {
			t.Fatalf("Open of a mapping owned by %s: %v", sidName(sid), err)
		}
		s.Close()
	}
}

// TestWindowsOwnerUnknown: a mapping whose owner cannot be read is refused
// unless TrustAnyOwner. Under Wine a mapping made without a descriptor has
// no owner at all; on Windows it is the creator's, and opens.
func TestWindowsOwnerUnknown(t *testing.T) {
	name := testName(t)
	if sid := rawMapping(t, name, nil); sid != nil {
		t.Logf("a mapping made without a descriptor is owned by %s here", sidName(sid))
		s, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	} else {
		_, err := Open(name)
		mustRefuse(t, "Open of a mapping without an owner", err, "cannot tell who owns")
		s, err := Open(name, TrustAnyOwner())
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}

	// Another owner that grants us the map rights but not READ_CONTROL:
	// the owner cannot be read.
	name = testName(t)
	sa := ownedAttrs(t, strangerSID)
	everyone, err := windows.CreateWellKnownSid(windows.WinWorldSid)
	if err != nil {
		t.Fatal(err)
	}
	acl, err := windows.ACLFromEntries([]windows.EXPLICIT_ACCESS{{
		AccessPermissions: windows.FILE_MAP_READ | windows.FILE_MAP_WRITE,
		AccessMode:        windows.GRANT_ACCESS,
		Trustee: windows.TRUSTEE{
			TrusteeForm:  windows.TRUSTEE_IS_SID,
			TrusteeType:  windows.TRUSTEE_IS_WELL_KNOWN_GROUP,
			TrusteeValue: windows.TrusteeValueFromSID(everyone),
		},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.SecurityDescriptor.SetDACL(acl, true, false); err != nil {
		t.Fatal(err)
	}
	rawMapping(t, name, sa)
	if h, err := openMappingFor(`Local\`+name, windows.READ_CONTROL); err == nil {
		windows.CloseHandle(h)
		t.Skip("the system grants READ_CONTROL that the DACL does not")
	}
	_, err = Open(name)
	mustRefuse(t, "Open of a mapping whose owner cannot be read", err, "cannot tell who owns")
	t.Logf("Open: %v", err)
	s, err := Open(name, TrustAnyOwner())
	if err != nil {
		t.Fatalf("Open(TrustAnyOwner) of a mapping whose owner cannot be read: %v", err)
	}
	s.Close()
}

// TestWindowsForeignLinkRefused: OpenLink refuses a link file of another
// owner unless TrustAnyOwner.
func TestWindowsForeignLinkRefused(t *testing.T) {
	name := testName(t)
	s, err := Create(name, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	link := filepath.Join(t.TempDir(), "squat.link")
	if err := os.WriteFile(link, encodeLink(name, 1<<22|7), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := OpenLink(link); err != nil {
		t.Fatalf("OpenLink of our own link: %v", err)
	} else {
		o.Close()
	}
	other := giveFile(t, link)
	_, err = OpenLink(link)
	mustRefuse(t, "OpenLink of another owner's link", err, other.String())
	t.Logf("OpenLink: %v", err)
	o, err := OpenLink(link, TrustAnyOwner())
	if err != nil {
		t.Fatalf("OpenLink(TrustAnyOwner): %v", err)
	}
	if o.Name() != name {
		t.Errorf("OpenLink(TrustAnyOwner) opened %q, want %q", o.Name(), name)
	}
	o.Close()
}

// TestWindowsForgedLinkRemovesNothing: a link of another owner that names
// our segment (with a dead creator, so that it looks stale) makes neither
// Create(WithLink) nor RemoveLink remove the segment or the link. A link
// and segment of one other owner are cleaned up by an administrator.
func TestWindowsForgedLinkRemovesNothing(t *testing.T) {
	me, err := self()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	name := testName(t)
	victim, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	link := filepath.Join(dir, "forged.link")
	if err := os.WriteFile(link, encodeLink(name, 1<<22|12345), 0o644); err != nil {
		t.Fatal(err)
	}
	forger := giveFile(t, link)
	alive := func(what string) {
		t.Helper()
		s, err := Open(name)
		if err != nil {
			t.Fatalf("%s removed the victim's segment: %v", what, err)
		}
		s.Close()
		if _, err := os.Lstat(link); err != nil {
			t.Fatalf("%s removed the forged link: %v", what, err)
		}
	}

	s, err := Create(testName(t), 4096, WithLink(link))
	if err == nil {
		s.Close()
		t.Fatal("Create replaced another owner's link")
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Create over another owner's link: %v, want fs.ErrPermission", err)
	}
	t.Logf("Create(WithLink): %v", err)
	alive("Create(WithLink) over a forged link")

	err = RemoveLink(link)
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("RemoveLink of a forged link naming another owner's segment: %v, want fs.ErrPermission", err)
	}
	t.Logf("RemoveLink: %v", err)
	alive("RemoveLink of a forged link")

	// A link and a segment of the same other owner: an administrator may
	// remove them, as root may on Unix; anyone else may not.
	sq := testName(t)
	seg, err := Create(sq, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	seg.SetOwner(false)
	giveSegment(t, seg, forger)
	own := filepath.Join(dir, "own.link")
	if err := os.WriteFile(own, encodeLink(sq, 1<<22|1), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := giveFile(t, own); !got.Equals(forger) {
		t.Fatalf("the second link went to %v, the first to %v", got, forger)
	}
	err = RemoveLink(own)
	if !me.privileged {
		if !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("RemoveLink of another owner's link, unprivileged: %v, want fs.ErrPermission", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("an administrator's RemoveLink of an owner's own link and segment: %v", err)
	}
	if _, err := os.Lstat(own); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link is still there: %v", err)
	}
	if _, err := Open(sq, TrustAnyOwner()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of the segment of a removed link: %v, want fs.ErrNotExist", err)
	}
}

// TestWindowsLinkDecision: who may act on a link, for identities this test
// cannot take under Wine (an unprivileged user, an elevated administrator
// whose objects are owned by Administrators).
func TestWindowsLinkDecision(t *testing.T) {
	sid := func(s string) *windows.SID {
		t.Helper()
		v, err := windows.StringToSid(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	me, other, admins := sid("S-1-5-21-7-7-7-1000"), sid("S-1-5-21-7-7-7-1001"), sid("S-1-5-32-544")
	user := identity{user: me, owner: me}
	elevated := identity{user: me, owner: admins, privileged: true}
	for _, c := range []struct {
		id         identity
		link, seg  *windows.SID
		exists, ok bool
		what       string
	}{
		{user, me, me, true, true, "own link, own segment"},
		{user, me, nil, false, true, "own link, no segment"},
		{user, me, other, true, false, "own link naming another's segment"},
		{user, other, other, true, false, "another's link and segment, unprivileged"},
		{user, other, nil, false, false, "another's link, no segment, unprivileged"},
		{user, other, me, true, false, "another's link naming our segment"},
		{elevated, other, other, true, true, "another's link and segment, administrator"},
		{elevated, other, nil, false, true, "another's link, no segment, administrator"},
		{elevated, other, me, true, false, "another's link naming our segment, administrator"},
		{elevated, admins, me, true, true, "link of our elevated self naming our segment"},
		{elevated, me, admins, true, true, "our link naming a segment of our elevated self"},
	} {
		err := c.id.mayActOnLink(c.link, c.seg, c.exists, "seg")
		if c.ok && err != nil {
			t.Errorf("%s: refused: %v", c.what, err)
		}
		if !c.ok && !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: %v, want fs.ErrPermission", c.what, err)
		}
	}
	for _, c := range []struct {
		id    identity
		owner *windows.SID
		ok    bool
	}{
		{user, me, true},
		{user, admins, true},
		{user, sid("S-1-5-18"), true},
		{user, other, false},
		{user, sid("S-1-5-7"), false},
		{user, sid("S-1-1-0"), false},
		{elevated, admins, true},
	} {
		if got := c.id.trusts(c.owner); got != c.ok {
			t.Errorf("identity %v/%v trusts %v: %v, want %v", c.id.user, c.id.owner, c.owner, got, c.ok)
		}
	}
}
