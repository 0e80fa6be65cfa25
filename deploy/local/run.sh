#!/usr/bin/env bash
# Starts the local default: the mock provider (regions eastus and
# swedencentral) and a Sluice node on 127.0.0.1:8080. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
export MOCK_EASTUS_KEY=${MOCK_EASTUS_KEY:-mock-eastus-key}
export MOCK_SWEDENCENTRAL_KEY=${MOCK_SWEDENCENTRAL_KEY:-mock-swedencentral-key}
mkdir -p .run
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$BIN/mockllm" >.run/mockllm.log 2>&1 & pids+=($!)
"$BIN/sluice" agent -config deploy/local/sluice.yaml -listen 127.0.0.1:8080 >.run/sluice.log 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<'MSG'
Sluice is up: OpenAI API at http://127.0.0.1:8080/v1, demo key sk-sluice-demo
(mock regions eastus on :9101, swedencentral on :9102; logs in .run/).

  curl -s http://127.0.0.1:8080/v1/chat/completions \
    -H 'Authorization: Bearer sk-sluice-demo' -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"max_tokens":20}'

  curl -sN http://127.0.0.1:8080/v1/chat/completions \
    -H 'Authorization: Bearer sk-sluice-demo' -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello"}],"max_tokens":20}'

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
