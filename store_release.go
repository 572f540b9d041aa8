//go:build !amd64 || race

package shm

import "sync/atomic"

// storeRelease is store_release_amd64.go's: an atomic store (a release
// store on arm64; whatever the platform's atomic store is elsewhere).
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }
