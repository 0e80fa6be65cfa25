package mock

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *RegionConfig)
		field  string // substring of the error; "" = valid
	}{
		{"valid", func(c *RegionConfig) {}, ""},
		{"no name", func(c *RegionConfig) { c.Name = "" }, "name: required"},
		{"bad dialect", func(c *RegionConfig) { c.Dialect = "gcp" }, "dialect"},
		{"no key", func(c *RegionConfig) { c.APIKey = "" }, "api_key"},
		{"empty env no fallback", func(c *RegionConfig) { c.APIKey, c.APIKeyEnv = "", "MOCK_TEST_UNSET_KEY" }, "api_key"},
		{"no deployments", func(c *RegionConfig) { c.Deployments = nil }, "deployments"},
		{"deployment no name", func(c *RegionConfig) { c.Deployments[1].Name = "" }, "deployments[1].name"},
		{"deployment slash", func(c *RegionConfig) { c.Deployments[0].Name = "a/b" }, "deployments[0].name"},
		{"duplicate", func(c *RegionConfig) { c.Deployments[1].Name = c.Deployments[0].Name }, "deployments[1].name: duplicate"},
		{"bad kind", func(c *RegionConfig) { c.Deployments[0].Kind = "image" }, "deployments[0].kind"},
		{"negative tpm", func(c *RegionConfig) { c.Deployments[0].TPM = -1 }, "deployments[0].tpm"},
		{"negative rpm window", func(c *RegionConfig) { c.Deployments[0].RPMWindow = -1 }, "deployments[0].rpm_window"},
		{"p99 below median", func(c *RegionConfig) {
			c.Deployments[0].Latency = LatencyConfig{TTFBMedian: Duration(time.Second), TTFBP99: Duration(time.Millisecond)}
		}, "latency.ttfb_p99"},
		{"p99 without median", func(c *RegionConfig) { c.Deployments[0].Latency.TTFBP99 = Duration(time.Second) }, "latency.ttfb_median"},
		{"embedding dims", func(c *RegionConfig) { c.Deployments[1].EmbeddingDims = -3 }, "deployments[1].embedding_dims"},
		{"faults unknown deployment", func(c *RegionConfig) { c.Faults = map[string]Faults{"nope": {}} }, `faults["nope"]`},
		{"faults bad probability", func(c *RegionConfig) { c.Faults = map[string]Faults{"*": {Reset: 1.5}} }, `faults["*"].reset`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(DialectAzure)
			tt.mutate(&cfg)
			r, err := NewRegion(cfg)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				_ = r.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %v, want it to name %q", err, tt.field)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	d := DefaultDeploymentConfig("x")
	if d.Model != "x" || d.Kind != KindChat || d.RPMWindow.D() != time.Second || d.TPMWindow.D() != 10*time.Second ||
		d.DefaultMaxTokens != 1024 || d.Completion.MeanTokens != 64 || d.EmbeddingDims != 1536 {
		t.Errorf("defaults %+v", d)
	}
	r, err := NewRegion(RegionConfig{Name: "r", APIKey: "k", Deployments: []DeploymentConfig{{Name: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config()
	if c.Dialect != DialectAzure || c.Seed != 1 || c.APIKey == "k" {
		t.Errorf("region defaults %+v", c)
	}
}

func TestAPIKeyFromEnv(t *testing.T) {
	t.Setenv("MOCK_TEST_KEY", "from-env")
	cfg := testConfig(DialectOpenAI)
	cfg.APIKeyEnv = "MOCK_TEST_KEY"
	_, srv := startRegion(t, cfg)
	h := map[string][]string{"Authorization": {"Bearer from-env"}}
	if resp, b := post(t, srv, srv.URL+"/v1/chat/completions", chatBody(t, nil), h); resp.StatusCode != 200 {
		t.Errorf("env key: %d %s", resp.StatusCode, b)
	}
	h = map[string][]string{"Authorization": {"Bearer " + testKey}}
	if resp, _ := post(t, srv, srv.URL+"/v1/chat/completions", chatBody(t, nil), h); resp.StatusCode != 401 {
		t.Errorf("fallback key still accepted: %d", resp.StatusCode)
	}
}

func TestDurationJSON(t *testing.T) {
	var v struct {
		A Duration `json:"a"`
		B Duration `json:"b"`
		C Duration `json:"c"`
	}
	if err := json.Unmarshal([]byte(`{"a":"250ms","b":1000,"c":null}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.A.D() != 250*time.Millisecond || v.B.D() != time.Microsecond || v.C != 0 {
		t.Errorf("parsed %+v", v)
	}
	if err := json.Unmarshal([]byte(`{"a":"soon"}`), &v); err == nil {
		t.Error("bad duration accepted")
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"a":"250ms","b":"1µs","c":"0s"}` {
		t.Errorf("marshal %s %v", b, err)
	}
}
