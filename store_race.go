//go:build race

package shm

import "sync/atomic"

// storeOrdered is store_norace.go's, an atomic store under the race
// detector.
func storeOrdered(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

// storeRelease is store_norace.go's, an atomic store under the race
// detector.
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }
