// Package cluster turns single Sluice nodes into a cluster with no external
// store and no single point of failure.
//
// It owns:
//
//   - Membership, with hashicorp/memberlist: who is alive, suspect, dead or
//     left; each node's metadata (ID, name, cluster/API/admin addresses,
//     region, zone, version), encoded in one place (meta.go); joining by
//     address or DNS name with retries; optional gossip encryption; and a
//     small extension point for other packages to gossip their own
//     messages (RegisterHandler, Broadcast, BroadcastLatest, SendTo).
//     Members are keyed by node ID, never by address.
//   - Consensus, with hashicorp/raft over raft-wal (log and stable store)
//     and file snapshots in the data directory. One TCP "cluster port" is
//     multiplexed by its first byte between raft and a small forwarding
//     RPC (length-prefixed JSON, one call per connection, deadlines on
//     every call), so followers forward writes and consistent reads to the
//     leader.
//   - Bootstrap like Consul's bootstrap_expect, made order-independent by
//     a promise lock (bootstrap.go), and a leader loop that reconciles
//     gossip membership into the raft configuration (leader.go): alive
//     members are added (voters up to MaxVoters, then non-voters promoted
//     when a slot frees), members dead or left for DeadCleanup are removed,
//     never below an alive quorum.
//   - The replicated configuration (package cluster/fsm) and the
//     publication of each new state.Snapshot, which the request path reads
//     with one atomic load (Snapshot) or receives (Subscribe).
//
// Why it is shaped so: writes (configuration changes, later usage-ledger
// batches and quota leases) are rare and must be durable and ordered, so
// they go through raft; liveness must be known within a couple of seconds
// and cost nothing on the request path, so it comes from gossip. Raft never
// sees a node gossip does not know, and gossip never decides anything raft
// must agree on. The request path never touches either: it reads the last
// published Snapshot.
//
// Lifecycle: New checks the Config (DefaultConfig documents every
// default); Start opens stores, listens and starts the loops; Shutdown
// stops them in a documented order and is idempotent. Every goroutine the
// package starts is owned by the Cluster and stopped by Shutdown.
package cluster
