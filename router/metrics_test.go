package router_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/router"
)

// seriesCount counts the sample lines of a Prometheus text exposition.
func seriesCount(text string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

var tokensLine = regexp.MustCompile(`^sluice_tokens_total\{model="([^"]*)",tenant="([^"]*)",direction="(in|out)"\} (\d+)$`)

// TestMetricsCardinalityBounded: 10,000 tenants, each with its own key,
// send a request each, plus one request each naming a model that does not
// exist. /metrics grows by a bounded number of series: tenants beyond the
// label bound are counted under tenant="other", unknown models under
// model="other", and no token is lost in the folding. It takes about 4 s,
// 40 s under the race detector on a busy 2-core machine; -short runs it
// with 1,000 tenants.
func TestMetricsCardinalityBounded(t *testing.T) {
	tenants := 10_000
	if testing.Short() {
		tenants = 1_000
	}
	// A fixed answer instead of the mock provider, and no log or sink: the
	// test is about the router's series, and 20,000 generated answers and
	// log lines would cost most of its time.
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o-mini",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}`
	const answerTokens = 8
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(up.Close)
	t.Setenv("TEST_EAST_KEY", eastKey)
	cfg := state.Config{
		Providers:   []state.Provider{{Name: "az", Kind: state.KindAzure, Endpoint: up.URL, APIKey: "env:TEST_EAST_KEY"}},
		Deployments: []state.Deployment{{Name: "east", Provider: "az", Region: "eastus", Upstream: "gpt-4o-mini"}},
		Models:      []state.Model{{Name: "gpt-4o-mini", Deployments: []string{"east"}}},
		Tenants:     []state.Tenant{{Name: "team-a"}},
		Keys:        []state.Key{{ID: "demo", Hash: state.HashKey(demoKey), Tenant: "team-a"}},
	}
	keys := make([]string, tenants)
	for i := range tenants {
		name := fmt.Sprintf("tenant-%05d", i)
		keys[i] = "sk-card-" + strconv.Itoa(i)
		cfg.Tenants = append(cfg.Tenants, state.Tenant{Name: name})
		cfg.Keys = append(cfg.Keys, state.Key{ID: "k-" + name, Hash: state.HashKey(keys[i]), Tenant: name})
	}
	snap, err := state.Build(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	rt := router.New(router.Config{Metrics: set, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(rt.Close)
	rt.Update(snap)
	metricsText := func() string {
		var b bytes.Buffer
		set.WritePrometheus(&b)
		return b.String()
	}
	h := rt.Handler()
	send := func(key, body string) int {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	// Warm up: every kind of series this load touches exists once.
	if code := send(demoKey, chatBody(false, 8)); code != http.StatusOK {
		t.Fatalf("warm-up: %d", code)
	}
	if code := send(demoKey, `{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}`); code != http.StatusNotFound {
		t.Fatalf("unknown model: %d", code)
	}
	before := seriesCount(metricsText())

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 1)
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if code := send(keys[i], chatBody(false, 4)); code != http.StatusOK {
					select {
					case errs <- fmt.Sprintf("tenant %d: status %d", i, code):
					default:
					}
				}
				send(keys[i], `{"model":"model-`+strconv.Itoa(i)+`","messages":[{"role":"user","content":"hi"}]}`)
			}
		}()
	}
	for i := range tenants {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	text := metricsText()
	after := seriesCount(text)
	t.Logf("series before: %d, after %d tenants x 2 requests (%v): %d", before, tenants, time.Since(start).Round(time.Millisecond), after)

	// At most DefaultMaxTenantLabels tenants get their own token series (in
	// and out); the rest share tenant="other". Nothing else may grow.
	if bound := before + 2*router.DefaultMaxTenantLabels + 2; after > bound {
		t.Fatalf("series grew from %d to %d, bound %d", before, after, bound)
	}
	var labelled, total, other int
	seen := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		m := tokensLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v, _ := strconv.Atoi(m[4])
		total += v
		if m[2] == "other" {
			other += v
		} else if !seen[m[2]] {
			seen[m[2]] = true
			labelled++
		}
	}
	if labelled != router.DefaultMaxTenantLabels {
		t.Errorf("%d tenants labelled, want %d", labelled, router.DefaultMaxTenantLabels)
	}
	if other == 0 {
		t.Error(`no tokens counted under tenant="other"`)
	}
	if want := answerTokens * (tenants + 1); total != want {
		t.Errorf("tokens in metrics %d, answered %d", total, want)
	}
	if strings.Contains(text, `model="model-`) {
		t.Error("a client-chosen model name became a label")
	}
	if !strings.Contains(text, `sluice_requests_total{model="other",deployment="",region="",class="interactive",status="404"}`) {
		t.Error("unknown models not counted under model=\"other\"")
	}
}

// TestMetricsExported: after streamed and whole answers, a 429 and a
// retry, each family a dashboard uses is exported, histograms with
// Prometheus le buckets, and the scrape-time deployment gauges show the
// throttled deployment cooling.
func TestMetricsExported(t *testing.T) {
	e := newEnv(t, envOpts{policy: fastRetries()})
	// The storm outlasts the test: every call to eastus is a 429 and the
	// deployment stays cooling.
	setFaults(t, e.regions["eastus"], mock.Faults{Force429For: mock.Duration(time.Minute)})
	c := e.client()
	waitFor(t, 10*time.Second, "a request to meet the 429", func() bool {
		if _, err := c.Chat.Completions.New(context.Background(), chatParams(8)); err != nil {
			t.Fatalf("request failed instead of failing over: %v", err)
		}
		return len(e.stats("eastus").RejectedArrivalsNS) > 0
	})
	stream := c.Chat.Completions.NewStreaming(context.Background(), chatParams(8))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	_ = stream.Close()

	// The client has the stream's end before its handler returns.
	waitFor(t, 5*time.Second, "the stream's handler to end", func() bool {
		return strings.Contains(e.metricsText(), "sluice_inflight_requests 0")
	})
	text := e.metricsText()
	for _, tc := range []struct {
		name, want string
	}{
		{"requests by model, deployment, region, class, status", `sluice_requests_total{model="gpt-4o-mini",deployment="swedencentral-chat",region="swedencentral",class="interactive",status="200"}`},
		{"request duration buckets", `sluice_request_duration_seconds_bucket{model="gpt-4o-mini",le="120"}`},
		{"ttfb of whole answers", `sluice_time_to_first_byte_seconds_bucket{model="gpt-4o-mini",stream="false",le="0.005"}`},
		{"ttfb of streams", `sluice_time_to_first_byte_seconds_count{model="gpt-4o-mini",stream="true"} 1`},
		{"upstream latency per deployment", `sluice_upstream_latency_seconds_bucket{deployment="eastus-chat",le="+Inf"}`},
		{"upstream 429s", `sluice_upstream_429_total{deployment="eastus-chat"} 1`},
		{"retries", `sluice_retries_total{model="gpt-4o-mini"} 1`},
		{"tokens by tenant", `sluice_tokens_total{model="gpt-4o-mini",tenant="team-a",direction="out"}`},
		{"in-flight requests", "sluice_inflight_requests 0"},
		{"circuit state", `sluice_deployment_circuit{deployment="eastus-chat",state="closed"} 1`},
		{"circuit state is one-hot", `sluice_deployment_circuit{deployment="eastus-chat",state="open"} 0`},
		{"cooling", `sluice_deployment_cooling{deployment="eastus-chat"} 1`},
		{"not cooling", `sluice_deployment_cooling{deployment="swedencentral-chat"} 0`},
		{"deployment in flight", `sluice_deployment_inflight{deployment="swedencentral-chat"} 0`},
		{"deployment latency", `sluice_deployment_latency_seconds{deployment="swedencentral-chat"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(text, tc.want) {
				t.Fatalf("metrics lack %s:\n%s", tc.want, text)
			}
		})
	}
}
