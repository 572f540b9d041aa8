package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Broadcast logs and cells between processes: one writer process, reader
// processes that check every message, writers and readers killed.
//
// The segment of these tests has one log and one cell of 8 bytes: the
// writer that finishes stores there how many messages the log has (its
// Seq), so that readers know when they have accounted for all of them.

// lmsg fills b (at least 12 bytes) as message seq: its sequence number,
// bytes derived from it, and a CRC-32 of all that in the last 4 bytes.
func lmsg(b []byte, seq uint64) {
	binary.LittleEndian.PutUint64(b, seq)
	for i := 8; i < len(b)-4; i++ {
		b[i] = byte(seq*31 + uint64(i))
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
}

// lcheck checks a message built by lmsg and returns its sequence number.
func lcheck(b []byte) (uint64, error) {
	if len(b) < 12 {
		return 0, fmt.Errorf("%d bytes", len(b))
	}
	if binary.LittleEndian.Uint32(b[len(b)-4:]) != crc32.ChecksumIEEE(b[:len(b)-4]) {
		return 0, fmt.Errorf("message of %d bytes: checksum", len(b))
	}
	return binary.LittleEndian.Uint64(b), nil
}

// lsize is the size of message seq: 12 to max bytes.
func lsize(seq uint64, max int) int {
	switch {
	case seq%97 == 0:
		return max
	case seq%89 == 0:
		return 12
	}
	return 12 + int((seq*2654435761)%uint64(max-11))
}

func newLogSegment(t testing.TB, capacity int) (*Managed, string) {
	t.Helper()
	c := Config{Name: testName(t), Size: 64}
	c.AddLog(capacity, 0)
	c.AddCell(8)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, c.Name
}

func openLogSegment(name string) (*Managed, *Log, *Cell, error) {
	m, err := OpenManaged(name)
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := m.Log(0)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	c, err := m.Cell(0)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return m, l, c, nil
}

func init() {
	// args: name, messages (0: until killed), largest message, pace (sleep
	// 1 ms every that many messages; 0: never; "readers": wait, every 256
	// messages, while the third reader most behind is more than a quarter
	// of the capacity behind: the two slowest are left behind, the others
	// are kept up with), mode ("append" or "claim":
	// Claim, fill byte by byte, sleep 100 µs, Commit), publish ("end": store the total
	// in the cell when done). It attaches as the writer (retrying while a
	// dead one's place is not free yet) and continues the log.
	registerChild("log-write", func(args []string) error {
		m, l, c, err := openLogSegment(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		n, max := uint64(atoi(args[1])), atoi(args[2])
		pace, byReaders := 0, args[3] == "readers"
		if !byReaders {
			pace = atoi(args[3])
		}
		w, err := l.Writer()
		if err != nil {
			return err
		}
		buf := make([]byte, max)
		for i := uint64(0); n == 0 || i < n; i++ {
			seq := w.Seq()
			size := lsize(seq, max)
			if args[4] == "claim" {
				b, err := w.Claim(size)
				if err != nil {
					return err
				}
				lmsg(buf[:size], seq)
				for j := range b {
					b[j] = buf[j]
				}
				time.Sleep(100 * time.Microsecond) // a writer killed now dies in the middle
				if err := w.Commit(); err != nil {
					return err
				}
			} else {
				lmsg(buf[:size], seq)
				if err := w.Append(buf[:size]); err != nil {
					return err
				}
			}
			if pace > 0 && i%uint64(pace) == uint64(pace)-1 {
				time.Sleep(time.Millisecond)
			}
			for byReaders && i%256 == 255 {
				st, err := l.Stats()
				if err != nil {
					return err
				}
				var lags []uint64
				for _, r := range st.Readers {
					lags = append(lags, r.Lag)
				}
				slices.Sort(lags)
				if len(lags) < 3 || lags[len(lags)-3] <= uint64(l.Capacity()/4) {
					break
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		if args[5] == "end" {
			cw, err := c.Writer()
			if err != nil {
				return err
			}
			var v [8]byte
			binary.LittleEndian.PutUint64(v[:], w.Seq())
			if err := cw.Store(v[:]); err != nil {
				return err
			}
		}
		fmt.Printf("wrote up to %d\n", w.Seq())
		return nil
	})

	// args: name, slow (sleep 1 ms every that many messages; 0: never),
	// inplace ("1": Receive, check, then Check; else Copy). It reads from
	// the oldest message until it has accounted for every message (the
	// total the last writer stores in the cell), checking each, and prints
	// "received R lost L".
	registerChild("log-read", func(args []string) error {
		m, l, c, err := openLogSegment(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		slow, inplace := atoi(args[1]), args[2] == "1"
		r, err := l.Reader(LogOldest)
		if err != nil {
			return err
		}
		defer r.Close()
		buf := make([]byte, l.MaxMessage())
		var received, lost, next uint64
		for {
			var b []byte
			var mseq uint64
			var msg LogMessage
			if inplace {
				msg, err = r.ReceiveTimeout(50 * time.Millisecond)
				b, mseq = msg.Bytes(), msg.Seq()
			} else {
				var n int
				n, err = r.CopyTimeout(buf, 50*time.Millisecond)
				b, mseq = buf[:n], next
			}
			var le *LostError
			switch {
			case errors.As(err, &le):
				if le.Seq != next {
					return fmt.Errorf("lost %d from %d, expected %d next", le.Count, le.Seq, next)
				}
				lost += le.Count
				next += le.Count
				continue
			case errors.Is(err, ErrTimeout):
				var v [8]byte
				if _, err := c.Load(v[:]); err != nil {
					return err
				}
				if total := binary.LittleEndian.Uint64(v[:]); total != 0 && received+lost == total {
					fmt.Printf("received %d lost %d\n", received, lost)
					return nil
				} else if total != 0 && received+lost > total {
					return fmt.Errorf("received %d + lost %d > total %d", received, lost, total)
				}
				continue
			case err != nil:
				return err
			}
			seq, cerr := lcheck(b)
			if inplace {
				if err := r.Check(msg); err != nil {
					if !errors.As(err, &le) || le.Count != 1 || le.Seq != mseq {
						return fmt.Errorf("check: %v", err)
					}
					lost++
					next++
					continue
				}
			}
			if cerr != nil {
				return fmt.Errorf("message %d: %v", next, cerr)
			}
			if seq != next || mseq != next {
				return fmt.Errorf("message %d (Seq %d) where %d was expected", seq, mseq, next)
			}
			received++
			next++
			if slow > 0 && received%uint64(slow) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
}

// readerCounts parses "received R lost L" from a reader's output.
func readerCounts(t *testing.T, out string) (received, lost uint64) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(line, "received %d lost %d", &received, &lost); err == nil {
			return received, lost
		}
	}
	t.Fatalf("no counts in %q", out)
	return 0, 0
}

// waitReaders waits until n readers are registered in log 0 of m.
func waitReaders(t *testing.T, m *Managed, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := m.LogStats(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Readers) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d readers registered, want %d", len(st.Readers), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLogProcesses: one writer process, 8 reader processes (2 of them
// slow, half of them reading in place), messages of random sizes with
// sequence numbers and checksums. Every reader checks order and contents,
// and received + lost = sent; the fast readers lose nothing, the slow ones
// must lose some. (The writer never waits for readers, and on 2 CPUs a
// fast reader descheduled long enough falls behind too: the writer of
// this test keeps an eye on the readers' lags, and waits for all but the
// two most behind.)
func TestLogProcesses(t *testing.T) {
	n := 200000
	if testing.Short() {
		n = 50000
	}
	if os.Getenv("SHM_TORTURE") != "" {
		n = 1000000
	}
	m, name := newLogSegment(t, 1<<22)
	type rd struct {
		c    *child
		slow bool
	}
	var readers []rd
	for i := 0; i < 8; i++ {
		slow := i < 2
		s := "0"
		if slow {
			s = "20"
		}
		readers = append(readers, rd{startChild(t, "log-read", name, s, strconv.Itoa(i%2)), slow})
	}
	waitReaders(t, m, 8)
	start := time.Now()
	w := startChild(t, "log-write", name, strconv.Itoa(n), "300", "readers", "append", "end")
	w.wait(2 * time.Minute)
	t.Logf("%d messages written in %v", n, time.Since(start))
	for i, r := range readers {
		r.c.wait(2 * time.Minute)
		got, lost := readerCounts(t, r.c.output())
		t.Logf("reader %d (slow %v): received %d, lost %d", i, r.slow, got, lost)
		if got+lost != uint64(n) {
			t.Errorf("reader %d: received %d + lost %d != %d", i, got, lost, n)
		}
		if r.slow && lost == 0 {
			t.Errorf("slow reader %d lost nothing: the test did not overrun it", i)
		}
		if !r.slow && lost != 0 {
			t.Errorf("fast reader %d lost %d", i, lost)
		}
	}
}

// TestLogKillReaders: readers killed at random points hold nothing up: the
// writer's rate is measured before and after (and logged), the surviving
// readers account for every message, and the dead readers' slots are
// taken by new readers.
func TestLogKillReaders(t *testing.T) {
	m, name := newLogSegment(t, 1<<20)
	l, err := m.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	var victims, survivors []*child
	for i := 0; i < 4; i++ {
		victims = append(victims, startChild(t, "log-read", name, "0", strconv.Itoa(i%2)))
	}
	for i := 0; i < 2; i++ {
		survivors = append(survivors, startChild(t, "log-read", name, "0", strconv.Itoa(i%2)))
	}
	waitReaders(t, m, 6)
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	rate := func(k int) float64 {
		start := time.Now()
		for i := 0; i < k; i++ {
			seq := w.Seq()
			size := lsize(seq, len(buf))
			lmsg(buf[:size], seq)
			if err := w.Append(buf[:size]); err != nil {
				t.Fatal(err)
			}
			if i%200 == 199 {
				time.Sleep(time.Millisecond) // let the readers keep up
			}
		}
		return float64(k) / time.Since(start).Seconds()
	}
	before := rate(20000)
	for i, v := range victims {
		time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
		v.kill()
		rate(1000 + 500*i)
	}
	after := rate(20000)
	t.Logf("writer: %.0f messages/s before the kills, %.0f after", before, after)
	if after < before/4 {
		t.Errorf("writer slowed down after the readers died: %.0f/s before, %.0f/s after", before, after)
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	dead := 0
	for _, r := range st.Readers {
		if !r.Process.Alive {
			dead++
		}
	}
	if dead != len(victims) {
		t.Errorf("%d dead readers in the stats, want %d: %+v", dead, len(victims), st.Readers)
	}
	// New readers take the dead ones' slots: the log has 64, fill them all.
	var extra []*LogReader
	for i := 0; i < 64-len(survivors); i++ {
		r, err := l.Reader(LogNext)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Registered() {
			t.Fatalf("reader %d found no slot: the dead readers' slots were not taken", i)
		}
		extra = append(extra, r)
	}
	for _, r := range extra {
		r.Close()
	}
	cw, err := m.Cell(0)
	if err != nil {
		t.Fatal(err)
	}
	cwr, err := cw.Writer()
	if err != nil {
		t.Fatal(err)
	}
	var v [8]byte
	binary.LittleEndian.PutUint64(v[:], w.Seq())
	cwr.Store(v[:])
	for _, s := range survivors {
		s.wait(time.Minute)
		got, lost := readerCounts(t, s.output())
		if got+lost != w.Seq() {
			t.Errorf("survivor: received %d + lost %d != %d", got, lost, w.Seq())
		}
	}
}

// TestLogKillWriter: writer processes killed at random points, in the
// middle of records (they fill their claims byte by byte), each followed
// by a new writer process that continues the log. Readers, which keep up,
// account for every message, and lose at most one per dead writer.
func TestLogKillWriter(t *testing.T) {
	kills := 5
	if os.Getenv("SHM_TORTURE") != "" {
		kills = 50
	}
	m, name := newLogSegment(t, 1<<20)
	var readers []*child
	for i := 0; i < 3; i++ {
		readers = append(readers, startChild(t, "log-read", name, "0", strconv.Itoa(i%2)))
	}
	waitReaders(t, m, 3)
	l, err := m.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < kills; k++ {
		w := startChild(t, "log-write", name, "0", "4000", "50", "claim", "")
		// Wait until it writes, then kill it at a random moment.
		st0, _ := l.Stats()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Messages > st0.Messages+10 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("writer %d wrote nothing", k)
			}
		}
		time.Sleep(time.Duration(rand.IntN(20000)) * time.Microsecond)
		w.kill()
	}
	last := startChild(t, "log-write", name, "1000", "4000", "50", "append", "end")
	last.wait(time.Minute)
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages, %d lost with %d dead writers", st.Messages, st.WriterLost, kills)
	if st.WriterLost > uint64(kills) || st.WriterLost == 0 {
		// A writer spends most of its time inside a claim: one killed
		// outside of one, 5 times in a row, is not to be expected.
		t.Errorf("%d messages lost with %d dead writers", st.WriterLost, kills)
	}
	for i, r := range readers {
		r.wait(time.Minute)
		got, lost := readerCounts(t, r.output())
		if got+lost != st.Messages {
			t.Errorf("reader %d: received %d + lost %d != %d", i, got, lost, st.Messages)
		}
		if lost > st.WriterLost {
			t.Errorf("reader %d lost %d, the dead writers left %d unfinished", i, lost, st.WriterLost)
		}
	}
}

func init() {
	// args: name, milliseconds (0: until killed). Stores values whose
	// 8 words all hold the same counter, continuing from the cell's.
	registerChild("cell-write", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		c, err := m.Cell(0)
		if err != nil {
			return err
		}
		w, err := c.Writer()
		if err != nil {
			return err
		}
		var v [8]uint64
		if _, err := LoadValue(c, &v); err != nil {
			return err
		}
		end := time.Now().Add(time.Duration(atoi(args[1])) * time.Millisecond)
		for i := 0; atoi(args[1]) == 0 || time.Now().Before(end); i++ {
			x := v[0] + 1
			for j := range v {
				v[j] = x
			}
			if err := StoreValue(w, &v); err != nil {
				return err
			}
		}
		return nil
	})

	// args: name, milliseconds. Loads for that long (waiting for the next
	// version now and then): every snapshot must have all words equal, and
	// neither versions nor values may go back.
	registerChild("cell-read", func(args []string) error {
		m, err := OpenManaged(args[0])
		if err != nil {
			return err
		}
		defer m.Close()
		c, err := m.Cell(0)
		if err != nil {
			return err
		}
		var v [8]uint64
		var lastVer, lastVal uint64
		loads := 0
		end := time.Now().Add(time.Duration(atoi(args[1])) * time.Millisecond)
		for time.Now().Before(end) {
			ver, err := LoadValue(c, &v)
			if err != nil {
				return err
			}
			loads++
			for j := range v {
				if v[j] != v[0] {
					return fmt.Errorf("torn read at version %d: %v", ver, v)
				}
			}
			if ver < lastVer || v[0] < lastVal {
				return fmt.Errorf("went back: version %d value %d after version %d value %d", ver, v[0], lastVer, lastVal)
			}
			lastVer, lastVal = ver, v[0]
			if loads%1000 == 0 {
				if _, err := c.WaitTimeout(ver, 20*time.Millisecond); err != nil && !errors.Is(err, ErrTimeout) {
					return err
				}
			}
		}
		fmt.Printf("loads %d last version %d\n", loads, lastVer)
		return nil
	})
}

// TestCellProcesses: a writer process stores values whose every word holds
// one counter, 8 reader processes check every snapshot, and the writer is
// killed in the middle of its stores and replaced, several times. No read
// is ever torn, nothing goes back, and each new writer continues.
func TestCellProcesses(t *testing.T) {
	ms := 2000
	if os.Getenv("SHM_TORTURE") != "" {
		ms = 20000
	}
	c := Config{Name: testName(t), Size: 64}
	c.AddCell(64)
	m, err := c.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var readers []*child
	for i := 0; i < 8; i++ {
		readers = append(readers, startChild(t, "cell-read", c.Name, strconv.Itoa(ms)))
	}
	cell, err := m.Cell(0)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(time.Duration(ms) * time.Millisecond)
	kills := 0
	var prev uint64
	for time.Now().Before(end) {
		w := startChild(t, "cell-write", c.Name, "0")
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			if v, _ := cell.Version(); v > prev+100 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the writer stores nothing")
			}
		}
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
		w.kill()
		kills++
		prev, _ = cell.Version()
	}
	for i, r := range readers {
		r.wait(time.Minute)
		t.Logf("reader %d: %s", i, strings.TrimSpace(r.output()))
	}
	var v [8]uint64
	ver, err := LoadValue(cell, &v)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writers killed; version %d, value %d", kills, ver, v[0])
	if v[0] != ver {
		// Each store adds one to the value the writer found, the last one
		// published: a store cut short by a kill publishes nothing.
		t.Errorf("value %d at version %d after %d kills", v[0], ver, kills)
	}
}
