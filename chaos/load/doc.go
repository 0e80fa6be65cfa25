// Package load is Sluice's open-loop load generator: it sends requests at
// a fixed rate whatever the target's latency (so a slow target cannot slow
// the offered load, and latency is measured from the intended send time,
// free of coordinated omission), and summarises latencies, time to first
// byte and statuses. It is lean on purpose (pre-built bodies, raw
// net/http) so that it can offer thousands of requests per second on the
// same small machine as the system under test.
package load
