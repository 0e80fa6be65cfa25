// Command front is a small TCP load balancer for running Sluice in
// containers where no off-the-shelf proxy image is at hand (the compose
// file in deploy/ uses it as the cluster's single published port).
//
// For every client connection it resolves a DNS name (in compose, a network
// alias shared by every Sluice node), orders the addresses round-robin,
// prefers those whose health check passes, and dials them in turn until one
// accepts; a refused dial marks the address unhealthy at once and moves on
// to the next. Bytes are then copied both ways unchanged (TLS and HTTP/2 pass
// through). A background checker resolves the name and probes every address
// with an HTTP GET of -health-path (Sluice's /readyz) every -health-interval,
// so a node that is restarting or draining gets no new connections until it
// is ready again. Addresses never checked yet are tried only when no healthy
// one accepts.
//
// Resolving per connection means the front follows the cluster as nodes
// come and go without a reload; it is deliberately not a full HTTP proxy:
// a client connection stays on one node for its lifetime (keep-alive), as it
// would behind a Kubernetes Service.
//
// SIGINT or SIGTERM stops accepting, lets open connections finish for up to
// -drain-timeout, then closes them.
//
// Usage:
//
//	front -backend sluice-peers:8080 [-listen :8080] [-health-path /readyz]
package main
