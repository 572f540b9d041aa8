package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Queue fuzzing: another process may write anything into a queue's
// header, control words, producer slots and records, before and while
// this process uses it. Whatever it wrote, every call returns (the Timeout
// forms within about their timeout), nothing panics, and no message or
// claim is a slice outside the ring.

const (
	fqCapacity = 256
	fqSlots    = 4
)

// fqSeed returns the bytes of a queue in a state reached by real calls:
// messages committed and waiting, two released, one claim in progress
// (its slot filled in), padding at the end of the ring.
func fqSeed(f *testing.F) []byte {
	seg, err := Create(testName(f), QueueSize(fqCapacity, fqSlots))
	if err != nil {
		f.Fatal(err)
	}
	defer seg.Close()
	q, err := FormatQueue(seg.Bytes(), fqCapacity, 0, fqSlots)
	if err != nil {
		f.Fatal(err)
	}
	defer q.Close()
	c, err := q.Consumer()
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{40, 0, 100} {
		if err := q.Send(make([]byte, n)); err != nil {
			f.Fatal(err)
		}
	}
	var m Message
	for i := 0; i < 2; i++ {
		if m, err = c.Receive(); err != nil {
			f.Fatal(err)
		}
	}
	c.Release(m)
	if err := q.TrySend(make([]byte, 44)); err != nil { // wraps: padding
		f.Fatal(err)
	}
	if _, err := q.TryClaim(0); err != nil {
		f.Fatal(err)
	}
	return append([]byte(nil), seg.Bytes()...)
}

func FuzzQueueWords(f *testing.F) {
	size := QueueSize(fqCapacity, fqSlots)
	f.Add(make([]byte, size), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	ones := make([]byte, size)
	for i := range ones {
		ones[i] = 0xff
	}
	f.Add(ones, []byte{4, 0, 4, 2, 4, 5})
	seed := fqSeed(f)
	f.Add(seed, []byte{4, 4, 5, 4, 4, 5, 0, 1, 2, 3, 6, 7})
	bad := append([]byte(nil), seed...)
	ne := binary.NativeEndian
	ne.PutUint64(bad[qOffHead:], 1<<40)   // head past tail
	ne.PutUint64(bad[qOffSlots+8:], 1<<9) // a slot covering nothing
	f.Add(bad, []byte{4, 5, 4, 0, 8, 4})
	bad = append([]byte(nil), seed...)
	bad[0] |= 1 // the first byte odd: the header is the fuzzer's too
	ne.PutUint32(bad[12:], 63)
	f.Add(bad, []byte{0, 4})

	f.Fuzz(func(t *testing.T, words []byte, ops []byte) {
		seg, err := Create(testName(t), size)
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
		b := seg.Bytes()
		if _, err := FormatQueue(b, fqCapacity, 0, fqSlots); err != nil {
			t.Fatal(err)
		}
		// The header (magic, version, sizes) is the fuzzer's only when its
		// first byte is odd: otherwise most inputs would only test
		// AttachQueue's refusal.
		from := 64
		if len(words) > 0 && words[0]&1 != 0 {
			from = 0
		}
		if len(words) > from {
			copy(b[from:], words[from:])
		}
		q, err := AttachQueue(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrRange) {
				t.Fatalf("AttachQueue: %v", err)
			}
			return
		}
		defer q.Close()
		ringLo := uintptr(unsafe.Pointer(unsafe.SliceData(q.ring)))
		ringHi := ringLo + uintptr(len(q.ring))
		inRing := func(what string, p []byte) {
			if len(p) == 0 {
				return
			}
			lo := uintptr(unsafe.Pointer(&p[0]))
			if lo < ringLo || lo+uintptr(len(p)) > ringHi || cap(p) > len(q.ring) {
				t.Errorf("%s: %d bytes at ring offset %d, outside the ring of %d", what, len(p), int64(lo-ringLo), len(q.ring))
			}
		}
		if len(ops) > 32 {
			ops = ops[:32]
		}

		// A peer keeps writing the fuzzer's words into the queue's control
		// words, slots and record headers while the calls run.
		stop := make(chan struct{})
		mutated := make(chan struct{})
		go func() {
			defer close(mutated)
			if len(words) < 16 {
				return
			}
			ne := binary.NativeEndian
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				j := (i * 16) % (len(words) - 15)
				off := 64 + int(ne.Uint32(words[j:])%uint32((size-64)/8))*8
				atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[off])), ne.Uint64(words[j+8:]))
				time.Sleep(50 * time.Microsecond)
			}
		}()
		defer func() { close(stop); <-mutated }()

		const tiny = time.Millisecond
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), tiny)
			defer cancel()
			c, _ := q.Consumer()
			var p *Producer
			var last Message
			buf := make([]byte, fqCapacity)
			msg := make([]byte, fqCapacity)
			for i, op := range ops {
				n := int(op) >> 4 * 9 % (q.MaxMessage() + 10) // past the largest too
				var err error
				switch op % 14 {
				case 0:
					err = q.TrySend(msg[:n])
				case 1:
					err = q.SendTimeout(msg[:n], tiny)
				case 2, 3:
					var cl Claim
					if cl, err = q.ClaimTimeout(n, tiny); err == nil {
						inRing("claim", cl.Bytes())
						clear(cl.Bytes())
						if op%14 == 2 {
							err = cl.Commit()
						} else {
							err = cl.Abort()
						}
						if err2 := cl.Commit(); err2 == nil {
							t.Errorf("op %d: a second Commit of a claim succeeded", i)
						}
					}
				case 4:
					if c == nil {
						continue
					}
					var m Message
					if m, err = c.ReceiveTimeout(tiny); err == nil {
						inRing("message", m.Bytes())
						_ = append(buf[:0], m.Bytes()...)
						last = m
					}
				case 5:
					if c != nil {
						err = c.Release(last)
					}
				case 6:
					if c != nil {
						_, err = c.TryCopy(buf)
					}
				case 7:
					_, err = q.Stats()
				case 8:
					if c != nil {
						c.Close()
					}
					c, err = q.Consumer()
					last = Message{}
				case 9:
					if c != nil {
						_, err = c.ReceiveContext(ctx)
					}
				case 10:
					if p == nil {
						p, err = q.Producer()
					} else {
						err = p.SendTimeout(msg[:n], tiny)
					}
				case 11:
					if p != nil {
						var cl Claim
						if cl, err = p.TryClaim(n); err == nil {
							inRing("producer claim", cl.Bytes())
							err = cl.Commit()
						}
					}
				case 12:
					err = q.SendContext(ctx, msg[:n])
				case 13:
					if c != nil {
						_, err = c.TryReceive()
					}
				}
				if err != nil && !queueFuzzErr(err) {
					t.Errorf("op %d (%d, n %d): unexpected error %v", i, op%14, n, err)
				}
			}
			if p != nil {
				p.Close()
			}
		}()
		select {
		case <-done:
		case <-time.After(time.Duration(len(ops))*200*time.Millisecond + 2*time.Second):
			t.Fatalf("calls with a 1ms timeout did not return (ops %v)", ops)
		}
	})
}

// queueFuzzErr reports whether err is one the queue may answer damaged
// memory, or a bad argument of the fuzz calls, with.
func queueFuzzErr(err error) bool {
	for _, e := range []error{ErrCorrupt, ErrTimeout, ErrFull, ErrEmpty, ErrTooLarge,
		ErrInUse, ErrRange, context.DeadlineExceeded, ErrOwnerDead} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
