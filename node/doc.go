// Package node wires a Sluice node together and runs its lifecycle: it
// loads the node's settings and the declarative configuration, builds the
// router, quota and (in a cluster) the membership and raft components,
// starts the listeners in order and stops them in the reverse order:
// stop taking requests, drain the ones in flight, then close the rest.
//
// The main program in node/cmd/sluice is a thin shell over this package,
// so tests start whole nodes in-process exactly as the binary does.
package node
