package bench

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Median returns the middle of ds (the upper one of an even count).
func Median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// SyncContended has two goroutines increment a counter under a sync.Mutex,
// n times each, and returns how long that took: the baseline of Contended.
func SyncContended(n int) time.Duration { return SyncContendedN(2, n) }

// SyncContendedN is SyncContended with g goroutines.
func SyncContendedN(g, n int) time.Duration {
	var mu sync.Mutex
	var counter uint64
	var wg sync.WaitGroup
	var start atomic.Bool
	for ; g > 0; g-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !start.Load() {
			}
			for i := 0; i < n; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		}()
	}
	t := time.Now()
	start.Store(true)
	wg.Wait()
	return time.Since(t)
}
