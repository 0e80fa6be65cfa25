#!/usr/bin/env bash
# Starts the local default: the mock provider (regions eastus and
# swedencentral) and a three-node Sluice cluster on loopback (OpenAI API on
# 8080-8082), seeded with deploy/local/sluice.yaml. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
export MOCK_EASTUS_KEY=${MOCK_EASTUS_KEY:-mock-eastus-key}
export MOCK_SWEDENCENTRAL_KEY=${MOCK_SWEDENCENTRAL_KEY:-mock-swedencentral-key}
# Dev-only admin tokens (name:role:token): an admin and a read-only one.
export SLUICE_ADMIN_TOKENS=${SLUICE_ADMIN_TOKENS:-dev:admin:dev-admin-token-0000,viewer:read:dev-read-token-00000}
RUN=.run
rm -rf "$RUN" && mkdir -p "$RUN"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$BIN/mockllm" >"$RUN/mockllm.log" 2>&1 & pids+=($!)
peers=127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102
for i in 0 1 2; do
  "$BIN/sluice" agent -node-id "node$i" -data-dir "$RUN/node$i" -config deploy/local/sluice.yaml \
    -listen "127.0.0.1:808$i" -gossip-addr "127.0.0.1:710$i" -cluster-addr "127.0.0.1:720$i" \
    -admin-listen "127.0.0.1:908$i" -join "$peers" -bootstrap-expect 3 >"$RUN/node$i.log" 2>&1 & pids+=($!)
done
for _ in $(seq 1 150); do
  curl -fsS http://127.0.0.1:8082/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<'MSG'
Sluice is up: a three-node cluster, OpenAI API at http://127.0.0.1:8080/v1 (also 8081, 8082),
demo key sk-sluice-demo (mock regions eastus on :9101, swedencentral on :9102; logs in .run/).

  curl -s http://127.0.0.1:8080/v1/chat/completions \
    -H 'Authorization: Bearer sk-sluice-demo' -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"max_tokens":20}'

  curl -sN http://127.0.0.1:8081/v1/chat/completions \
    -H 'Authorization: Bearer sk-sluice-demo' -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello"}],"max_tokens":20}'

Admin API on 9080-9082, dev-only admin token dev-admin-token-0000:

  export SLUICE_ADDR=127.0.0.1:9080 SLUICE_ADMIN_TOKEN=dev-admin-token-0000
  bin/sluice members
  bin/sluice status
  bin/sluice keys create --tenant demo
  bin/sluice apply -f deploy/local/sluice.yaml --dry-run

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
