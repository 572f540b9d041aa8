package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Round 7: where a new reader starts, and the number it starts counting
// from (Log.seqAt), against a writer appending flat out on the other CPU.
//
// A reader's first event (a loss or a message) names the first sequence
// number it is owed. For every start that number lies between the
// messages appended before Reader was called and those appended when it
// returned (LogOldest: at most the latter). A reader that does not know
// it (seqAt gave up: r.synced false) later counts from whatever it reads
// first, and the messages between its start and that one are lost without
// being reported.

// b7Writer appends messages numbered from 0 (8-byte number in front) of
// 8..maxLen bytes, flat out, until stop; sent is how many are appended.
type b7Writer struct {
	sent atomic.Uint64
	stop atomic.Bool
	wg   sync.WaitGroup
	err  error
}

func b7StartWriter(t *testing.T, l *Log, maxLen int) *b7Writer {
	t.Helper()
	w, err := l.Writer()
	if err != nil {
		t.Fatal(err)
	}
	bw := &b7Writer{}
	bw.wg.Add(1)
	go func() {
		defer bw.wg.Done()
		defer w.Close()
		buf := make([]byte, maxLen)
		for i := uint64(0); !bw.stop.Load(); i++ {
			n := 8 + int(i*37%uint64(maxLen-8+1))
			binary.LittleEndian.PutUint64(buf, i)
			if err := w.Append(buf[:n]); err != nil {
				bw.err = err
				return
			}
			bw.sent.Store(i + 1)
		}
	}()
	t.Cleanup(bw.end)
	return bw
}

func (bw *b7Writer) end() {
	bw.stop.Store(true)
	bw.wg.Wait()
}

// waitSent waits until at least n messages are appended.
func (bw *b7Writer) waitSent(n uint64) bool {
	for deadline := time.Now().Add(5 * time.Second); bw.sent.Load() < n; {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Microsecond)
	}
	return true
}

// b7First returns the first sequence number the reader reports: the first
// lost one, or the first message's.
func b7First(r *LogReader) (uint64, error) {
	buf := make([]byte, 4096)
	for i := 0; i < 1000; i++ {
		n, err := r.TryCopy(buf)
		var le *LostError
		switch {
		case errors.As(err, &le):
			return le.Seq, nil
		case errors.Is(err, ErrEmpty):
			time.Sleep(time.Microsecond)
			continue
		case err != nil:
			return 0, err
		}
		if n < 8 {
			return 0, fmt.Errorf("message of %d bytes", n)
		}
		return binary.LittleEndian.Uint64(buf), nil
	}
	return 0, errors.New("nothing to read")
}

// TestBreak7LogStartRace: readers made while the writer appends flat out
// into a 512-byte ring, then left alone while the writer laps the ring
// several times: their first report must name their own start, however
// the writer raced with Reader. LogOldest starts at head, which a writer
// flat out overwrites within one append: seqAt then finds head's record
// overwritten and gives up (r.synced false), and the reader, once it
// reads, counts from the record it finds then, laps later, the messages
// appended after it was made reported nowhere.
func TestBreak7LogStartRace(t *testing.T) {
	for _, from := range []LogStart{LogOldest, LogNewest, LogNext} {
		t.Run(fmt.Sprint("from", from), func(t *testing.T) {
			_, l := newLog(t, 512, 0)
			bw := b7StartWriter(t, l, 48)
			if !bw.waitSent(100) {
				t.Fatal("writer does not run")
			}
			const rounds = 300
			bad := 0
			var first string
			for k := 0; k < rounds; k++ {
				before := bw.sent.Load()
				r, err := l.Reader(from)
				if err != nil {
					t.Fatal(err)
				}
				after := bw.sent.Load() + 1 // and the one in progress
				// Laps of the ring (about 16 records a lap) before the
				// first read.
				if !bw.waitSent(after + 100) {
					t.Fatal("writer stopped")
				}
				s, err := b7First(r)
				r.Close()
				if err != nil {
					t.Fatal(err)
				}
				lo := before
				if from == LogNewest && lo > 0 {
					lo--
				}
				if s > after || (from != LogOldest && s < lo) {
					if bad == 0 {
						first = fmt.Sprintf("made between %d and %d messages appended, first reported %d", before, after, s)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d readers started elsewhere than where they were made; first: %s", bad, rounds, first)
			}
		})
	}
}
