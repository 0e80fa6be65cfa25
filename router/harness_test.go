package router_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/quota"
	"github.com/sluicehq/sluice/router"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Provider keys of the two mock regions. The secret-leak test greps every
// output of the gateway for them.
const (
	eastKey   = "mock-key-EAST-7f3a9c1d2e"
	swedenKey = "mock-key-SWEDEN-b81e44f0aa"
	demoKey   = "sk-sluice-test-demo"
)

// env is one router in front of two mock Azure regions, each with a chat
// and an embedding deployment.
type env struct {
	t       testing.TB
	regions map[string]*mock.Region
	urls    map[string]string
	router  *router.Router
	srv     *httptest.Server
	metrics *metrics.Set
	logs    *syncBuffer
	cfg     state.Config

	mu      sync.Mutex
	records []router.Record
}

type envOpts struct {
	rpm, tpm   int64 // chat deployment quota in every region (0 = unlimited)
	mockRPM    int64 // the mock's quota when it should differ from Sluice's
	mockTPM    int64
	latency    mock.LatencyConfig
	policy     state.Policy
	health     router.HealthConfig
	editCfg    func(*stateConfig)
	regionsNo  int              // 1 or 2 (default 2)
	cacheBytes int64            // router.Config.CacheBytes (0 = default)
	now        func() time.Time // router.Config.Now (nil = time.Now)
	limiter    *quota.Limiter   // router.Config.Limiter (nil = a new one)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	t.Setenv("TEST_EAST_KEY", eastKey)
	t.Setenv("TEST_SWEDEN_KEY", swedenKey)
	e := &env{t: t, regions: map[string]*mock.Region{}, urls: map[string]string{}, logs: &syncBuffer{}, metrics: metrics.NewSet()}
	names := []string{"eastus", "swedencentral"}
	if o.regionsNo == 1 {
		names = names[:1]
	}
	keys := map[string]string{"eastus": eastKey, "swedencentral": swedenKey}
	envs := map[string]string{"eastus": "env:TEST_EAST_KEY", "swedencentral": "env:TEST_SWEDEN_KEY"}
	mrpm, mtpm := o.rpm, o.tpm
	if o.mockRPM != 0 {
		mrpm = o.mockRPM
	}
	if o.mockTPM != 0 {
		mtpm = o.mockTPM
	}
	cfg := state.Config{
		Tenants: []state.Tenant{{Name: "team-a"}},
		Keys:    []state.Key{{ID: "demo", Hash: state.HashKey(demoKey), Tenant: "team-a"}},
	}
	chat := state.Model{Name: "gpt-4o-mini"}
	embed := state.Model{Name: "text-embedding-3-small", Kind: state.ModelEmbedding, Encoding: "cl100k_base"}
	for i, n := range names {
		reg, err := mock.NewRegion(mock.RegionConfig{
			Name: n, APIKey: keys[n], Seed: int64(i + 1),
			Deployments: []mock.DeploymentConfig{
				{Name: "gpt-4o-mini", RPM: mrpm, TPM: mtpm, Latency: o.latency},
				{Name: "text-embedding-3-small", Kind: mock.KindEmbedding},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(reg)
		t.Cleanup(func() { _ = reg.Close(); srv.Close() })
		e.regions[n], e.urls[n] = reg, srv.URL
		cfg.Providers = append(cfg.Providers, state.Provider{Name: "az-" + n, Kind: state.KindAzure, Endpoint: srv.URL, APIKey: envs[n]})
		cfg.Deployments = append(cfg.Deployments,
			state.Deployment{Name: n + "-chat", Provider: "az-" + n, Region: n, Upstream: "gpt-4o-mini", RPM: o.rpm, TPM: o.tpm},
			state.Deployment{Name: n + "-embed", Provider: "az-" + n, Region: n, Upstream: "text-embedding-3-small"})
		chat.Deployments = append(chat.Deployments, n+"-chat")
		embed.Deployments = append(embed.Deployments, n+"-embed")
	}
	cfg.Models = []state.Model{chat, embed}
	pol := o.policy
	pol.Name = "default"
	cfg.Policies = []state.Policy{pol}
	if o.editCfg != nil {
		o.editCfg(&cfg)
	}
	e.cfg = cfg
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.router = router.New(router.Config{
		Metrics:    e.metrics,
		Logger:     logger,
		Health:     o.health,
		CacheBytes: o.cacheBytes,
		Now:        o.now,
		Limiter:    o.limiter,
		Sink: router.SinkFunc(func(r *router.Record) {
			e.mu.Lock()
			e.records = append(e.records, *r)
			e.mu.Unlock()
		}),
	})
	e.install(cfg)
	e.srv = httptest.NewServer(e.router.Handler())
	t.Cleanup(func() { e.srv.Close(); e.router.Close() })
	return e
}

func (e *env) install(cfg state.Config) {
	e.t.Helper()
	snap, err := state.Build(cfg, uint64(time.Now().UnixNano()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.router.Update(snap)
}

// client is the official SDK pointed at the router's OpenAI API.
func (e *env) client(opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(e.srv.URL + "/v1"), option.WithAPIKey(demoKey), option.WithMaxRetries(0),
	}, opts...)...)
}

// azureClient is the official SDK with its Azure option, pointed at the
// router's Azure-shaped API.
func (e *env) azureClient() openai.Client {
	return openai.NewClient(azure.WithEndpoint(e.srv.URL, "2024-10-21"), azure.WithUnsafeAllowHTTP(), azure.WithAPIKey(demoKey), option.WithMaxRetries(0))
}

func (e *env) stats(region string) mock.DeploymentStats {
	return e.regions[region].Stats().Deployments["gpt-4o-mini"]
}

func (e *env) recordsSnapshot() []router.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]router.Record(nil), e.records...)
}

// post sends a raw request to the router and returns status, headers, body.
func (e *env) post(path, key, body string) (int, http.Header, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (e *env) metricsText() string {
	var b bytes.Buffer
	e.metrics.WritePrometheus(&b)
	return b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		runtimeGosched()
	}
}

// pollPause is the interval between polls of a condition.
func runtimeGosched() {
	t := time.NewTimer(5 * time.Millisecond)
	<-t.C
}

func chatBody(stream bool, maxTokens int) string {
	s := `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the team."}]`
	if stream {
		s += `,"stream":true`
	}
	if maxTokens > 0 {
		s += `,"max_tokens":` + strconv.Itoa(maxTokens)
	}
	return s + "}"
}

type stateConfig = state.Config
