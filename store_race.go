//go:build race

package shm

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// storeOrdered is store_norace.go's, an atomic store under the race
// detector.
func storeOrdered(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

// storeRelease is store_norace.go's, an atomic store under the race
// detector.
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

// copyToShared copies src into ring at off, where a record's payload
// starts (off is a multiple of 8, and the record is padded to 16 bytes, so
// whole words fit). Under the race detector it stores words atomically: a
// reader of a broadcast log may read a record while the writer overwrites
// it, finds out afterwards (LogReader.Check) and discards what it read,
// which the detector would otherwise report as a race.
func copyToShared(ring []byte, off uint64, src []byte) {
	var w [8]byte
	for i := 0; i < len(src); i += 8 {
		clear(w[:])
		copy(w[:], src[i:])
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&ring[off+uint64(i)])), binary.NativeEndian.Uint64(w[:]))
	}
}

// copyFromShared copies len(dst) bytes of ring at off into dst (see
// copyToShared): atomically, word by word, under the race detector.
func copyFromShared(dst, ring []byte, off uint64) {
	var w [8]byte
	for i := 0; i < len(dst); i += 8 {
		binary.NativeEndian.PutUint64(w[:], atomic.LoadUint64((*uint64)(unsafe.Pointer(&ring[off+uint64(i)]))))
		copy(dst[i:], w[:])
	}
}

// loadFence orders the loads before it before the loads after it.
func loadFence(p *uint32) { atomic.AddUint32(p, 1) }
