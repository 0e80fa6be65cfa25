// Package fsm is the replicated state machine behind Sluice's raft log: the
// command encoding, the table of command handlers, the snapshot format and
// the publication of each new state.Snapshot.
//
// Shape and reasons:
//
//   - A log entry is one type byte followed by the JSON encoding of the
//     command. The handlers live in one table, built once at start-up;
//     registering a type twice panics. A type byte with IgnorableFlag set
//     that this build does not know is skipped, so a newer leader can add
//     optional commands without crashing older followers during a rolling
//     upgrade; any other unknown type, or an entry that does not decode,
//     panics, because replicas that silently disagree are worse than a
//     crash. Retired type numbers stay reserved.
//   - Apply is deterministic: no clock, randomness or I/O. The time of a
//     write travels inside the command (Header.At), stamped by the node that
//     accepted the request.
//   - Domain failures (not found, already exists, version conflict, invalid
//     configuration) are returned as the entry's result, never panicked: the
//     entry is in the log on every replica, and every replica rejects it the
//     same way. Every accepted write appends an audit record to a bounded,
//     replicated list.
//   - The state is an immutable image swapped through an atomic pointer by
//     the single goroutine raft applies entries on. Readers (the request
//     path, the admin API, snapshot persistence) never lock. After every
//     accepted write a new state.Snapshot, with Version set to the raft
//     index, is published and subscribers are notified without blocking
//     (the latest snapshot wins).
//   - A snapshot is a header followed by typed records; Restore decodes into
//     a fresh image, validates it and swaps it in.
//   - Sections (section.go) are replicated state beside the configuration,
//     owned by other packages (the usage ledger, quota leases) that must not
//     import the cluster: the Section interface uses only standard-library
//     types. A section owns one command type in 32-63, is handed to New (so
//     each FSM, and each node of an in-process test, has its own), applies
//     its entries deterministically with the time stamped into the entry,
//     and writes its state as one snapshot record under its type number
//     with the ignorable bit, so a snapshot without it restores the section
//     empty and a build without the section skips it. Section entries
//     neither change the configuration version nor write the audit log.
//     FSM.Check accepts the types of registered sections only.
package fsm
