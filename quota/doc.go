// Package quota decides locally, in well under a microsecond, whether a
// request may go: against a provider deployment's TPM and RPM, and against
// a tenant's or key's limits.
//
// Providers such as Azure OpenAI enforce a deployment's quota over short
// windows (1 s for requests, about 10 s for tokens) and charge each request
// on arrival from an estimate (prompt tokens plus max_tokens). A Window here
// mirrors exactly that: it admits a charge only if every interval of the
// window's length, wherever it starts, stays within the allowance. It
// keeps a ring of slots covering one window plus one slot, so it is slightly
// conservative (by one slot: 1/Slots of the allowance) and never depends on
// where the provider's window boundaries fall. Unlike a token bucket with a
// small burst it admits a request as large as the whole allowance, and unlike
// a per-minute counter it never sends a minute's budget in one second.
//
// Each Window is owned by its budget and guarded by its own mutex held for a
// few dozen nanoseconds; there is no lock shared across deployments or
// tenants, and the request path reaches a budget through a pointer resolved
// when the configuration snapshot was built, never through a shared map.
// The cluster changes a budget's capacity (its leased share of the global
// quota) with SetShare; admission itself never leaves the node. A share of
// a long window may be paced (see Pace): spent through a token bucket, so
// that a node that falls silent leaves the provider's window at the rate
// it entered it and the allocator can hand its rate to others when its
// lease ends, not a window later.
package quota
