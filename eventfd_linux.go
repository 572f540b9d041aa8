package shm

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/go-shm/shm/internal/owner"
)

// EventFD is an eventfd event of a managed segment (kinds EventFDAuto and
// EventFDManual), usable by every process that opens the segment. See the
// package documentation on eventfd events. Get one from Managed.Event.
type EventFD struct {
	fd     int
	manual bool
	// state counts the calls using fd (low bits) and says whether the
	// event was closed (efdClosed) and fd released (efdReleased): fd is
	// closed once the event is closed and its last user has left, so that a
	// call racing with Close never touches a descriptor number that was
	// already reused.
	state atomic.Int64
}

const (
	efdClosed   = 1 << 40
	efdReleased = 1 << 41
)

// acquire registers a user of fd; it fails once the event is closed.
func (e *EventFD) acquire() bool {
	for {
		s := e.state.Load()
		if s&efdClosed != 0 {
			return false
		}
		if e.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// release ends a use of fd, closing it if it was the last use of a closed
// event.
func (e *EventFD) release() {
	if e.state.Add(-1) == efdClosed {
		e.closeFD()
	}
}

func (e *EventFD) closeFD() {
	if e.state.CompareAndSwap(efdClosed, efdClosed|efdReleased) {
		unix.Close(e.fd)
	}
}

const eventFDSupported = true

// efdSlice bounds one blocking poll, so that Close and a cancelled context
// are noticed.
const efdSlice = 100 * time.Millisecond

func newEventFD(fd int, manual bool) (*EventFD, error) {
	return &EventFD{fd: fd, manual: manual}, nil
}

// createEventFDs makes the creator's eventfds and starts serving them under
// nonce (the header already names this process and the nonce).
func (m *Managed) createEventFDs(nonce [8]byte) error {
	any := false
	for i, e := range m.l.events {
		if e.kind != EventFDAuto && e.kind != EventFDManual {
			continue
		}
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return fmt.Errorf("event %d: eventfd: %w", i, err)
		}
		efd, err := newEventFD(fd, e.kind == EventFDManual)
		if err != nil {
			return err
		}
		m.efds[i] = efd
		p := m.seg.data[e.prim : e.prim+eventFDPrimLen]
		atomic.StoreInt32((*int32)(unsafe.Pointer(&p[efdOffFD])), int32(fd))
		any = true
	}
	if !any {
		return nil
	}
	s, err := serveEventFDs(m, nonce)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.server = s
	m.mu.Unlock()
	return nil
}

func efdSocket(nonce []byte) string { return "@go-shm/eventfd/" + hex.EncodeToString(nonce) }

type efdListener struct{ l *net.UnixListener }

func (s efdListener) Close() error { return s.l.Close() }

// The eventfd server answers openers: each connection sends a 4-byte event
// index and receives that eventfd with SCM_RIGHTS, if its user is ours or
// root. Connections are served concurrently, at most efdServers at a time,
// each within efdServeTime, so that idle or slow connections (a peer that
// connects and says nothing) cannot hold the handout up for long: a
// connection beyond the bound waits its turn in the kernel's queue.
const (
	efdServers   = 16
	efdServeTime = 250 * time.Millisecond
)

func serveEventFDs(m *Managed, nonce [8]byte) (efdServer, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: efdSocket(nonce[:]), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("eventfd server: %w", err)
	}
	uid := uint32(os.Geteuid())
	slots := make(chan struct{}, efdServers)
	go func() {
		for {
			slots <- struct{}{}
			c, err := l.AcceptUnix()
			if err != nil {
				<-slots
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go func() {
				defer func() { <-slots }()
				serveOne(m, c, uid)
			}()
		}
	}()
	return efdListener{l}, nil
}

func serveOne(m *Managed, c *net.UnixConn, uid uint32) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(efdServeTime))
	if cred, err := peerCred(c); err != nil || cred.Uid != uid && cred.Uid != 0 {
		return
	}
	var req [4]byte
	if _, err := c.Read(req[:]); err != nil {
		return
	}
	i := int(binary.NativeEndian.Uint32(req[:]))
	m.mu.Lock()
	var efd *EventFD
	if i >= 0 && i < len(m.efds) && !m.closed {
		efd = m.efds[i]
	}
	m.mu.Unlock()
	if efd == nil {
		return
	}
	// With the eventfd goes our descriptor of the segment file, on which
	// we hold our liveness lock: the proof that we are the creator (see
	// openEventFD).
	if efd.acquire() {
		m.mu.Lock()
		open := !m.closed
		if open {
			c.WriteMsgUnix(req[:], unix.UnixRights(efd.fd, m.seg.sys.fd), nil)
		}
		m.mu.Unlock()
		efd.release()
	}
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = rc.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err == nil {
		err = cerr
	}
	return cred, err
}

