// Command bench measures what Sluice adds on the request path. In one run,
// against the same zero-latency mock provider, it offers load to (a) the
// mock directly, (b) a bare httputil.ReverseProxy, (c) one Sluice node and
// (d) a three-node Sluice cluster taken round-robin, each system in its own
// process so that its CPU time and memory can be read from /proc. Each
// target gets open-loop load at fixed rates (JSON and streaming answers),
// optionally with slow streams held open, and a closed loop of workers that
// finds its maximum throughput. The bench prints latency quantiles, time to
// first byte, achieved against offered rate, failures, CPU seconds per
// 1,000 requests and resident memory per target, the ratios between
// targets and the targets as ok/FAIL lines, and can write it all as
// JSON for comparing runs.
//
// The mock, the bare proxy and (with -profile) a profiled single node are
// hidden subcommands of this binary; the nodes are the sluice binary, built
// from the module unless -sluice-bin names one. -soak runs one long phase
// through a single node and prints its memory over time instead.
//
// The load generator runs in this process and shares the machine with the
// systems under test, so on a small machine the absolute figures include
// contention; compare targets within one run, not across machines. To keep
// that comparison fair, each phase is split into interleaved rounds (every
// target in turn, -rounds times) whose samples are merged, so a passing
// disturbance of the machine lands on all targets rather than on one. An
// open-loop phase a target cannot keep up with is marked saturated, its
// higher rates are skipped, and a target check resting on it is reported
// inconclusive rather than passed or failed.
package main
