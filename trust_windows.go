package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Owner checks on Windows, where owners are SIDs. The rules are those of
// trust_unix.go:
//
//   - Open (osOpen), OpenOrCreate, OpenManaged and OpenLink refuse a mapping
//     or link file whose owner is not this user, BUILTIN\Administrators or
//     LocalSystem, unless TrustAnyOwner. TrustOwner (numeric user IDs)
//     means nothing on Windows and is ignored there.
//   - A link is acted on (removed as stale, or by RemoveLink) only if it is
//     this user's, or the process is privileged (LocalSystem, or holds the
//     Administrators group enabled: an elevated administrator), acting for
//     the link's owner; and only if the mapping it names, if any, has the
//     link's owner too.
//
// "This user" is the process token's user, and also the token's default
// owner: the SID that Windows writes as the owner of the objects and files
// the process creates (the user, or BUILTIN\Administrators for an elevated
// administrator).
//
// An owner that cannot be read, or an object that has none, is refused: the
// owner of an object may always read its owner (READ_CONTROL is implied for
// it), and every object this package (or Windows, for another program)
// creates with a name has one, so such an object is not provably ours. Only
// TrustAnyOwner, which skips the check, lets it through.

// identity is who this process is, as far as ownership goes.
type identity struct {
	user       *windows.SID // the token's user
	owner      *windows.SID // the token's default owner for new objects
	privileged bool         // LocalSystem or an enabled Administrators group
}

// self reads the identity of this process from its token.
func self() (identity, error) {
	tok := windows.GetCurrentProcessToken()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return identity{}, fmt.Errorf("read the process token's user: %w", err)
	}
	id := identity{user: tu.User.Sid}
	if id.owner, err = tokenOwner(tok); err != nil {
		return identity{}, err
	}
	if id.user.IsWellKnown(windows.WinLocalSystemSid) {
		id.privileged = true
	} else if tg, err := tok.GetTokenGroups(); err == nil {
		for _, g := range tg.AllGroups() {
			if g.Sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) &&
				g.Attributes&windows.SE_GROUP_ENABLED != 0 &&
				g.Attributes&windows.SE_GROUP_USE_FOR_DENY_ONLY == 0 {
				id.privileged = true
			}
		}
	}
	return id, nil
}

// tokenOwner returns the default owner of the objects that tok creates.
func tokenOwner(tok windows.Token) (*windows.SID, error) {
	n := uint32(64)
	for {
		b := make([]byte, n)
		err := windows.GetTokenInformation(tok, windows.TokenOwner, &b[0], uint32(len(b)), &n)
		if err == nil {
			return (*windows.Tokenprimarygroup)(unsafe.Pointer(&b[0])).PrimaryGroup, nil // TOKEN_OWNER has the same shape: one *SID
		}
		if err != windows.ERROR_INSUFFICIENT_BUFFER || n <= uint32(len(b)) {
			return nil, fmt.Errorf("read the process token's owner: %w", err)
		}
	}
}

// mine reports whether sid is this user (the token's user or default owner).
func (id identity) mine(sid *windows.SID) bool {
	return sid != nil && (sid.Equals(id.user) || (id.owner != nil && sid.Equals(id.owner)))
}

// trusts reports whether objects owned by sid are trusted by default.
func (id identity) trusts(sid *windows.SID) bool {
	return id.mine(sid) || sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) || sid.IsWellKnown(windows.WinLocalSystemSid)
}