// openEventFD fetches event i's eventfd from the process that created it.
// It trusts only an answer from that process: the server's credentials
// (SO_PEERCRED) must show the user that owns the segment file and the PID
// recorded as the creator, and the creator must still hold the segment
// (its liveness lock), so that a process that bound the socket name after
// the creator closed, or that wrote its own PID and nonce into the segment,
// is refused. What it receives must be an eventfd.
func (m *Managed) openEventFD(i int, e eventEntry) (*EventFD, error) {
	p := m.seg.data[e.prim : e.prim+eventFDPrimLen]
	creator := getToken(p[efdOffCreator:])
	var nonce [8]byte
	copy(nonce[:], p[efdOffNonce:efdOffNonce+8])
	alive := func() bool { return owner.Alive(unsafe.Pointer(&p[efdOffCreator]), creator) }
	if !alive() {
		return nil, fmt.Errorf("event %d: the eventfd's creator (pid %d) is gone: %w", i, creator.PID(), fs.ErrNotExist)
	}
	addr := &net.UnixAddr{Name: efdSocket(nonce[:]), Net: "unix"}
	c, err := net.DialUnix("unix", nil, addr)
	// A creator that has just published the segment may not listen yet.
	for wait := time.Millisecond; err != nil && wait < time.Second && alive(); wait *= 2 {
		time.Sleep(wait)
		c, err = net.DialUnix("unix", nil, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("event %d: the eventfd's creator (pid %d) does not serve it (%v): %w", i, creator.PID(), err, fs.ErrNotExist)
	}
	defer c.Close()
	self, err := m.checkServer(c, creator)
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", i, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var req [4]byte
	binary.NativeEndian.PutUint32(req[:], uint32(i))
	if _, err := c.Write(req[:]); err != nil {
		return nil, fmt.Errorf("event %d: asking for the eventfd: %w", i, err)
	}
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := c.ReadMsgUnix(req[:], oob)
	if err != nil {
		return nil, fmt.Errorf("event %d: receiving the eventfd: %w", i, err)
	}
	fd, proof, err := twoFDs(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", i, err)
	}
	unix.CloseOnExec(fd)
	if !self {
		err = m.checkProof(proof, creator)
	}
	unix.Close(proof)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("event %d: %w", i, err)
	}
	if !isEventFD(fd) {
		unix.Close(fd)
		return nil, fmt.Errorf("event %d: %w: the descriptor received is not an eventfd", i, ErrCorrupt)
	}
	return newEventFD(fd, e.kind == EventFDManual)
}

// twoFDs returns the eventfd and the creator's segment descriptor of a
// handout.
func twoFDs(oob []byte) (int, int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1, -1, err
	}
	var fds []int
	for _, msg := range msgs {
		f, err := unix.ParseUnixRights(&msg)
		if err == nil {
			fds = append(fds, f...)
		}
	}
	if len(fds) != 2 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, -1, fmt.Errorf("the creator did not send the eventfd (it may have closed the segment): %w", fs.ErrNotExist)
	}
	return fds[0], fds[1], nil
}

