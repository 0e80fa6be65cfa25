// Package suite is the chaos suite: it runs a real Sluice cluster (three
// `sluice agent` processes) in front of the mock provider (`mockllm`),
// offers open-loop load through the official OpenAI SDK with clients that
// fail over between nodes as a DNS-fronted client would, injects faults on
// a seeded schedule (SIGKILL, leader kill, SIGSTOP, network partition,
// netem, a region down, a 429 storm, a rolling restart), and then checks
// the invariants the gateway promises and fills a report.Run.
//
// It is shaped in three layers so that each can be used alone. Cluster
// and Mock own processes (start, kill, pause, restart, partition) and know
// nothing of load or verdicts; node tests can build on them. The load
// generator and the failover transport record what every client saw,
// attempt by attempt. The invariants are pure functions over those
// records and the figures read from the mock and the ledger, so they are
// unit-tested with tables and never need processes. Runner glues the
// three together for the chaos command.
package suite
