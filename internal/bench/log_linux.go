package bench

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/go-shm/shm"
)

// The log modes.
//
// The round-trip segment holds three Logs: a stream log that this process
// writes and the peer and helper processes (StartHelpers) read, and a pair
// for round trips (this process writes ping and reads pong, the peer the
// other way round). Each process attaches its writers and its round-trip
// reader once; the stream's readers attach for each run, at its start
// (LogNext), before the coordinator's first Append.
//
// LogStream: the coordinator appends Job.N messages as fast as it can (an
// Append never waits); Job.Readers processes (the peer, then helpers) each
// read all of them with Copy as fast as they can, counting those reported
// lost, and check every message's sequence number. The run's time is the
// writer's: from its first Append to its last.
//
// LogPingPong: a message there through ping and back through pong, each
// read with Copy.

// Log indices in the round-trip segment.
const (
	lStream = iota // this process -> the peer and helpers, 64 KiB
	lPing          // this process -> peer, 64 KiB
	lPong          // peer -> this process, 64 KiB
	nLogs
)

// logMax is the largest message of the log modes.
const logMax = smallMax

// logShared is the log modes' part of the round-trip segment: what each
// reader of the last LogStream run counted (index 0 the peer, k helper k).
type logShared struct {
	recv [maxHelpers + 1]padInt64 // messages received
	lost [maxHelpers + 1]padInt64 // messages reported lost
	skip [maxHelpers + 1]padInt64 // messages skipped without a loss reported
}

func (l *logShared) reset() {
	for i := range l.recv {
		atomic.StoreInt64(&l.recv[i].v, 0)
		atomic.StoreInt64(&l.lost[i].v, 0)
		atomic.StoreInt64(&l.skip[i].v, 0)
	}
}

// addLogs declares the logs of the round-trip segment.
func addLogs(c *shm.Config) {
	for i := 0; i < nLogs; i++ {
		c.AddLog(smallRing, 0)
	}
}

// coordLogs are the coordinator's ends of the logs.
type coordLogs struct {
	stream, ping *shm.LogWriter
	pong         *shm.LogReader
}

func openCoordLogs(m *shm.Managed) (e *coordLogs, err error) {
	e = &coordLogs{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.stream, err = logWriter(m, lStream); err != nil {
		return nil, err
	}
	if e.ping, err = logWriter(m, lPing); err != nil {
		return nil, err
	}
	if e.pong, err = logReader(m, lPong); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *coordLogs) close() {
	if e == nil {
		return
	}
	for _, w := range []*shm.LogWriter{e.stream, e.ping} {
		if w != nil {
			w.Close()
		}
	}
	if e.pong != nil {
		e.pong.Close()
	}
}

// peerLogs are the peer's.
type peerLogs struct {
	ping   *shm.LogReader
	pong   *shm.LogWriter
	stream *shm.Log
	rd     *shm.LogReader // LogStream: this run's reader of stream
	buf    []byte
}

func openPeerLogs(m *shm.Managed) (e *peerLogs, err error) {
	e = &peerLogs{buf: make([]byte, logMax)}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.ping, err = logReader(m, lPing); err != nil {
		return nil, err
	}
	if e.pong, err = logWriter(m, lPong); err != nil {
		return nil, err
	}
	if e.stream, err = m.Log(lStream); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *peerLogs) close() {
	if e == nil {
		return
	}
	if e.ping != nil {
		e.ping.Close()
	}
	if e.pong != nil {
		e.pong.Close()
	}
	if e.rd != nil {
		e.rd.Close()
	}
}

func logWriter(m *shm.Managed, i int) (*shm.LogWriter, error) {
	l, err := m.Log(i)
	if err != nil {
		return nil, err
	}
	return l.Writer()
}

func logReader(m *shm.Managed, i int) (*shm.LogReader, error) {
	l, err := m.Log(i)
	if err != nil {
		return nil, err
	}
	return l.Reader(shm.LogNext)
}

// logTrip is trip for the log modes.
func (p *Peer) logTrip(j Job) (trip func(i uint32), end func()) {
	e, size := p.le, j.Size
	msg := p.qe.buf[:size]
	switch j.Mode {
	case LogStream:
		return func(i uint32) {
			stamp(msg, uint64(i), 0)
			must(e.stream.Append(msg))
		}, nil
	case LogPingPong:
		back := p.qe.back
		return func(i uint32) {
			stamp(msg, uint64(i), 0)
			must(e.ping.Append(msg))
			n, err := e.pong.Copy(back)
			must(err)
			checkMsg(back[:n], size, uint64(i))
		}, nil
	}
	return nil, nil
}

// prepare is what the peer does for command j before it says it is
// ready: LogStream's reader attaches.
func (e *peerLogs) prepare(j Job) {
	if j.Mode == LogStream {
		var err error
		e.rd, err = e.stream.Reader(shm.LogNext)
		must(err)
	}
}

// respond is the peer's side of the log modes' command j.
func (e *peerLogs) respond(s *shared, j Job) {
	n, size := uint64(j.N), j.Size
	switch j.Mode {
	case LogStream:
		readStream(s, 0, e.rd, n, size, e.buf)
		e.rd.Close()
		e.rd = nil
	case LogPingPong:
		for i := uint64(1); i <= n; i++ {
			k, err := e.ping.Copy(e.buf)
			must(err)
			checkMsg(e.buf[:k], size, i)
			must(e.pong.Append(e.buf[:k]))
		}
	}
}

// readStream is reader k's side of LogStream (0: the peer, k: helper k):
// it copies messages out of r as fast as it can until it has received, or
// been told it lost, all n of the run, checks each message's sequence
// number, and stores its counts in s. A message further on than the next
// expected one, with no loss reported for the gap, is counted as skipped.
func readStream(s *shared, k int, r *shm.LogReader, n uint64, size int, buf []byte) {
	var recv, lost, skip uint64
	var le *shm.LostError
	for recv+lost+skip < n {
		m, err := r.Copy(buf)
		if errors.As(err, &le) {
			lost += le.Count
			continue
		}
		must(err)
		if m != size {
			panic(fmt.Sprintf("bench: log reader %d: a message of %d bytes, want %d", k, m, size))
		}
		seq, _ := seqOf(buf)
		want := recv + lost + skip + 1
		if seq < want || seq > n {
			panic(fmt.Sprintf("bench: log reader %d: message %d after %d of %d accounted for (%d received, %d lost)", k, seq, want-1, n, recv, lost))
		}
		skip += seq - want
		recv++
	}
	atomic.StoreInt64(&s.ls.recv[k].v, int64(recv))
	atomic.StoreInt64(&s.ls.lost[k].v, int64(lost))
	atomic.StoreInt64(&s.ls.skip[k].v, int64(skip))
}

// LogReaders returns what the readers of the last LogStream run counted,
// in all: messages received, messages reported lost, and messages skipped
// with no loss reported.
func (p *Peer) LogReaders() (recv, lost, skip int64) {
	for k := 0; k < p.job.Readers; k++ {
		recv += atomic.LoadInt64(&p.s.ls.recv[k].v)
		lost += atomic.LoadInt64(&p.s.ls.lost[k].v)
		skip += atomic.LoadInt64(&p.s.ls.skip[k].v)
	}
	return
}
