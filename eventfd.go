package shm

// EventFD events.
//
// An EventFD is a Linux eventfd(2) shared by the processes that open one
// managed segment, so that they can also wait for it with epoll, select or
// any event loop that takes a file descriptor (see Fd). An eventfd is a
// kernel object, not memory: the segment holds only where to get it. The
// creating process keeps the eventfd and serves it to openers over an
// abstract Unix socket named by a random nonce stored in the segment, passing
// the descriptor with SCM_RIGHTS to processes of the same user (or root).
// An opener fetches it the first time it asks for the event; from then on it
// holds its own descriptor of the same eventfd, which keeps working whatever
// happens to the creator. A process that asks after the creator closed the
// segment or died gets an error matching fs.ErrNotExist that says so.
//
// Auto-reset: Set writes 1; Wait reads the counter (which resets it), so one
// Set releases one waiter. Manual-reset: Wait only polls for readability;
// Reset reads the counter. Before it sleeps in poll, a waiter spins as the
// other kernel events do (see SetSpin), trying the event without blocking,
// so that two processes on two CPUs exchange eventfd signals without
// sleeping or waking in the kernel. On other systems these kinds report
// errors.ErrUnsupported.

// efdServer serves a creator's eventfds to openers.
type efdServer interface{ Close() error }
