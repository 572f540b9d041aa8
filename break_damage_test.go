package shm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestBreakDamagedWords: garbage written into every word of the primitives
// (owner tokens nobody holds, counts wrapped, bits in unused positions)
// while goroutines wait on them with short timeouts: no call may panic or
// return later than its deadline plus a scheduling delay, and Unlock,
// RUnlock, Set and Reset must return at once.
func TestBreakDamagedWords(t *testing.T) {
	_, _, a := newArea(t)
	words := []*uint64{&a.mu.state, &a.rw.w.state, (*uint64)(unsafe.Pointer(&a.rw.drain)),
		(*uint64)(unsafe.Pointer(&a.auto.state)), (*uint64)(unsafe.Pointer(&a.manual.state)),
		(*uint64)(unsafe.Pointer(&a.bauto.state)), (*uint64)(unsafe.Pointer(&a.bmanual.state))}
	for i := range a.rw.idle {
		words = append(words, &a.rw.idle[i])
	}
	for i := 0; i < len(a.rw.slots); i += 7 {
		words = append(words, &a.rw.slots[i])
	}
	words = append(words, a.rw.home())
	garbage := func() uint64 {
		switch rand.N(8) {
		case 0:
			return 0
		case 1:
			return ^uint64(0)
		case 2:
			return rand.Uint64() // a token nobody holds, any bits
		case 3:
			return selfWord | 1<<24 | mWaiters | mReaders // our token, unused bits
		case 4:
			return readerID | rCountMask // our slot, full
		case 5:
			return readerID // our token, count 0
		case 6:
			return uint64(rand.Uint32()) // low word only
		}
		return rand.Uint64() << 32
	}
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			atomic.StoreUint64(words[rand.N(len(words))], garbage())
			time.Sleep(time.Duration(rand.N(200)) * time.Microsecond)
		}
	}()
	const slack = 250 * time.Millisecond
	errc := make(chan error, 64)
	calls := []func(d time.Duration) error{
		func(d time.Duration) error {
			err := a.mu.LockTimeout(d)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				a.mu.MarkConsistent()
				a.mu.Unlock()
				return nil
			}
			return err
		},
		func(d time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			err := a.mu.LockContext(ctx)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				a.mu.Unlock()
				return nil
			}
			return err
		},
		func(d time.Duration) error {
			err := a.rw.LockTimeout(d)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				a.rw.Unlock()
				return nil
			}
			return err
		},
		func(d time.Duration) error {
			err := a.rw.RLockTimeout(d)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				a.rw.RUnlock()
				return nil
			}
			return err
		},
		func(d time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			err := a.rw.RLockContext(ctx)
			if err == nil || errors.Is(err, ErrOwnerDead) {
				a.rw.RUnlock()
				return nil
			}
			return err
		},
		func(d time.Duration) error {
			a.rw.TryLock()
			a.rw.Unlock()
			a.rw.TryRLock()
			a.rw.RUnlock()
			return nil
		},
		func(d time.Duration) error { return a.auto.WaitTimeout(d) },
		func(d time.Duration) error { return a.manual.WaitTimeout(d) },
		func(d time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			return a.manual.WaitContext(ctx)
		},
		func(d time.Duration) error { return a.bauto.WaitTimeout(d) },
		func(d time.Duration) error { return a.bmanual.WaitTimeout(d) },
		func(d time.Duration) error {
			a.auto.Set()
			a.manual.Set()
			a.manual.Reset()
			a.auto.Reset()
			a.bauto.Set()
			a.bmanual.Set()
			a.bmanual.Reset()
			return nil
		},
	}
	for g := 0; g < 12; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			end := time.Now().Add(2 * time.Second)
			for time.Now().Before(end) {
				i := rand.N(len(calls))
				d := time.Duration(1+rand.N(3000)) * time.Microsecond
				start := time.Now()
				err := func() (err error) {
					defer func() {
						if r := recover(); r != nil {
							err = fmt.Errorf("panic: %v", r)
						}
					}()
					return calls[i](d)
				}()
				if el := time.Since(start); el > d+slack {
					errc <- fmt.Errorf("call %d with timeout %v returned after %v (%v)", i, d, el, err)
					return
				}
				if err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
					errc <- fmt.Errorf("call %d: %v", i, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		time.Sleep(2*time.Second + 5*slack)
		halt()
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case err := <-errc:
		halt()
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("calls with timeouts of at most 3 ms did not return in 30 s")
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}