// sidName names sid for an error: its account name and the SID itself.
func sidName(sid *windows.SID) string {
	if sid == nil {
		return "nobody"
	}
	if acct, dom, _, err := sid.LookupAccount(""); err == nil && acct != "" {
		if dom != "" {
			acct = dom + `\` + acct
		}
		return fmt.Sprintf("%s (%s)", acct, sid)
	}
	return sid.String()
}

// ownerOf returns the owner in the security descriptor of the object h (of
// type typ). A descriptor without an owner gives an error.
func ownerOf(h windows.Handle, typ windows.SE_OBJECT_TYPE) (*windows.SID, error) {
	sd, err := windows.GetSecurityInfo(h, typ, windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return nil, err
	}
	sid, _, err := sd.Owner()
	if err != nil {
		return nil, err
	}
	if sid == nil {
		return nil, errors.New("it has no owner")
	}
	return sid.Copy()
}

// checkOwnerSID refuses an object (what: "the segment", "the link file")
// owned by sid, or whose owner could not be read (err), unless this process
// trusts that owner.
func (o *options) checkOwnerSID(what string, sid *windows.SID, err error) error {
	if o.trustAny {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: cannot tell who owns %s (%v); if you trust it whoever owns it, pass shm.TrustAnyOwner()", fs.ErrPermission, what, err)
	}
	id, err := self()
	if err != nil {
		return fmt.Errorf("%w: %v", fs.ErrPermission, err)
	}
	if id.trusts(sid) {
		return nil
	}
	return fmt.Errorf("%w: %s belongs to %s, not to this user (%s), Administrators or LocalSystem; if that owner is trusted, pass shm.TrustAnyOwner()",
		fs.ErrPermission, what, sidName(sid), sidName(id.user))
}

// checkMappingOwner refuses the mapping h, named obj, if its owner is not
// trusted (see checkOwnerSID).
func (o *options) checkMappingOwner(h windows.Handle, obj string) error {
	if o.trustAny {
		return nil
	}
	sid, err := mappingOwner(h, obj)
	return o.checkOwnerSID("the segment", sid, err)
}

// mappingOwner returns the owner of the mapping h, named obj. An opener's
// handle has only the map rights it asked for, so the mapping is opened
// again for READ_CONTROL alone, by name: while h is open the name cannot
// name another mapping.
func mappingOwner(h windows.Handle, obj string) (*windows.SID, error) {
	if sid, err := ownerOf(h, windows.SE_KERNEL_OBJECT); err == nil {
		return sid, nil
	}
	rc, err := openMappingFor(obj, windows.READ_CONTROL)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(rc)
	return ownerOf(rc, windows.SE_KERNEL_OBJECT)
}

// checkLinkOwner refuses the link file f (fi) if its owner is not trusted.
func (o *options) checkLinkOwner(f *os.File, _ fs.FileInfo) error {
	if o.trustAny {
		return nil
	}
	sid, err := ownerOf(windows.Handle(f.Fd()), windows.SE_FILE_OBJECT)
	return o.checkOwnerSID("the link file", sid, err)
}

// mayActOnLink decides whether this process may remove the link file f (fi)
// and the segment name it names: see trust_unix.go. The owner is read from
// the open file, the one that was read and locked, not looked up again by
// path.
func mayActOnLink(f *os.File, _ fs.FileInfo, name string) error {
	lsid, err := ownerOf(windows.Handle(f.Fd()), windows.SE_FILE_OBJECT)
	if err != nil {
		return fmt.Errorf("%w: cannot tell who owns the link (%v)", fs.ErrPermission, err)
	}
	id, err := self()
	if err != nil {
		return fmt.Errorf("%w: %v", fs.ErrPermission, err)
	}
	ssid, exists, err := segmentOwner(name)
	if err != nil {
		return fmt.Errorf("%w: cannot tell who owns segment %s (%v); not touching the link", fs.ErrPermission, quote(name), err)
	}
	return id.mayActOnLink(lsid, ssid, exists, name)
}

// mayActOnLink is the decision of mayActOnLink, given the owners of the
// link (lsid) and of the segment name (ssid, if it exists).
func (id identity) mayActOnLink(lsid, ssid *windows.SID, exists bool, name string) error {
	if !id.mine(lsid) && !id.privileged {
		return fmt.Errorf("%w: the link belongs to %s, not to this user (%s); not touching it", fs.ErrPermission, sidName(lsid), sidName(id.user))
	}
	// The same owner, or both this user's: its files and its mappings may
	// carry either of its SIDs (Wine, for one, makes files the user's and
	// names the token's default owner as that of mappings).
	if exists && !ssid.Equals(lsid) && !(id.mine(lsid) && id.mine(ssid)) {
		return fmt.Errorf("%w: the link belongs to %s but names segment %s of %s; not touching either",
			fs.ErrPermission, sidName(lsid), quote(name), sidName(ssid))
	}
	return nil
}

// segmentOwner returns the owner of the mapping of the segment name (in
// Local\, where Remove looks for it too), and whether it exists.
func segmentOwner(name string) (sid *windows.SID, exists bool, err error) {
	obj, err := objectName(name, &options{})
	if err != nil {
		return nil, false, err
	}
	h, err := openMappingFor(obj, windows.READ_CONTROL)
	if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, windows.ERROR_PATH_NOT_FOUND) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	defer windows.CloseHandle(h)
	sid, err = ownerOf(h, windows.SE_KERNEL_OBJECT)
	return sid, true, err
}
