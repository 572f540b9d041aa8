// Package shm shares memory between processes: named shared-memory segments
// that any process on the machine can open, and locks and events that live
// inside that memory, so that cooperating processes can use one region as
// safely as goroutines use a sync.Mutex.
//
// # Segments
//
// A Segment is a named region of memory. Create makes one (exclusively: an
// existing name fails with fs.ErrExist) and Open maps an existing one; both
// return the memory as a []byte (Bytes). OpenOrCreate is for peers that start
// in any order. Names are those of shm_open(3) ("/name" or "name"); on Linux
// a segment is the file /dev/shm/name, so C, Python or Rust peers that call
// shm_open with the same name share the same bytes. The process that created
// a segment owns it: its Close removes the name, after which the memory lives
// on until every process has unmapped it. SetOwner hands that duty over.
//
// Processes that would rather agree on a path than on a name use a link
// file: Create(name, size, WithLink(path)) writes a small file naming the
// segment, and OpenLink(path) opens it. Link files are written atomically,
// exclusively, and recognised as stale when their segment or its creator is
// gone.
//
// # Locks and events in shared memory
//
// Mutex, RWMutex, AutoEvent, ManualEvent, BusyAutoEvent and BusyManualEvent
// are fixed-size, pointer-free structs whose zero value is ready to use, like
// sync.Mutex: place them in a segment and every process that maps it can use
// them. The easiest way is a struct of your own laid over the segment with
// View:
//
//	type Shared struct {
//		Mu    shm.Mutex
//		Ready shm.AutoEvent
//		Count uint64
//	}
//	s, err := shm.View[Shared](seg.Bytes())
//	s.Mu.Lock()
//	s.Count++
//	s.Mu.Unlock()
//
// An uncontended lock or unlock, and a Set with nobody waiting, is one atomic
// instruction and no system call. Waiters spin briefly (when the process has
// more than one CPU, see SetSpin) and then sleep in the kernel (futex on
// Linux) until woken. Every blocking call has a Timeout form (ErrTimeout,
// which also matches os.ErrDeadlineExceeded) and a Context form
// (ctx.Err()); deadlines are on the monotonic clock and survive spurious
// wake-ups.
//
// # Owner death
//
// Locks record which process holds them (an owner token: its PID, for
// people, and an instance number, so a reused PID is not mistaken for the
// holder). On Linux whether that process is still there is the kernel's
// verdict, not a PID lookup: each process holds a lock on one byte of every
// segment file it has open, which the kernel drops when it dies, so a holder
// in another PID namespace or container is judged as well as a local one.
// A process that waits for a lock whose holder died takes it over within
// about 20 ms of waiting, however short its calls' timeouts, and is told: LockTimeout and LockContext return ErrOwnerDead with the lock held,
// the lock stays marked (OwnerDied) until MarkConsistent, as with
// pthread_mutex_consistent. Lock recovers the same way, silently. A dead
// reader's share of an RWMutex is released by the writer that waits for it.
//
// # Managed segments
//
// A managed segment describes its own locks and events in a header, so that
// an opener needs no configuration: a Config lists the size of the user
// data, locks each guarding a byte range of it, and events by kind (the six
// kinds of the Rust crate shared_memory, eventfd events included). Create
// writes the header and publishes it with a ready flag; OpenManaged and
// OpenManagedLink check every field (magic, version, byte order, checksum,
// bounds) and give ErrCorrupt or ErrNotManaged rather than trusting it.
// Managed.Lock(i) returns a Guard whose Bytes are the range lock i guards.
//
// # Moving data: queues, broadcast logs and cells
//
// Three structures move data between processes through a managed segment
// (Config.AddQueue, AddLog, AddCell), or through raw memory (FormatQueue,
// FormatLog, FormatCell). None of them makes a system call while its sides
// keep up; each blocking call has Timeout and Context forms; each survives
// the death of any process that uses it.
//
//   - Queue: many producers, one consumer, each message taken once, in
//     order per producer. A full queue makes producers wait: nothing is
//     dropped. Messages are written and read in place (Claim and Commit,
//     Receive and Release) or copied (Send, Copy).
//   - Log: one writer, any number of readers, each reading every message
//     from a position of its own. The writer never waits: a reader that
//     falls more than the log's capacity behind is told how many messages
//     it lost (ErrLost, LostError) and goes on from the oldest still there.
//   - Cell: one writer stores a fixed-size value (a pointer-free struct,
//     StoreValue), readers load it whole (LoadValue) without locking and
//     can wait for the next store.
//
// docs/FORMAT.md describes their memory word by word, for peers in other
// languages.
//
// # Errors
//
// Errors wrap the sentinels of this package (ErrTimeout, ErrOwnerDead,
// ErrCorrupt, ...) or the standard ones (fs.ErrExist, fs.ErrNotExist,
// fs.ErrPermission, errors.ErrUnsupported), and name the operation and the
// segment; test them with errors.Is. Nothing another process writes into
// shared memory can make this package panic or read outside a mapping.
package shm