// checkProof checks that proof is the creator's own descriptor of the
// segment file: the same file as ours, and the one on which the creator's
// liveness lock is held. A lock does not conflict with its own open file
// description, so asking through proof finds the creator's byte free, while
// asking through our descriptor finds it held. Only the creator (or a
// process it gave that descriptor) can send that.
func (m *Managed) checkProof(proof int, creator owner.Token) error {
	var a, b unix.Stat_t
	if unix.Fstat(proof, &a) != nil || unix.Fstat(m.seg.sys.fd, &b) != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		return fmt.Errorf("%w: the eventfd server sent a descriptor of another file: not the creator", fs.ErrPermission)
	}
	if owner.HeldIn(proof, creator) || !owner.HeldIn(m.seg.sys.fd, creator) {
		return fmt.Errorf("%w: the eventfd server does not hold the creator's liveness lock: not the creator", fs.ErrPermission)
	}
	return nil
}

// isEventFD reports whether fd is an eventfd (true if /proc cannot tell).
// checkServer verifies that the process at the other end of c may be the
// creator recorded in the segment (its user, its PID) and still holds the
// segment; self reports that it is this very process (whose liveness lock
// the proof of checkProof cannot single out).
func (m *Managed) checkServer(c *net.UnixConn, creator owner.Token) (self bool, err error) {
	cred, err := peerCred(c)
	if err != nil {
		return false, fmt.Errorf("the eventfd server's credentials: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(m.seg.sys.fd, &st); err != nil {
		return false, err
	}
	if cred.Uid != st.Uid {
		return false, fmt.Errorf("%w: the eventfd server runs as uid %d, the segment belongs to uid %d: not its creator", fs.ErrPermission, cred.Uid, st.Uid)
	}
	if int(cred.Pid) != creator.PID() {
		// A creator in another PID namespace has another PID here: its
		// PID in its own namespace (the last of NSpid in /proc/PID/status)
		// must be the creator's. Anything else, or not knowing, is refused.
		if inner, err := innermostPID(int(cred.Pid)); err != nil || inner != creator.PID() {
			return false, fmt.Errorf("%w: the eventfd server is pid %d (%d in its own PID namespace), the creator pid %d", fs.ErrPermission, cred.Pid, inner, creator.PID())
		}
	}
	if !owner.HeldIn(m.seg.sys.fd, creator) {
		return false, fmt.Errorf("the eventfd's creator no longer has the segment open: %w", fs.ErrNotExist)
	}
	return int(cred.Pid) == os.Getpid() && creator == owner.Self(), nil
}

// innermostPID returns process pid's PID in its own PID namespace: the last
// PID of the NSpid line of /proc/pid/status.
func innermostPID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "NSpid:" {
			return strconv.Atoi(f[len(f)-1])
		}
	}
	return 0, errors.New("no NSpid in /proc/PID/status")
}

// isEventFD reports whether fd is an eventfd: by /proc where it can be
// read, else by what only an eventfd does (an anonymous inode that takes an
// 8-byte write of 0). It fails closed.
func isEventFD(fd int) bool {
	buf := make([]byte, 64)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err == nil {
		return string(buf[:n]) == "anon_inode:[eventfd]"
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != 0 {
		return false
	}
	var zero [8]byte
	w, err := unix.Write(fd, zero[:])
	return err == nil && w == 8
}

// Fd returns the eventfd's descriptor in this process, for epoll and the
// like. It stays valid until the Managed is closed; do not close it or read
// from it (reading consumes the event).
func (e *EventFD) Fd() int { return e.fd }

func (e *EventFD) close() error {
	if e.state.Or(efdClosed)&(efdClosed-1) == 0 {
		e.closeFD()
	}
	return nil
}

// efdOne is the 8-byte value 1 that Set writes.
var efdOne = func() (b [8]byte) { binary.NativeEndian.PutUint64(b[:], 1); return }()

// Set signals the event: it adds 1 to the eventfd's counter.
func (e *EventFD) Set() error {
	if !e.acquire() {
		return ErrClosed
	}
	defer e.release()
	_, _, errno := syscall.Syscall(unix.SYS_WRITE, uintptr(e.fd), uintptr(unsafe.Pointer(&efdOne[0])), 8)
	if errno == 0 || errno == unix.EAGAIN { // EAGAIN: the counter is at its maximum, set already
		return nil
	}
	return errno
}

// Reset clears the event by reading the counter.
func (e *EventFD) Reset() error {
	if !e.acquire() {
		return ErrClosed
	}
	defer e.release()
	_, err := e.take()
	return err
}

// take reads (and so clears) the counter; it reports whether it was set.
// The caller holds a use of fd.
func (e *EventFD) take() (bool, error) {
	var buf [8]byte
	n, _, errno := syscall.Syscall(unix.SYS_READ, uintptr(e.fd), uintptr(unsafe.Pointer(&buf[0])), 8)
	switch {
	case errno == unix.EAGAIN:
		return false, nil
	case errno != 0:
		return false, errno
	}
	return n == 8, nil
}

// Wait waits until the event is set (and, if auto-reset, clears it).
func (e *EventFD) Wait() error { return e.wait(noDeadline()) }

// WaitTimeout is Wait for at most d (ErrTimeout after that).
func (e *EventFD) WaitTimeout(d time.Duration) error { return e.wait(timeoutDeadline(d)) }

// WaitContext is Wait until ctx is done (ctx.Err() after that).
func (e *EventFD) WaitContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.wait(ctxDeadline(ctx))
}

