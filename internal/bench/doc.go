// Package bench is the measuring engine behind both the benchmarks of
// package shm (go test -bench) and the shm bench command, so that the two
// run the same measurements with the same code.
//
// The round trips go between this process and a peer process through a
// managed segment: the coordinator starts the peer (Start), hands it a
// command per run (Prepare), does its own side of every round trip (Drive)
// and waits for the peer to finish (Finish). The peer process only calls
// Serve. A round trip goes through each event kind, a mutex handed back and
// forth, and the baselines: a pipe pair, a Unix socket pair, a raw futex
// wait/wake ping-pong written directly against the system call (the
// kernel's floor) and a raw spin ping-pong on a shared word (the hardware's
// floor). Contended has both processes increment one counter under one
// Mutex instead.
//
// The round trips exist on Linux only; Median and SyncContended everywhere.
package bench
