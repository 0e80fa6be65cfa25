package state

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		Providers: []Provider{{Name: "az", Kind: KindAzure, Endpoint: "https://az.example", APIKey: "env:AZ_KEY"}},
		Deployments: []Deployment{
			{Name: "d1", Provider: "az", Region: "eastus", Upstream: "gpt-4o-mini", TPM: 1000, RPM: 10},
		},
		Models:  []Model{{Name: "m", Deployments: []string{"d1"}}},
		Tenants: []Tenant{{Name: "t"}},
		Keys:    []Key{{ID: "k1", Hash: HashKey("sk-test"), Tenant: "t", Models: []string{"m"}}},
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string
	}{
		{"provider kind", func(c *Config) { c.Providers[0].Kind = "gcp" }, "providers[0].kind"},
		{"provider endpoint", func(c *Config) { c.Providers[0].Endpoint = "ftp://x" }, "providers[0].endpoint"},
		{"literal secret", func(c *Config) { c.Providers[0].APIKey = "sk-live-123" }, "providers[0].api_key"},
		{"unknown provider", func(c *Config) { c.Deployments[0].Provider = "nope" }, "deployments[0].provider"},
		{"negative tpm", func(c *Config) { c.Deployments[0].TPM = -1 }, "deployments[0].tpm"},
		{"duplicate deployment", func(c *Config) { c.Deployments = append(c.Deployments, c.Deployments[0]) }, "deployments[1].name"},
		{"unknown pool member", func(c *Config) { c.Models[0].Deployments = []string{"x"} }, "models[0].deployments[0]"},
		{"self fallback", func(c *Config) { c.Models[0].Fallbacks = []string{"m"} }, "models[0].fallbacks[0]"},
		{"bad encoding", func(c *Config) { c.Models[0].Encoding = "p50k" }, "models[0].encoding"},
		{"bad class", func(c *Config) { c.Tenants[0].Class = "vip" }, "tenants[0].class"},
		{"unknown policy", func(c *Config) { c.Tenants[0].Policy = "gold" }, "tenants[0].policy"},
		{"bad hash", func(c *Config) { c.Keys[0].Hash = "abc" }, "keys[0].hash"},
		{"unknown tenant", func(c *Config) { c.Keys[0].Tenant = "x" }, "keys[0].tenant"},
		{"key model", func(c *Config) { c.Keys[0].Models = []string{"zzz"} }, "keys[0].models[0]"},
		{"bad jitter", func(c *Config) { c.Policies = []Policy{{Name: "default", Retry: RetryPolicy{Jitter: "some"}}} }, "policies[0].retry.jitter"},
		{"negative cache ttl", func(c *Config) { c.Policies = []Policy{{Name: "default", Cache: CachePolicy{TTL: -1}}} }, "policies[0].cache.ttl"},
		{"negative cache entry size", func(c *Config) {
			c.Policies = []Policy{{Name: "default", Cache: CachePolicy{MaxEntryBytes: -1}}}
		}, "policies[0].cache.max_entry_bytes"},
		{"fallback cycle", func(c *Config) {
			c.Models = append(c.Models, Model{Name: "n", Deployments: []string{"d1"}, Fallbacks: []string{"m"}})
			c.Models[0].Fallbacks = []string{"n"}
		}, "models"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.edit(&c)
			err := Validate(&c)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("not a ValidationError: %T", err)
			}
			for _, f := range ve.Fields {
				if f.Field == tc.field {
					return
				}
			}
			t.Fatalf("error %q does not name %s", err, tc.field)
		})
	}
}

func TestValidateNeverEchoesLiteralSecret(t *testing.T) {
	c := validConfig()
	c.Providers[0].APIKey = "sk-live-very-secret"
	if err := Validate(&c); err == nil || strings.Contains(err.Error(), "very-secret") {
		t.Fatalf("error must exist and not contain the literal: %v", err)
	}
}

func TestBuildIndexesAndDefaults(t *testing.T) {
	c := validConfig()
	past := time.Now().Add(-time.Hour)
	c.Keys = append(c.Keys, Key{ID: "k2", Hash: "sha256:" + HashKey("sk-old"), Tenant: "t", ExpiresAt: &past})
	s, err := Build(c, 7)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != 7 {
		t.Fatalf("version %d", s.Version)
	}
	k, ok := s.Authenticate("sk-test")
	if !ok || k.ID != "k1" || k.Tenant.Name != "t" || k.Tenant.Policy.Retry.MaxAttempts != 3 {
		t.Fatalf("authenticate: %+v %v", k, ok)
	}
	if !k.Allows("m") || k.Allows("other") {
		t.Fatal("allowed models wrong")
	}
	if _, ok := s.Authenticate("sk-wrong"); ok {
		t.Fatal("wrong key authenticated")
	}
	if k2, ok := s.Authenticate("sk-old"); !ok || !k2.Expired(time.Now()) {
		t.Fatal("prefixed hash not indexed or expiry not seen")
	}
	m, _ := s.Model("m")
	if len(m.Pool) != 1 || m.Pool[0].TPMWindow.D() != DefaultTPMWindow || m.DefaultMaxTokens != DefaultMaxTokens || m.Kind != ModelChat {
		t.Fatalf("defaults not applied: %+v %+v", m.Model, m.Pool[0])
	}
	// The snapshot is independent of the config it was built from.
	c.Deployments[0].TPM = 5
	if d, _ := s.Deployment("d1"); d.TPM != 1000 {
		t.Fatal("snapshot shares memory with its input")
	}
}

// TestBuildKeepsQuotaSettings: the quota settings survive Build (and so
// Clone), with defaults only where a field is zero.
func TestBuildKeepsQuotaSettings(t *testing.T) {
	c := validConfig()
	c.Quota = QuotaSettings{Lease: Duration(3 * time.Second), BatchQueue: 1}
	snap, err := Build(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	q := snap.Config.Quota
	if q.Lease.D() != 3*time.Second || q.BatchQueue != 1 || q.Grace.D() != DefaultGrace {
		t.Fatalf("quota settings after Build: %+v", q)
	}
}
