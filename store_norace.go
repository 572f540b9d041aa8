//go:build !race

package shm

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// storeOrdered stores v at p, a word that an atomic operation which the
// caller makes next publishes (the CAS of a queue's tail publishes a
// producer slot's start, the store of a record's commit word its header).
// A reader that sees that atomic's effect sees v; a reader that loads p
// without it may see the old value or v, never a mix.
//
// On 64-bit machines it is a plain store: an aligned word is stored whole,
// the Go compiler does not move stores across atomic operations, and the
// atomic that follows orders it for the processor (a locked instruction on
// amd64, a release on arm64), so the atomic store (an XCHG on amd64, a full
// barrier) is not needed. The race detector would report the loads that
// race with it on purpose, hence the atomic store under it (store_race.go).
func storeOrdered(p *uint64, v uint64) {
	if unsafe.Sizeof(uintptr(0)) == 8 {
		*p = v
		return
	}
	atomic.StoreUint64(p, v)
}

// storeRelease stores v at p with release order: a process that loads p
// and sees v sees every store this goroutine made before it. A queue's
// unfenced commit word publishes its record so.
//
// On amd64 every store has release order (stores are seen in the order
// they were made, and the Go compiler keeps stores in program order), so a
// plain store does; the atomic store, an XCHG, is also a full barrier,
// which would make the producer wait for its payload's cache lines on
// every message. Nothing in the queue's protocol needs that barrier there
// (see Queue, "Sleeping"). Elsewhere it is an atomic store (a release
// store on arm64), and under the race detector too (store_race.go).
func storeRelease(p *uint64, v uint64) {
	if runtime.GOARCH == "amd64" {
		*p = v
		return
	}
	atomic.StoreUint64(p, v)
}

// copyToShared copies src into ring at off (see store_race.go, where the
// copy is atomic word by word).
func copyToShared(ring []byte, off uint64, src []byte) { copy(ring[off:], src) }

// copyFromShared copies len(dst) bytes of ring at off into dst.
func copyFromShared(dst, ring []byte, off uint64) { copy(dst, ring[off:]) }

// loadFence orders the loads before it before the loads after it: the
// seqlock readers' check, after they read bytes that a writer may be
// overwriting. On amd64 and 386 loads are not reordered with loads, and the
// compiler keeps plain loads before the atomic load that follows; elsewhere
// (arm64: an atomic load is a load-acquire, which earlier plain loads may
// pass) an atomic read-modify-write, which has acquire and release order,
// stands between them.
func loadFence(p *uint32) {
	if runtime.GOARCH == "amd64" || runtime.GOARCH == "386" {
		return
	}
	atomic.AddUint32(p, 1)
}
