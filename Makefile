# Sluice. `make help` lists the targets.
SHELL := bash
GO ?= go
BIN ?= bin
GOFLAGS_STATIC := CGO_ENABLED=0
FUZZTIME ?= 10s
PKGS := ./...

.PHONY: help build run test test-short fuzz bench check fmt vet boundaries clean chaos-quota images compose-up compose-down test-deploy observe k6 bench-soak chaos chaos-long

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n",$$1,$$2}'

build: ## build static binaries into bin/ (sluice, mockllm)
	@mkdir -p $(BIN)
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/sluice ./node/cmd/sluice
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/mockllm ./chaos/cmd/mockllm
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/front ./chaos/cmd/front

run: build ## run the local default: mock regions + a Sluice node on :8080 (demo key sk-sluice-demo)
	BIN=$(BIN) ./deploy/local/run.sh

test: check ## run every test with the race detector, then the fuzzers briefly
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

test-short: ## unit tests only, no race detector
	$(GO) test -short -count=1 $(PKGS)

fuzz: ## run each fuzz target for FUZZTIME (default 10s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    out=$$($(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg 2>&1) && { echo "$$out" | tail -2; continue; }; \
	    echo "$$out" | tail -20; \
	    if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
	      echo "fuzz $$f: the fuzzing engine timed out at its deadline (go.dev/issue/75804), no failing input; running again"; \
	      $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	    else exit 1; fi; \
	  done; \
	done

BENCH_DURATION ?= 3s
bench: ## print figures: admission/parse ns/op, then Sluice vs the mock, a bare proxy and a 3-node cluster (BENCH_JSON=file)
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./quota/ ./router/...
	$(GO) run ./chaos/cmd/bench -duration $(BENCH_DURATION) $(if $(BENCH_JSON),-json $(BENCH_JSON))

bench-soak: ## 10-minute soak through one node at 2,000 req/s with 100 streams open, RSS every 10 s
	$(GO) run ./chaos/cmd/bench -soak 10m

CHAOS_QUOTA_DURATION ?= 2m
chaos-quota: ## quota acceptance on 3 real processes: 1.5x load, calm half then a SIGKILL every 20 s (CHAOS_QUOTA_DURATION, default 2m)
	set -o pipefail; SLUICE_CHAOS_QUOTA=$(CHAOS_QUOTA_DURATION) $(GO) test -count=1 -v -timeout 15m -run '^TestChaos(Quota|Partition|Reclaim)$$' ./node/ 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok )|chaos_(quota|partition|reclaim)_test'

CHAOS_SEED ?= 1
chaos: build ## chaos suite, bounded (every fault once under load, about 3.5 min): report, summary and chart in .run/chaos/
	$(GO) run ./chaos/cmd/chaos -schedule ci -seed $(CHAOS_SEED) -bin $(BIN)
chaos-long: build ## chaos suite, 10 min: SIGKILL a random node every 20 s, restart after 5 s, load 1.5x the budget
	$(GO) run ./chaos/cmd/chaos -schedule long -seed $(CHAOS_SEED) -bin $(BIN)

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
images: ## build the FROM scratch images sluice:dev, sluice-mockllm:dev, sluice-front:dev
	./deploy/build-images.sh
compose-up: images ## 3 nodes + 2 mock regions + a TCP front: API 127.0.0.1:18080, admin 127.0.0.1:19080
	$(COMPOSE) -f deploy/compose.yaml up -d
compose-down: ## stop the compose cluster and delete its volumes
	$(COMPOSE) -f deploy/compose.yaml down -v
test-deploy: ## k8s manifest checks + compose cluster with a rolling restart under load (needs Docker)
	$(GO) test -race -count=1 -v -run 'TestK8sManifests|TestCompose' ./deploy/
observe: ## a real Prometheus scrapes a 3-node cluster; every Grafana panel must return data
	$(GO) test -race -count=1 -v ./chaos/observe/

check: fmt vet boundaries ## gofmt, go vet and package boundaries

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# The request path (router, quota) and the model (cluster/state) must not
# import the cluster or the admin API; cluster/state imports nothing of ours.
boundaries:
	@set -e; bad=0; \
	for p in ./router/... ./quota/...; do \
	  if $(GO) list -deps $$p | grep -E 'sluice/(cluster$$|cluster/[^s]|admin|node)'; then echo "$$p imports the cluster, admin or node"; bad=1; fi; \
	done; \
	if $(GO) list -deps ./cluster/state | grep -v 'sluice/cluster/state$$' | grep -q 'sluicehq/sluice'; then echo "cluster/state must import only the standard library"; bad=1; fi; \
	exit $$bad

clean: ## remove build outputs
	rm -rf $(BIN) .run

k6: ## k6 load tests (surge + usage) against a local 3-node cluster; installs k6 into bin/ if missing
	GO=$(GO) BIN=$(BIN) ./chaos/k6/run.sh
