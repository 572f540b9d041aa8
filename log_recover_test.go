package shm

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// A writer that dies in the middle of an append leaves the log in one of
// a few states, each of which the next writer must continue from. The
// states are made here by hand, word by word, as the dead writer left them.

func TestLogRecoverStates(t *testing.T) {
	const capacity = 1024
	for _, tc := range []struct {
		name string
		// die leaves an append of n bytes half done, as a writer that died
		// at that point would (w's fields are the dead writer's).
		die func(w *LogWriter, n uint64)
	}{
		{"after intent", func(w *LogWriter, n uint64) {
			w.begin(n)
		}},
		{"after the record", func(w *LogWriter, n uint64) {
			start, _ := w.begin(n)
			storeOrdered(w.l.sq(start), w.seq)
			storeOrdered(w.l.hd(start), recHeader(n, recCommitted, 0))
		}},
		{"after last", func(w *LogWriter, n uint64) {
			start, _ := w.begin(n)
			storeOrdered(w.l.sq(start), w.seq)
			storeOrdered(w.l.hd(start), recHeader(n, recCommitted, 0))
			storeOrdered(w.l.last, start)
		}},
	} {
		// Records of 64 bytes before; the dead one's is 128: after 15, it
		// wraps (padding first) and overwrites the first two; "after"
		// (32 bytes) then overwrites one more. After 14, the dead one's
		// ends at the end of the ring, and "after" overwrites the first.
		for _, before := range []int{0, 1, 3, 14, 15} {
			t.Run(tc.name, func(t *testing.T) {
				seg, err := Create(testName(t), LogSize(capacity, 2))
				if err != nil {
					t.Fatal(err)
				}
				defer seg.Close()
				l, err := FormatLog(seg.Bytes(), capacity, 0, 2)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				w, err := l.Writer()
				if err != nil {
					t.Fatal(err)
				}
				r, err := l.Reader(LogOldest)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < before; i++ {
					if err := w.Append(make([]byte, 40)); err != nil {
						t.Fatal(err)
					}
				}
				tc.die(w, 100)
				// The dead writer's place: free it as its death would.
				l.wr.Store(nil)
				atomic.StoreUint64(l.writer, 0)
				w2, err := l.Writer()
				if err != nil {
					t.Fatalf("the next writer: %v", err)
				}
				if w2.Seq() != uint64(before)+1 {
					t.Errorf("the next writer numbers from %d, want %d", w2.Seq(), before+1)
				}
				if err := w2.Append([]byte("after")); err != nil {
					t.Fatal(err)
				}
				// What the reader must see: the messages before (less those
				// the recovered record overwrote, reported lost), the dead
				// writer's message lost, the next writer's message.
				buf := make([]byte, 64)
				overwritten := 0 // by the recovered record, and by "after"
				switch before {
				case 14:
					overwritten = 1
				case 15:
					overwritten = 3
				}
				var got []string
				for {
					n, err := r.Copy(buf)
					var le *LostError
					switch {
					case errors.As(err, &le):
						got = append(got, fmt.Sprintf("lost %d from %d", le.Count, le.Seq))
						continue
					case err != nil:
						t.Fatal(err)
					}
					got = append(got, string(buf[:n]))
					if string(buf[:n]) == "after" {
						break
					}
				}
				var want []string
				if overwritten > 0 {
					want = append(want, fmt.Sprintf("lost %d from 0", overwritten))
				}
				for i := overwritten; i < before; i++ {
					want = append(want, string(make([]byte, 40)))
				}
				want = append(want, fmt.Sprintf("lost 1 from %d", before), "after")
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("read %q, want %q", got, want)
				}
				st, _ := l.Stats()
				if st.WriterLost != 1 || st.Messages != uint64(before)+2 {
					t.Errorf("stats: %+v", st)
				}
			})
		}
	}
}
