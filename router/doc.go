// Package router is Sluice's request path: it serves the OpenAI and Azure
// OpenAI HTTP APIs, authenticates virtual keys, admits each request against
// its tenant's limits and a deployment's budget, picks a deployment, calls it
// in the provider's dialect, relays the answer (SSE streams flushed chunk by
// chunk), retries and fails over, and hands a usage record to a sink.
//
// The hot path reads one immutable routing table through an atomic pointer.
// A table is built from a configuration snapshot by Update, outside the hot
// path: it resolves every name to a pointer (deployment budget, health,
// provider secret, upstream URL) so that a request does only map lookups by
// key hash and model name. Per-deployment health (latency, in-flight count,
// cooling, circuit breaker) lives in objects owned by the deployment and
// changed with atomics, and survives table swaps. No lock is shared across
// requests; the only network call is the upstream one.
//
// Retrying is an explicit policy: bounded attempts and total time, full
// jitter backoff, a retry budget, retry-after from the provider honoured by
// cooling the deployment and failing over rather than waiting, and never a
// retry once the first byte of a stream has reached the client.
//
// An exact-match response cache (cache.go, ristretto) is opt-in per policy.
// Only a request whose tenant enables it pays for it: its body is put in a
// canonical form and hashed with the tenant, model and endpoint. A hit is
// answered after the tenant's admission (it is charged as usual) and before
// routing, so it never calls upstream nor touches a deployment budget. A
// stream is stored only once it completed, rebuilt as one answer, and
// replayed as a well-formed SSE stream.
//
// Every request has a request id (the client's X-Request-Id when sane,
// else generated) and a W3C trace context (the client's traceparent when
// valid, else a new trace); both go upstream, each attempt as a new span of
// the trace, and one log line per finished request records the outcome
// (log.go). DeploymentStatus (status.go) reads the live health and quota
// share of every deployment for the admin API.
package router
