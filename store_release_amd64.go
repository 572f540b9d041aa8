//go:build amd64 && !race

package shm

// storeRelease stores v at p with release order: a process that loads p
// and sees v sees every store this goroutine made before it. A queue's
// commit word publishes its record so.
//
// On amd64 every store has release order (stores are seen in the order
// they were made, and the Go compiler keeps stores in program order), so a
// plain store does; the atomic store, an XCHG, is also a full barrier,
// which would make the producer wait for its payload's cache lines on
// every message. Nothing in the queue's protocol needs that barrier (see
// Queue, "Sleeping"). Elsewhere, and under the race detector (which would
// report the loads that race with it on purpose), it is an atomic store
// (store_release.go).
func storeRelease(p *uint64, v uint64) { *p = v }
