// Package load is Sluice's load generator. Run offers open-loop load: it
// sends requests at a fixed rate whatever the target's latency (so a slow
// target cannot slow the offered load, and latency is measured from the
// intended send time, free of coordinated omission). Closed runs a fixed
// number of workers back to back to find the maximum throughput. Both
// summarise latencies, time to first byte and statuses. The package is
// lean on purpose (pre-built bodies, raw net/http, one goroutine per
// request and no per-request timers) so that it can offer thousands of
// requests per second on the same small machine as the system under test.
//
// ReadProc samples a process's CPU time and resident memory from Linux's
// /proc, so a harness can charge each system under test for what it used.
package load
