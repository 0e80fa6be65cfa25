#!/usr/bin/env bash
# Runs the k6 load tests (surge.js, then usage.js) against a local
# three-node Sluice cluster and exits non-zero if a threshold failed.
#
#   chaos/k6/run.sh                 # what `make k6` runs
#   K6_SCRIPTS=usage chaos/k6/run.sh
#
# Steps: install k6 into bin/ if there is none (go install, pinned
# version), build the Sluice binaries, start deploy/local/run.sh in the
# background (its whole process group is stopped at exit), wait for
# /readyz on every node and a raft leader, run each script under a hard
# timeout, and keep k6's summaries in K6_RESULTS.
#
# Environment (defaults in brackets):
#   K6               k6 binary to use [bin/k6, else k6 on PATH, else installed]
#   K6_VERSION       version go install builds [v1.8.1]
#   K6_RESULTS       where summaries and logs go [.run/k6]
#   K6_SCRIPTS       scripts to run, in order [surge usage]
#   K6_TIMEOUT       hard limit per script in seconds [300]
#   K6_BUILD         set to 0 to skip `make build` [1]
#   K6_CLUSTER       set to external to use a cluster already running on the
#                    local ports instead of starting one [local]
# The scripts' own settings (SURGE_*, USAGE_*, SLUICE_*) are documented in
# chaos/k6/README.md and passed through.
set -euo pipefail
cd "$(dirname "$0")/../.."

GO=${GO:-go}
MAKE=${MAKE:-make}
BIN=${BIN:-bin}
K6_VERSION=${K6_VERSION:-v1.8.1}
K6_RESULTS=${K6_RESULTS:-.run/k6}
K6_SCRIPTS=${K6_SCRIPTS:-surge usage}
K6_TIMEOUT=${K6_TIMEOUT:-300}
K6_BUILD=${K6_BUILD:-1}
K6_CLUSTER=${K6_CLUSTER:-local}
API_PORTS=(8080 8081 8082)
ADMIN_TOKEN=${SLUICE_ADMIN_TOKEN:-dev-admin-token-0000}
# k6 otherwise reports anonymous usage statistics to Grafana.
export K6_NO_USAGE_STATS=true

log() { printf '%s k6: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
start=$(date +%s)

# 1. k6.
if [[ -z "${K6:-}" ]]; then
  if [[ -x "$BIN/k6" ]]; then
    K6=$BIN/k6
  elif command -v k6 >/dev/null 2>&1; then
    K6=$(command -v k6)
  else
    log "installing k6 $K6_VERSION into $BIN/ (go install, a few minutes)"
    mkdir -p "$BIN"
    bindir=$(cd "$BIN" && pwd)
    # Built outside this module so that its go.mod plays no part.
    tmp=$(mktemp -d)
    (cd "$tmp" && GOBIN="$bindir" GOFLAGS=-buildvcs=false "$GO" install "go.k6.io/k6@$K6_VERSION")
    rmdir "$tmp"
    K6=$BIN/k6
  fi
fi
log "using $("$K6" version | head -1)"

# 2. Sluice binaries.
if [[ "$K6_BUILD" != 0 ]]; then
  "$MAKE" --no-print-directory build BIN="$BIN" >/dev/null
fi

# 3. The cluster.
ready() { curl -fsS -m 2 "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }
cluster_pgid=
cluster_log=$(mktemp)
stop_cluster() {
  [[ -n "$cluster_pgid" ]] || return 0
  log "stopping the local cluster"
  kill -TERM -- "-$cluster_pgid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 -- "-$cluster_pgid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$cluster_pgid" 2>/dev/null || true
  if [[ -d "$K6_RESULTS" ]]; then
    cp "$cluster_log" "$K6_RESULTS/cluster.log" 2>/dev/null || true
    cp .run/node*.log .run/mockllm.log "$K6_RESULTS/" 2>/dev/null || true
  fi
  rm -f "$cluster_log"
  cluster_pgid=
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

if [[ "$K6_CLUSTER" == external ]]; then
  for p in "${API_PORTS[@]}"; do
    ready "$p" || { log "K6_CLUSTER=external but 127.0.0.1:$p/readyz does not answer"; exit 1; }
  done
else
  for p in "${API_PORTS[@]}"; do
    if ready "$p"; then
      log "something already serves 127.0.0.1:$p; stop it or set K6_CLUSTER=external"
      exit 1
    fi
  done
  log "starting the local cluster (deploy/local/run.sh)"
  # setsid gives the cluster its own process group, so that one signal
  # stops the script, the mock and the three nodes.
  BIN=$BIN setsid deploy/local/run.sh >"$cluster_log" 2>&1 </dev/null &
  cluster_pgid=$!
  deadline=$((SECONDS + 60))
  for p in "${API_PORTS[@]}"; do
    until ready "$p"; do
      if ! kill -0 "$cluster_pgid" 2>/dev/null || ((SECONDS > deadline)); then
        log "node on :$p did not become ready; cluster output:"
        cat "$cluster_log" >&2
        exit 1
      fi
      sleep 0.2
    done
  done
fi
# A write in setup() needs a raft leader.
deadline=$((SECONDS + 30))
until curl -fsS -m 2 -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:9080/admin/v1/cluster 2>/dev/null | grep -q '"leader_id":"[^"]'; do
  if ((SECONDS > deadline)); then
    log "no raft leader after 30s"
    exit 1
  fi
  sleep 0.2
done
# deploy/local/run.sh starts by emptying .run, so the results directory is
# made only now.
mkdir -p "$K6_RESULTS"
log "cluster ready; results in $K6_RESULTS/"

# 4. The scripts.
failed=()
for s in $K6_SCRIPTS; do
  log "running $s.js (at most ${K6_TIMEOUT}s)"
  rc=0
  # SIGINT first so k6 still prints and exports its summary, then KILL.
  timeout --signal=INT --kill-after=30 "$K6_TIMEOUT" \
    "$K6" run --quiet --no-color --summary-export "$K6_RESULTS/$s.json" "chaos/k6/$s.js" \
    2>&1 | tee "$K6_RESULTS/$s.log" || rc=$? # pipefail: k6's status, tee succeeds
  case $rc in
    0) log "$s.js: all thresholds passed" ;;
    99) log "$s.js: thresholds failed (exit 99)"; failed+=("$s") ;;
    124 | 137) log "$s.js: killed by the ${K6_TIMEOUT}s timeout"; failed+=("$s") ;;
    *) log "$s.js: k6 exited with $rc"; failed+=("$s") ;;
  esac
done

log "total $(($(date +%s) - start))s; summaries: $(cd "$K6_RESULTS" && ls ./*.json 2>/dev/null | tr '\n' ' ')"
if ((${#failed[@]} > 0)); then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "PASS"
