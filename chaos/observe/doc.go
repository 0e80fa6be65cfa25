// Package observe checks Sluice's observability end to end: it runs a real
// Prometheus server against running nodes, queries it through its HTTP
// API, and reads the Grafana dashboard shipped in deploy/grafana so that
// every panel's query can be checked for data.
//
// Why it is shaped so: unit tests can show that a node writes a series,
// but not that Prometheus parses it, that histogram_quantile works on its
// buckets, or that a dashboard's PromQL names series that exist. So the
// integration test (observe_test.go) starts a three-node cluster in this
// process, a mock provider and a Prometheus process (Debian's prometheus
// package, found on PATH), offers load, and asserts through Prometheus.
//
// The package itself has no dependency beyond the standard library; the
// test brings in the nodes. Prometheus is a child process owned by a
// *Prometheus value: Stop ends it and waits for it. A test that finds no
// prometheus binary skips, unless CI=true, where it fails.
package observe
