// Package ledger is Sluice's durable usage ledger: exact request and token
// counts per tenant, key, model, deployment, region and class, replicated
// through raft so every node answers the same totals and a restart loses
// nothing that was flushed.
//
// It has two halves:
//
//   - Section is the replicated state. It implements the cluster FSM's
//     section contract structurally (Name, Type, Apply, Snapshot, Restore,
//     Validate, using only standard-library types) because this package
//     must not import the cluster. It owns command type SectionType (32).
//   - Batcher runs on every node: the request path hands it one Usage per
//     finished request (never blocking), it aggregates them into rows and
//     flushes a batch every FlushInterval through an Applier (the cluster),
//     retrying the same batch until it is applied.
//
// Exactly once. A batch carries an ID: the node, an incarnation (a random
// 64-bit number chosen when the Batcher starts) and a sequence number. A
// Batcher sends its batches in order, one at a time, and retries the same
// bytes until one attempt is acknowledged. The section keeps, per (node,
// incarnation), the highest sequence applied and answers a batch at or
// below it with Duplicate without counting it, so a retry whose first
// attempt did commit (a timeout, a leader change) never counts twice. A
// crash loses at most the batch not yet flushed: what was acknowledged is
// in the raft log. Incarnations idle for longer than Retention are
// forgotten.
//
// Bounded state. Rows are kept per minute for Horizon (48 h), then rolled
// into per-hour rows, and dropped after Retention (35 days). Both are
// constants, not settings, because compaction runs inside Apply using the
// time stamped into the log entry (never a clock) and every replica must
// compact identically. Rows stamped more than MaxFuture ahead of that time
// are moved to its minute. The number of rows is therefore at most
//
//	distinct label combinations x buckets,
//	buckets <= (Horizon + MaxFuture)/1m + 60 + Retention/1h + 1 (about 3,840).
//
// Readers never lock against Apply. After every applied batch the section
// publishes an immutable View through an atomic pointer; Apply copies only
// the buckets it touches (copy on write) and the small map of buckets. The
// View answers grouped queries (the admin API) and Totals, a cheap sum of
// per-bucket subject totals for hour and day budget checks.
package ledger
