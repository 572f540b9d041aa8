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

// primitives is every lock and event, laid out as they would be in a
// segment, for the fuzz test to fill with arbitrary bytes.
type primitives struct {
	mu  Mutex
	rw  RWMutex
	ae  AutoEvent
	me  ManualEvent
	bae BusyAutoEvent
	bme BusyManualEvent
}

// FuzzPrimitiveWords: another process may write anything into the words of
// a lock or event. Whatever it wrote, every call with a timeout returns
// within about its timeout (the test allows generous slack), and nothing
// panics. The fuzzer chooses the initial words and a sequence of calls.
func FuzzPrimitiveWords(f *testing.F) {
	size := int(unsafe.Sizeof(primitives{}))
	zero := make([]byte, size)
	ones := make([]byte, size)
	for i := range ones {
		ones[i] = 0xff
	}
	ops := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	f.Add(zero, ops)
	f.Add(ones, ops)
	// A mutex "held" by an unknown process with waiters, an RWMutex whose
	// writer word has the readers bit and an owner, every idle bit set,
	// slots of unknown processes and of this one, events with huge waiter
	// counts.
	odd := make([]byte, size)
	ne := binary.NativeEndian
	rw := int(unsafe.Offsetof(primitives{}.rw))
	ne.PutUint64(odd[0:], 1|mWaiters|uint64(7)<<32)
	ne.PutUint64(odd[rw:], 5|mReaders|mWaiters|uint64(9)<<32)
	ne.PutUint32(odd[rw+8:], 5)
	for i := 0; i < 4; i++ {
		ne.PutUint64(odd[rw+16+8*i:], ^uint64(0))
	}
	slots := rw + int(unsafe.Offsetof(RWMutex{}.slots))
	ne.PutUint64(odd[slots:], 1<<16|3)
	ne.PutUint64(odd[slots+8:], 999999<<16|1)
	ne.PutUint64(odd[slots+8*int(readerHome):], readerID|200)
	ne.PutUint32(odd[size-32:], 0xfffffffe)
	ne.PutUint32(odd[size-24:], 0xffffffff)
	f.Add(odd, ops)
	f.Add(odd, []byte{3, 3, 3, 7, 7, 1, 9, 9})

	f.Fuzz(func(t *testing.T, words []byte, ops []byte) {
		var p primitives
		b := unsafe.Slice((*byte)(unsafe.Pointer(&p)), size)
		copy(b, words)
		if len(ops) > 24 {
			ops = ops[:24]
		}
		// Another process keeps writing the fuzzer's words into the
		// primitives while the calls wait on them: 8-byte words at offsets
		// and with values taken from the input, one every few microseconds.
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
				off := int(ne.Uint32(words[j:])) % (size / 8) * 8
				atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[off])), ne.Uint64(words[j+8:]))
				time.Sleep(20 * time.Microsecond)
			}
		}()
		defer func() { close(stop); <-mutated }()
		const tiny = time.Millisecond
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), tiny)
			defer cancel()
			for _, op := range ops {
				var err error
				switch op % 20 {
				case 0:
					err = p.mu.LockTimeout(tiny)
				case 1:
					p.mu.TryLock()
				case 2:
					p.mu.Unlock()
				case 3:
					err = p.mu.LockContext(ctx)
				case 4:
					p.mu.MarkConsistent()
				case 5:
					err = p.rw.RLockTimeout(tiny)
				case 6:
					p.rw.RUnlock()
				case 7:
					err = p.rw.LockTimeout(tiny)
				case 8:
					p.rw.Unlock()
				case 9:
					p.rw.TryRLock()
				case 10:
					p.rw.TryLock()
				case 11:
					err = p.rw.RLockContext(ctx)
				case 12:
					err = p.ae.WaitTimeout(tiny)
				case 13:
					p.ae.Set()
				case 14:
					err = p.me.WaitTimeout(tiny)
				case 15:
					p.me.Set()
					p.me.Reset()
				case 16:
					err = p.bae.WaitTimeout(tiny)
				case 17:
					p.bme.Set()
					err = p.bme.WaitContext(ctx)
				case 18:
					err = p.ae.WaitContext(ctx)
				case 19:
					p.ae.Reset()
					p.bae.Set()
				}
				if err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrOwnerDead) &&
					!errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("op %d: unexpected error %v", op, err)
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(time.Duration(len(ops))*200*time.Millisecond + 2*time.Second):
			t.Fatalf("calls with a 1ms timeout did not return (words %x, ops %v)", words, ops)
		}
	})
}
