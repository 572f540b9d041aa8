//go:build unix

package shm

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a segment or link file owned by a user the caller has
// not said it trusts: only itself (its effective user ID) and root are
// trusted by default. what says which file ("the segment", "the link").
func (o *options) checkOwner(what string, uid uint32) error {
	if o.trustAny {
		return nil
	}
	me := uint32(os.Geteuid())
	if uid == me || uid == 0 {
		return nil
	}
	for _, u := range o.trust {
		if u >= 0 && uint32(u) == uid {
			return nil
		}
	}
	return fmt.Errorf("%w: %s belongs to uid %d, not to this user (uid %d) or root; if that user is trusted, pass shm.TrustOwner(%d)",
		fs.ErrPermission, what, uid, me, uid)
}

// checkLinkOwner refuses a link file (f, open, described by fi) owned by a
// user the caller does not trust.
func (o *options) checkLinkOwner(_ *os.File, fi fs.FileInfo) error {
	uid, ok := fileOwner(fi)
	if !ok {
		return fmt.Errorf("%w: cannot tell who owns the link", fs.ErrPermission)
	}
	return o.checkOwner("the link file", uid)
}

// mayActOnLink decides whether this process may remove the link file f
// (open, described by fi) and the segment name it names: the link must belong to the caller (or the
// caller be root, acting for the link's owner), and the segment, if it
// exists, must belong to the link's owner too. A link that names another
// user's segment was not written by that segment's creator: it may be a
// forgery meant to have the segment removed.
func mayActOnLink(_ *os.File, fi fs.FileInfo, name string) error {
	luid, ok := fileOwner(fi)
	if !ok {
		return fmt.Errorf("%w: cannot tell who owns the link", fs.ErrPermission)
	}
	me := uint32(os.Geteuid())
	if luid != me && me != 0 {
		return fmt.Errorf("%w: the link belongs to uid %d, not to this user (uid %d); not touching it", fs.ErrPermission, luid, me)
	}
	suid, exists, err := segmentOwner(name)
	if err != nil {
		return fmt.Errorf("%w: cannot tell who owns segment %s (%v); not touching the link", fs.ErrPermission, quote(name), err)
	}
	if exists && suid != luid {
		return fmt.Errorf("%w: the link belongs to uid %d but names segment %s of uid %d; not touching either", fs.ErrPermission, luid, quote(name), suid)
	}
	return nil
}

// fileOwner returns the user that owns the file fi describes.
func fileOwner(fi fs.FileInfo) (uint32, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, true
	}
	return 0, false
}