// wait polls the eventfd (in slices, so that Close and a cancelled context
// are seen) and, for an auto-reset event, reads it once it is readable: two
// system calls per wait, one for a manual-reset event. Another waiter may
// read it first; then this one polls again.
//
// Before it sleeps, a waiter spins as the futex events do (see SetSpin and
// spinBudget): it tries the event without blocking (a read of the
// non-blocking descriptor; a poll with a zero timeout for a manual-reset
// event), up to a sixteenth of the spin budget times, each try a system
// call of about a microsecond here. When the setter runs on another CPU and
// answers within that, neither side sleeps in the kernel nor wakes anyone,
// and a round trip costs a few system calls instead of two sleeps and
// wake-ups.
func (e *EventFD) wait(dl deadline) error {
	if !e.acquire() {
		return ErrClosed
	}
	defer e.release()
	key := unsafe.Pointer(&e.state)
	spins := spinBudget(key) / efdSpinCost
	for i := 0; i < spins; i++ {
		if e.state.Load()&efdClosed != 0 {
			return ErrClosed
		}
		ok, err := e.try()
		if err != nil {
			return err
		}
		if ok {
			spinWon(key)
			return nil
		}
		if dl.spinDone(i) {
			break
		}
	}
	spinLost(key, spins > 0)
	for {
		t := efdSlice
		if !dl.at.IsZero() {
			t = max(min(t, time.Until(dl.at)), 0)
		}
		if dl.ctx != nil && t > ctxSlice {
			t = ctxSlice
		}
		ready, err := e.poll(t)
		if err != nil {
			return err
		}
		// Closed: leave a Set to the other processes' waiters (a read
		// would take it).
		if e.state.Load()&efdClosed != 0 {
			return ErrClosed
		}
		if ready {
			if e.manual {
				return nil
			}
			if ok, err := e.take(); err != nil || ok {
				return err
			}
		}
		if err := dl.expired(); err != nil {
			return err
		}
	}
}

// efdSpinCost is how many polls of a word one try of an eventfd counts
// for in a spin: a system call costs about what 16 spin-wait hints do.
const efdSpinCost = 16

// try takes the event if it is set, without blocking: for an auto-reset
// event a read, for a manual-reset one a poll with a zero timeout.
func (e *EventFD) try() (bool, error) {
	if !e.manual {
		return e.take()
	}
	return e.poll(0)
}

// poll waits at most t for the eventfd to be readable (set). The caller
// holds a use of fd.
func (e *EventFD) poll(t time.Duration) (bool, error) {
	fds := [1]unix.PollFd{{Fd: int32(e.fd), Events: unix.POLLIN}}
	ts := unix.NsecToTimespec(int64(t))
	n, _, errno := syscall.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	switch {
	case errno == unix.EINTR:
		return false, nil
	case errno != 0:
		return false, errno
	}
	return n > 0 && fds[0].Revents&unix.POLLIN != 0, nil
}
