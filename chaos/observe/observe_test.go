package observe_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/chaos/load"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/chaos/observe"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/node"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// memberlist's Shutdown does not wait for a probe in flight, which
		// ends by itself within a probe interval: poll before failing.
		deadline := time.Now().Add(5 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			err := goleak.Find()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
				break
			}
			<-tick.C
		}
	}
	os.Exit(code)
}

const dashboardPath = "../../deploy/grafana/sluice.json"

// Substitutions for Grafana's built-in variables. 1m covers the whole
// load of the test with 1 s scrapes, so rates and quantiles have points.
var builtins = map[string]string{"__rate_interval": "1m", "__interval": "1s", "__range": "5m"}

// Provider keys of the mock regions.
const (
	eastKey   = "observe-EAST-key-5d1c"
	swedenKey = "observe-SWEDEN-key-93ab"
	keyA      = "sk-observe-team-a"
	keyB      = "sk-observe-team-b"
)

// TestDashboardIsImportable checks the dashboard's shape without a
// Prometheus: it asks for its data source on import, every panel uses
// it, and every query expands with no unknown variable.
func TestDashboardIsImportable(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := observe.ParseDashboard(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Fatalf("__inputs = %+v, want one prometheus data source DS_PROMETHEUS", d.Inputs)
	}
	ids := map[int]bool{}
	for _, p := range d.AllPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if !strings.Contains(string(p.Datasource), "${DS_PROMETHEUS}") {
			t.Errorf("panel %q: data source %s is not ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	qs := d.Queries()
	if len(qs) < 20 {
		t.Fatalf("only %d queries", len(qs))
	}
	for _, q := range qs {
		e, err := d.Expand(q.Expr, builtins)
		if err != nil {
			t.Errorf("panel %q %s: %v", q.Panel, q.RefID, err)
		}
		if strings.Contains(e, "$") {
			t.Errorf("panel %q %s: unexpanded %q", q.Panel, q.RefID, e)
		}
	}
}

func TestExpand(t *testing.T) {
	d := &observe.Dashboard{}
	d.Templating.List = []observe.Variable{{Name: "instance", AllValue: ".*"}, {Name: "model"}}
	for _, tc := range []struct {
		in, want, err string
	}{
		{`rate(x{instance=~"$instance"}[$__rate_interval])`, `rate(x{instance=~".*"}[1m])`, ""},
		{`x{model=~"${model}",a=~"[[instance]]"}`, `x{model=~".*",a=~".*"}`, ""},
		{`x{model=~"${model:regex}"}`, `x{model=~".*"}`, ""},
		{`x{node=~"$node"}`, "", "unknown variables node"},
	} {
		got, err := d.Expand(tc.in, builtins)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Expand(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestDashboardAgainstPrometheus runs a real Prometheus scraping a real
// three-node cluster under load (whole answers, streams, a 429 storm on
// one region that forces retries, refused keys), asserts the key series
// through Prometheus's API, then requires every query of the Grafana
// dashboard to return data. About 20 s under the race detector (most of
// it waiting for Prometheus's first scrape); skipped under -short, and
// without a prometheus binary unless CI=true.
func TestDashboardAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster and a Prometheus server")
	}
	bin, err := observe.FindPrometheus()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run this test: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	began := time.Now()
	ctx := context.Background()
	regions, urls := startRegions(t)
	nodes := startCluster(t, seedConfig(urls))
	var targets []string
	for _, n := range nodes {
		targets = append(targets, n.APIAddr())
	}
	prom, err := observe.StartPrometheus(ctx, observe.Config{Binary: bin, Dir: t.TempDir(), Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)
	// Prometheus's target discovery publishes targets up to 5 s after
	// start: load offered before the first scrape would show as a step
	// with no rate.
	pollUntil(t, 30*time.Second, "Prometheus to scrape every node", func() []string {
		s, err := prom.Query(ctx, `up{job="sluice"} == 1`)
		if err != nil {
			return []string{err.Error()}
		}
		if len(s) != len(nodes) {
			return []string{fmt.Sprintf("%d of %d nodes scraped", len(s), len(nodes))}
		}
		return nil
	})
	t.Logf("cluster and prometheus up after %v", time.Since(began).Round(time.Millisecond))

	// A 429 storm on swedencentral for the first seconds of the load: a
	// node that meets it cools the deployment and retries on eastus.
	if err := regions["swedencentral"].SetFaults("gpt-4o-mini", mock.Faults{Force429For: mock.Duration(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	offerLoad(t, nodes)

	// Every answer is complete now: the providers' own count of completion
	// tokens is final.
	var allOut int64
	for _, r := range regions {
		allOut += r.Stats().Deployments["gpt-4o-mini"].CompletionTokens
	}

	// Key series, through Prometheus, polled until they hold.
	one := func(v float64) bool { return v == 1 }
	positive := func(v float64) bool { return v > 0 }
	sane := func(v float64) bool { return v > 0 && v < 10 }
	checks := []struct {
		name, expr string
		series     int // samples wanted (0: at least one)
		ok         func(float64) bool
	}{
		{"every node scraped", `up{job="sluice"}`, 3, one},
		{"requests served on every node", `sum by (instance) (sluice_requests_total{status="200"})`, 3, positive},
		{"refused keys counted", `sum(sluice_requests_total{status="401"})`, 1, positive},
		{"one raft leader", `sum(sluice_raft_leader)`, 1, one},
		{"three voters seen by every node", `sluice_raft_servers{suffrage="voter"} == 3`, 3, positive},
		{"three alive members seen by every node", `sluice_cluster_members{state="alive"} == 3`, 3, positive},
		{"raft applied the configuration everywhere", `sluice_raft_applied_index`, 3, positive},
		{"upstream latency p90 sane", `histogram_quantile(0.9, sum by (le) (rate(sluice_upstream_latency_seconds_bucket[1m])))`, 1, sane},
		{"request duration p50 sane", `histogram_quantile(0.5, sum by (le) (rate(sluice_request_duration_seconds_bucket[1m])))`, 1, sane},
		{"stream time to first byte p99 sane", `histogram_quantile(0.99, sum by (le) (rate(sluice_time_to_first_byte_seconds_bucket{stream="true"}[1m])))`, 1, sane},
		{"upstream 429s counted", `sum(sluice_upstream_429_total{deployment="sweden"})`, 1, positive},
		{"retries counted", `sum(sluice_retries_total)`, 1, positive},
		{"tokens out match the provider's", `sum(sluice_tokens_total{direction="out"})`, 1, func(v float64) bool { return v == float64(allOut) }},
		{"tokens by tenant", `count(sum by (tenant) (sluice_tokens_total))`, 1, func(v float64) bool { return v == 2 }},
		{"stream answers counted", `sum(sluice_time_to_first_byte_seconds_count{stream="true"})`, 1, positive},
	}
	failing := func() []string {
		var bad []string
		for _, c := range checks {
			s, err := prom.Query(ctx, c.expr)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", c.name, err))
				continue
			}
			if (c.series > 0 && len(s) != c.series) || len(s) == 0 {
				bad = append(bad, fmt.Sprintf("%s: %d series, want %d: %v", c.name, len(s), c.series, s))
				continue
			}
			for _, x := range s {
				if !c.ok(x.Value) {
					bad = append(bad, fmt.Sprintf("%s: %v = %v", c.name, x.Labels, x.Value))
				}
			}
		}
		return bad
	}
	pollUntil(t, 30*time.Second, "the key series in Prometheus", failing)
	for _, e := range []string{
		`histogram_quantile(0.9, sum by (le) (rate(sluice_upstream_latency_seconds_bucket[1m])))`,
		`histogram_quantile(0.99, sum by (le, stream) (rate(sluice_time_to_first_byte_seconds_bucket[1m])))`,
		`sum by (instance) (sluice_requests_total)`,
	} {
		s, _ := prom.Query(ctx, e)
		t.Logf("%s = %v", e, s)
	}

	// Every dashboard query returns data.
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := observe.ParseDashboard(b)
	if err != nil {
		t.Fatal(err)
	}
	queries := d.Queries()
	pollUntil(t, 20*time.Second, fmt.Sprintf("data for all %d dashboard queries", len(queries)), func() []string {
		var bad []string
		for _, q := range queries {
			e, err := d.Expand(q.Expr, builtins)
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			s, err := prom.Query(ctx, e)
			var invalid *observe.APIError
			if errors.As(err, &invalid) {
				t.Fatalf("panel %q %s: %q: %v", q.Panel, q.RefID, e, err)
			}
			if err != nil {
				bad = append(bad, fmt.Sprintf("panel %q %s: %v", q.Panel, q.RefID, err))
			} else if !observe.HasData(s) {
				bad = append(bad, fmt.Sprintf("panel %q %s: no data for %s", q.Panel, q.RefID, e))
			}
		}
		return bad
	})
	t.Logf("%d dashboard queries answered; whole test %v", len(queries), time.Since(began).Round(time.Millisecond))
}

// pollUntil calls failing until it returns nothing or the deadline
// passes, then fails with what still failed.
func pollUntil(t *testing.T, d time.Duration, what string, failing func() []string) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		bad := failing()
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s:\n%s", d, what, strings.Join(bad, "\n"))
		}
		<-tick.C
	}
}

// startRegions starts two mock Azure regions serving gpt-4o-mini and
// returns them and their base URLs, by region name.
func startRegions(t *testing.T) (map[string]*mock.Region, map[string]string) {
	t.Helper()
	out, urls := map[string]*mock.Region{}, map[string]string{}
	for i, r := range []struct{ name, key string }{{"eastus", eastKey}, {"swedencentral", swedenKey}} {
		reg, err := mock.NewRegion(mock.RegionConfig{
			Name: r.name, APIKey: r.key, Seed: int64(i + 1),
			Deployments: []mock.DeploymentConfig{{
				Name: "gpt-4o-mini",
				Latency: mock.LatencyConfig{
					TTFBMedian: mock.Duration(20 * time.Millisecond), TTFBP99: mock.Duration(80 * time.Millisecond),
					TokenInterval: mock.Duration(time.Millisecond),
				},
				Completion: mock.CompletionConfig{MeanTokens: 16},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(reg)
		t.Cleanup(func() { _ = reg.Close(); srv.Close() })
		out[r.name] = reg
		t.Setenv("OBSERVE_"+strings.ToUpper(r.name)+"_KEY", r.key)
		urls[r.name] = srv.URL
	}
	return out, urls
}

// seedConfig is the cluster's configuration: one model over both regions,
// an interactive and a batch tenant, retries on.
func seedConfig(urls map[string]string) state.Config {
	return state.Config{
		Providers: []state.Provider{
			{Name: "az-east", Kind: state.KindAzure, Endpoint: urls["eastus"], APIKey: "env:OBSERVE_EASTUS_KEY"},
			{Name: "az-sweden", Kind: state.KindAzure, Endpoint: urls["swedencentral"], APIKey: "env:OBSERVE_SWEDENCENTRAL_KEY"},
		},
		Deployments: []state.Deployment{
			// Quotas far above the test's load, so that the quota panels
			// have shares and use to show.
			{Name: "east", Provider: "az-east", Region: "eastus", Upstream: "gpt-4o-mini", RPM: 60_000, TPM: 60_000_000},
			{Name: "sweden", Provider: "az-sweden", Region: "swedencentral", Upstream: "gpt-4o-mini", RPM: 60_000, TPM: 60_000_000},
		},
		Models:   []state.Model{{Name: "gpt-4o-mini", Deployments: []string{"east", "sweden"}}},
		Policies: []state.Policy{{Name: "default", Retry: state.RetryPolicy{MaxAttempts: 3, BaseInterval: state.Duration(time.Millisecond), MaxInterval: state.Duration(5 * time.Millisecond), BudgetRatio: 1}}},
		Tenants:  []state.Tenant{{Name: "team-a"}, {Name: "team-b", Class: state.ClassBatch}},
		Keys: []state.Key{
			{ID: "ka", Hash: state.HashKey(keyA), Tenant: "team-a"},
			{ID: "kb", Hash: state.HashKey(keyB), Tenant: "team-b"},
		},
	}
}

// startCluster starts three nodes on loopback that form a cluster and
// serve the seed configuration.
func startCluster(t *testing.T, seed state.Config) []*node.Node {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*node.Node
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = n.Shutdown(context.Background())
		}
	})
	var join []string
	for i, id := range []string{"n1", "n2", "n3"} {
		c := cluster.DefaultConfig()
		c.NodeID, c.DataDir = id, t.TempDir()
		c.GossipAddr, c.ClusterAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.Join, c.BootstrapExpect = join, 3
		c.Gossip.ProbeInterval, c.Gossip.ProbeTimeout = 100*time.Millisecond, 50*time.Millisecond
		c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
		c.JoinRetryMax, c.LeaveTimeout = 500*time.Millisecond, time.Second
		cfg := node.Config{APIAddr: "127.0.0.1:0", Logger: logger, Cluster: &c}
		if i == 0 {
			cfg.SeedConfig = &seed
		}
		n := node.New(cfg)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		join = []string{nodes[0].Cluster().GossipAddr()}
	}
	pollUntil(t, 20*time.Second, "every node to serve the seed configuration", func() []string {
		var bad []string
		for _, n := range nodes {
			if code := post(t, n.APIAddr(), keyA, chatBody(false)); code != http.StatusOK {
				bad = append(bad, fmt.Sprintf("%s: %d", n.APIAddr(), code))
			}
		}
		return bad
	})
	return nodes
}

func chatBody(stream bool) []byte {
	s := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the team."}],"max_tokens":16`
	if stream {
		s += `,"stream":true`
	}
	return []byte(s + "}")
}

func post(t *testing.T, addr, key string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// offerLoad sends, to every node at once for 4 s: whole answers for
// team-a, streams for team-b, and requests with an unknown key.
func offerLoad(t *testing.T, nodes []*node.Node) {
	t.Helper()
	type job struct {
		target load.Target
		rate   int
	}
	hdr := func(key string) http.Header {
		return http.Header{"Authorization": {"Bearer " + key}, "Content-Type": {"application/json"}}
	}
	var jobs []job
	for _, n := range nodes {
		url := "http://" + n.APIAddr() + "/v1/chat/completions"
		jobs = append(jobs,
			job{load.Target{Name: "whole", URL: url, Body: chatBody(false), Headers: hdr(keyA)}, 15},
			job{load.Target{Name: "stream", URL: url, Body: chatBody(true), Headers: hdr(keyB), Stream: true}, 5},
			job{load.Target{Name: "refused", URL: url, Body: chatBody(false), Headers: hdr("sk-not-a-key")}, 2},
		)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []load.Result
	)
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := load.Run{Rate: j.rate, Duration: 4 * time.Second}.Do(context.Background(), j.target)
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	statuses := map[string]map[int]int{}
	for _, r := range results {
		if r.Errors > 0 {
			t.Errorf("%s: %d transport errors", r.Target, r.Errors)
		}
		if statuses[r.Target] == nil {
			statuses[r.Target] = map[int]int{}
		}
		for code, n := range r.Statuses {
			statuses[r.Target][code] += n
		}
	}
	for _, name := range []string{"whole", "stream"} {
		if got := statuses[name]; len(got) != 1 || got[http.StatusOK] == 0 {
			t.Errorf("%s answers: %v, want all 200 (the 429 storm is retried)", name, got)
		}
	}
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("load %s: %v", k, statuses[k])
	}
}
