package shm

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/windows"
)

// openNoFollow opens path for reading, refusing a symbolic link, a junction
// or any other reparse point in its last element: the file is opened as it
// is (FILE_FLAG_OPEN_REPARSE_POINT) and then checked. A directory opens too
// (FILE_FLAG_BACKUP_SEMANTICS; without it Windows refuses with "access
// denied"), so that the caller can say it is not a link file. Other
// processes may read, write, rename and delete the file while it is open, as
// on Unix.
func openNoFollow(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL|windows.FILE_FLAG_OPEN_REPARSE_POINT|windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var info windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(h, &info); err != nil {
		windows.CloseHandle(h)
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if info.FileAttributes&windows.FILE_ATTRIBUTE_REPARSE_POINT != 0 {
		windows.CloseHandle(h)
		// ELOOP, as O_NOFOLLOW reports it on Unix.
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: a reparse point (symbolic link or junction)", syscall.ELOOP)}
	}
	return os.NewFile(uintptr(h), path), nil
}

// linkExclusive makes newpath a hard link to oldpath, failing with
// fs.ErrExist if newpath exists (CreateHardLinkW never replaces). On a file
// system without hard links (FAT) it moves oldpath to newpath instead, with
// MoveFileExW without MOVEFILE_REPLACE_EXISTING, which is just as atomic and
// exclusive; the caller's removal of oldpath then finds nothing.
func linkExclusive(oldpath, newpath string) error {
	err := os.Link(oldpath, newpath)
	if err == nil {
		return nil
	}
	var errno windows.Errno
	if !errors.As(err, &errno) || (errno != windows.ERROR_INVALID_FUNCTION && errno != windows.ERROR_NOT_SUPPORTED) {
		return err
	}
	from, err1 := windows.UTF16PtrFromString(oldpath)
	to, err2 := windows.UTF16PtrFromString(newpath)
	if err := errors.Join(err1, err2); err != nil {
		return &os.LinkError{Op: "link", Old: oldpath, New: newpath, Err: err}
	}
	if err := windows.MoveFileEx(from, to, windows.MOVEFILE_WRITE_THROUGH); err != nil {
		return &os.LinkError{Op: "link", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// Link files are locked on one byte far past their end: Windows locks are
// mandatory, and a lock on the content would make other processes' reads of
// the link fail while it is held.
const (
	lockOffsetLow  = 0xfffffffe
	lockOffsetHigh = 0x7fffffff
)

// A directory cannot be locked on Windows (flock can lock one on Unix). It is
// never a link file either, and the caller, which locks only to read the
// file and maybe replace it, refuses it once it reads it: so for a directory
// locking does nothing.

func lockFile(f *os.File) error {
	ol := windows.Overlapped{Offset: lockOffsetLow, OffsetHigh: lockOffsetHigh}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, &ol)
	if err != nil && isDir(f) {
		return nil
	}
	return err
}

func unlockFile(f *os.File) error {
	ol := windows.Overlapped{Offset: lockOffsetLow, OffsetHigh: lockOffsetHigh}
	err := windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
	if err != nil && isDir(f) {
		return nil
	}
	return err
}

func isDir(f *os.File) bool {
	var info windows.ByHandleFileInformation
	err := windows.GetFileInformationByHandle(windows.Handle(f.Fd()), &info)
	return err == nil && info.FileAttributes&windows.FILE_ATTRIBUTE_DIRECTORY != 0
}
