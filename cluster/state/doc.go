// Package state is Sluice's replicated configuration model: providers,
// deployments with their quotas, models with their pools and fallbacks,
// tenants, virtual keys (as hashes) and policies.
//
// It is the leaf of the import graph (standard library only) because every
// other package reads it: the YAML loader and the admin API decode into its
// types, the raft FSM stores them, and the request path reads the immutable
// Snapshot built from them. A Snapshot is validated and indexed once, when it
// is built, so the request path does only map lookups and never sees a
// half-valid configuration. Nothing in a Snapshot is mutated after Build
// returns; a new configuration is a new Snapshot swapped in atomically by its
// single owner.
package state
