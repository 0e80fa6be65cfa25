package router_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// offer sends rate requests per second for d, open loop, and returns the
// count of each status.
func offer(e *env, rate int, d time.Duration, body string) map[int]int64 {
	var mu sync.Mutex
	counts := map[int]int64{}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	var inflight atomic.Int64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		wg.Add(1)
		inflight.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+demoKey)
			resp, err := client.Do(req)
			code := 0
			if err == nil {
				code = resp.StatusCode
				_ = resp.Body.Close()
			}
			mu.Lock()
			counts[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return counts
}

// TestLocalAdmissionAtTwiceTheQuota: offered twice a deployment's quota,
// one node keeps the deployment inside its RPM and TPM as the provider
// measures them over its own windows.
func TestLocalAdmissionAtTwiceTheQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	tests := []struct {
		name      string
		rpm, tpm  int64
		maxTokens int
		rate      int
	}{
		// 600 RPM = 10 requests per 1 s window; tokens plentiful.
		{"rpm-bound", 600, 1_000_000, 16, 20},
		// 12,000 TPM = 2,000 tokens per 10 s window; ~225 tokens a request.
		{"tpm-bound", 6000, 12_000, 200, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{regionsNo: 1, rpm: tc.rpm, tpm: tc.tpm})
			dur := 4 * time.Second
			if tc.name == "tpm-bound" {
				dur = 12 * time.Second
			}
			counts := offer(e, tc.rate, dur, chatBody(false, tc.maxTokens))
			st := e.stats("eastus")
			total := int64(0)
			for _, n := range counts {
				total += n
			}
			t.Logf("offered %d: statuses %v; provider accepted %d, rejected %d (429), max %d req per %dms window, max %d tokens per %dms window",
				total, counts, st.Accepted, st.Rejected429, st.RPMWindows.MaxRequests, st.RPMWindows.SizeMS, st.TPMWindows.MaxTokens, st.TPMWindows.SizeMS)
			if float64(st.Rejected429) > 0.005*float64(total) {
				t.Fatalf("provider answered %d 429s to %d requests (> 0.5%%)", st.Rejected429, total)
			}
			if counts[200] == 0 || counts[429] == 0 {
				t.Fatalf("want both admitted and refused requests at twice the quota: %v", counts)
			}
			if counts[0] != 0 || counts[500] != 0 || counts[502] != 0 {
				t.Fatalf("transport or server errors: %v", counts)
			}
		})
	}
}

func TestTenantLimits(t *testing.T) {
	for _, mode := range []state.LimitMode{state.LimitHard, state.LimitSoft} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, envOpts{policy: state.Policy{LimitMode: mode}, editCfg: func(c *state.Config) {
				c.Tenants[0].Limits = state.Limits{RPM: 2}
			}})
			for i := 0; i < 2; i++ {
				if code, _, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8)); code != 200 {
					t.Fatalf("request %d: %d %s", i, code, body)
				}
			}
			code, h, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8))
			switch mode {
			case state.LimitHard:
				if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(body, "rate_limit_exceeded") {
					t.Fatalf("hard limit: %d %v %s", code, h, body)
				}
			case state.LimitSoft:
				if code != http.StatusOK || h.Get("X-Sluice-Limit-Exceeded") == "" {
					t.Fatalf("soft limit: %d %v", code, h)
				}
				if !strings.Contains(e.metricsText(), `sluice_soft_limit_exceeded_total{tenant="team-a"} 1`) {
					t.Fatal("soft limit not counted")
				}
			}
		})
	}
}
