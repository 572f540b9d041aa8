package bench

import (
	"sync"
	"sync/atomic"

	"github.com/go-shm/shm"
)

// Uncontended operations: loops of n operations that never wait, used by
// both the go test benchmarks and shm bench, so that both time the same
// code. Each primitive sits on a cache line of its own.

// Prims holds one of each primitive, for the uncontended loops. Place it in
// a segment (shm.View) or in process memory.
type Prims struct {
	Mu  shm.Mutex
	_   [56]byte
	RW  shm.RWMutex
	_   [40]byte
	AE  shm.AutoEvent
	_   [56]byte
	ME  shm.ManualEvent
	_   [56]byte
	BAE shm.BusyAutoEvent
	_   [56]byte
}

// MutexLoop locks and unlocks the Mutex n times.
func (p *Prims) MutexLoop(n int) {
	for i := 0; i < n; i++ {
		p.Mu.Lock()
		p.Mu.Unlock()
	}
}

// TryLockLoop try-locks and unlocks the Mutex n times.
func (p *Prims) TryLockLoop(n int) {
	for i := 0; i < n; i++ {
		if p.Mu.TryLock() {
			p.Mu.Unlock()
		}
	}
}

// RLockLoop read-locks and read-unlocks the RWMutex n times.
func (p *Prims) RLockLoop(n int) {
	for i := 0; i < n; i++ {
		p.RW.RLock()
		p.RW.RUnlock()
	}
}

// WLockLoop write-locks and unlocks the RWMutex n times.
func (p *Prims) WLockLoop(n int) {
	for i := 0; i < n; i++ {
		p.RW.Lock()
		p.RW.Unlock()
	}
}

// The event loops set a clear event with nobody waiting, then clear it
// again (Reset, or a Wait that returns at once), so every Set does work.

// AutoSetResetLoop sets and resets the AutoEvent n times.
func (p *Prims) AutoSetResetLoop(n int) {
	for i := 0; i < n; i++ {
		p.AE.Set()
		p.AE.Reset()
	}
}

// AutoSetWaitLoop sets the AutoEvent and takes it with Wait, n times.
func (p *Prims) AutoSetWaitLoop(n int) {
	for i := 0; i < n; i++ {
		p.AE.Set()
		p.AE.Wait()
	}
}

// ManualSetResetLoop sets and resets the ManualEvent n times.
func (p *Prims) ManualSetResetLoop(n int) {
	for i := 0; i < n; i++ {
		p.ME.Set()
		p.ME.Reset()
	}
}

// BusyAutoSetWaitLoop sets the BusyAutoEvent and takes it, n times.
func (p *Prims) BusyAutoSetWaitLoop(n int) {
	for i := 0; i < n; i++ {
		p.BAE.Set()
		p.BAE.Wait()
	}
}

// The baselines, in process memory as Go programs use them.
var (
	baseMu   sync.Mutex
	baseRW   sync.RWMutex
	baseWord uint64
)

// SyncMutexLoop locks and unlocks a sync.Mutex n times.
func SyncMutexLoop(n int) {
	for i := 0; i < n; i++ {
		baseMu.Lock()
		baseMu.Unlock()
	}
}

// SyncRLockLoop read-locks and read-unlocks a sync.RWMutex n times.
func SyncRLockLoop(n int) {
	for i := 0; i < n; i++ {
		baseRW.RLock()
		baseRW.RUnlock()
	}
}

// SyncWLockLoop write-locks and unlocks a sync.RWMutex n times.
func SyncWLockLoop(n int) {
	for i := 0; i < n; i++ {
		baseRW.Lock()
		baseRW.Unlock()
	}
}

// CASLoop does one successful compare-and-swap per iteration.
func CASLoop(n int) {
	v := atomic.LoadUint64(&baseWord)
	for i := 0; i < n; i++ {
		atomic.CompareAndSwapUint64(&baseWord, v, v+1)
		v++
	}
}
