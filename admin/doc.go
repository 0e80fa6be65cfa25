// Package admin is the HTTP admin API of a Sluice node, on its own
// listener (Config.Addr, loopback by default), and the Client the CLI uses
// to call it.
//
// It owns:
//
//   - Authentication: bearer tokens with a role (admin or read) from
//     SLUICE_ADMIN_TOKENS or a file (LoadTokens), compared in constant time.
//     Only GET /healthz is open. A read token may read; everything else
//     needs admin.
//   - The configuration resources under /admin/v1/ (providers,
//     deployments, models, tenants, keys, policies): list (paginated,
//     sorted by name), get, create, upsert, delete; each write is one raft
//     command carrying the token's name and the time for the replicated
//     audit log. POST /admin/v1/apply replaces the whole configuration
//     from YAML or JSON, with a dry-run diff.
//   - Secrets. Virtual keys are generated here and only their SHA-256 is
//     stored; the plaintext is returned once. Provider secrets sent as
//     api_key_value are encrypted with AES-GCM under the cluster key
//     (Encrypt, Decrypt, Resolver) before they are written, and are shown
//     as "enc:****".
//   - Cluster operations: status, members, audit log, peer removal,
//     snapshot backup and restore, drain.
//   - Deployment status (status.go): GET /admin/v1/deployments/status
//     shows each deployment's health, latency, in-flight calls and this
//     node's quota share and use, read from the router through the small
//     DeploymentStatus interface; ?all=1 asks every live member too.
//   - Usage (usage.go): GET /admin/v1/usage answers from the replicated
//     usage ledger (read role) through the small UsageReader interface:
//     filters tenant, key, model, deployment, region, from, to (RFC 3339
//     or relative like -1h), group_by (fields and bucket=minute|hour|day),
//     format=json|csv (or Accept: text/csv). Every node answers the same
//     totals once batches are applied.
//   - The web page (ui.go, web/): static HTML, CSS and JavaScript embedded
//     in the binary, served without a token at /ui/ (/ redirects there).
//     The page asks for a token and calls the API like any client.
//
// Why it is shaped so: the API is a thin layer over the cluster. It
// declares the small Store interface it needs (satisfied by
// *cluster.Cluster) and leaves validation and conflict detection to the
// replicated state machine, so an admin write means exactly what a write
// from anywhere else means, and a follower's API forwards to the leader
// like any other write. It checks only what must never reach the raft
// log: literal secrets. Every error, echo's own included, is rendered as
// {"error": {"message", "code"}} with its status (Error), and the cluster's
// sentinel errors map to statuses in one place (toError). Request and
// response types are shared by Server and Client, so they cannot drift.
//
// Lifecycle: New checks the Config (DefaultConfig documents every
// default); Start listens and serves on one goroutine; Shutdown stops
// accepting, lets requests finish until its context ends, and waits for
// that goroutine. Shutdown is idempotent.
package admin
