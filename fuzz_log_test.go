package shm

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
	"unsafe"
)

// Log and cell fuzzing: another process may write anything into a log's
// or a cell's words and records. Whatever it wrote, every call returns
// (the Timeout forms within about their timeout), nothing panics, and no
// message is a slice outside the ring.

const (
	flCapacity = 1024
	flReaders  = 2
)

// flSeed returns the bytes of a log in a state reached by real calls:
// several laps of messages of mixed sizes (padding at the end of the ring
// among them), a registered reader, a claim open.
func flSeed(f *testing.F) []byte {
	seg, err := Create(testName(f), LogSize(flCapacity, flReaders))
	if err != nil {
		f.Fatal(err)
	}
	defer seg.Close()
	l, err := FormatLog(seg.Bytes(), flCapacity, 0, flReaders)
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	w, err := l.Writer()
	if err != nil {
		f.Fatal(err)
	}
	r, err := l.Reader(LogOldest)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := w.Append(make([]byte, i*9%100)); err != nil {
			f.Fatal(err)
		}
	}
	r.TryReceive()
	if _, err := w.Claim(30); err != nil {
		f.Fatal(err)
	}
	return append([]byte(nil), seg.Bytes()...)
}

// alignedCopy returns a copy of b at a 64-byte boundary.
func alignedCopy(b []byte) []byte {
	buf := make([]byte, len(b)+64)
	off := (64 - int(uintptr(unsafe.Pointer(&buf[0]))%64)) % 64
	out := buf[off : off+len(b)]
	copy(out, b)
	return out
}

func FuzzLogWords(f *testing.F) {
	size := LogSize(flCapacity, flReaders)
	seed := flSeed(f)
	f.Add(seed[24:], []byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add(make([]byte, size-24), []byte{1, 0, 3, 2})
	bad := append([]byte(nil), seed...)
	ne := binary.NativeEndian
	ne.PutUint64(bad[lOffIntent:], ne.Uint64(bad[lOffTail:])+flCapacity) // intent a lap ahead
	ne.PutUint64(bad[lOffHead:], 16)
	f.Add(bad[24:], []byte{0, 2, 4, 1, 1})
	bad = append([]byte(nil), seed...)
	ne.PutUint64(bad[lOffTail:], 1<<62) // tail far beyond intent
	f.Add(bad[24:], []byte{2, 3, 0, 5})
	f.Fuzz(func(t *testing.T, words []byte, ops []byte) {
		b := alignedCopy(seed)
		copy(b[24:], words) // the header (magic, sizes) stays: the rest is the fuzzer's
		l, err := AttachLog(b)
		if err != nil {
			return
		}
		defer l.Close()
		lo := uintptr(unsafe.Pointer(&l.ring[0]))
		hi := lo + uintptr(len(l.ring))
		inRing := func(p []byte) {
			if len(p) == 0 {
				return
			}
			a := uintptr(unsafe.Pointer(&p[0]))
			if a < lo || a+uintptr(len(p)) > hi {
				t.Fatalf("a message outside the ring: [%#x, +%d) not in [%#x, %#x)", a, len(p), lo, hi)
			}
		}
		var w *LogWriter
		var readers []*LogReader
		buf := make([]byte, flCapacity)
		if len(ops) > 40 {
			ops = ops[:40]
		}
		for _, op := range ops {
			start := time.Now()
			switch op % 8 {
			case 0:
				if w == nil {
					w, _ = l.Writer()
				}
			case 1:
				if w != nil {
					w.Append(buf[:int(op)%100])
				}
			case 2:
				r, err := l.Reader(LogStart(op / 8 % 3))
				if err == nil {
					readers = append(readers, r)
				}
			case 3, 4:
				for _, r := range readers {
					m, err := r.TryReceive()
					if err == nil {
						inRing(m.Bytes())
						_ = r.Check(m)
					}
				}
			case 5:
				for _, r := range readers {
					if _, err := r.CopyTimeout(buf, time.Millisecond); err != nil && errors.Is(err, ErrTooLarge) {
						t.Fatalf("copy: %v", err)
					}
				}
			case 6:
				l.Stats()
			case 7:
				if w != nil {
					if c, err := w.Claim(int(op) % 50); err == nil {
						inRing(c)
						w.Abort()
					}
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("op %d took %v", op%8, d)
			}
		}
	})
}

func FuzzCellWords(f *testing.F) {
	const size = 24
	seg, err := Create(testName(f), CellSize(size))
	if err != nil {
		f.Fatal(err)
	}
	c, err := FormatCell(seg.Bytes(), size)
	if err != nil {
		f.Fatal(err)
	}
	w, _ := c.Writer()
	w.Store(make([]byte, size))
	seed := append([]byte(nil), seg.Bytes()...)
	c.Close()
	seg.Close()
	f.Add(seed[16:], []byte{0, 1, 2, 3})
	odd := append([]byte(nil), seed...)
	binary.NativeEndian.PutUint64(odd[cOffCopies+cellStride(size):], 7) // the current copy odd
	f.Add(odd[16:], []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, words []byte, ops []byte) {
		b := alignedCopy(seed)
		copy(b[16:], words)
		c, err := AttachCell(b)
		if err != nil {
			return
		}
		defer c.Close()
		var w *CellWriter
		v := make([]byte, size)
		if len(ops) > 20 {
			ops = ops[:20]
		}
		for _, op := range ops {
			start := time.Now()
			switch op % 4 {
			case 0:
				if w == nil {
					w, _ = c.Writer()
				} else {
					w.Store(v)
				}
			case 1:
				c.Load(v)
			case 2:
				ver, _ := c.Version()
				c.WaitTimeout(ver, time.Millisecond)
			case 3:
				c.Stats()
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("op %d took %v", op%4, d)
			}
		}
	})
}
