// Command chaos runs the chaos suite end to end: it builds (or takes)
// the sluice and mockllm binaries, starts a three-node cluster in front of
// a two-region mock provider, offers load through the OpenAI SDK while
// injecting the faults of a schedule, checks the invariants and writes
// report.json, summary.txt and chart.svg. It exits 1 when an invariant
// failed and 2 when the run itself could not be carried out.
//
//	go run ./chaos/cmd/chaos -schedule ci|long|smoke -seed N -out DIR -bin DIR
package main
