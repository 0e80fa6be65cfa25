package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"sigs.k8s.io/yaml"
)

// Config is the mockllm configuration file.
type Config struct {
	// Regions to serve, each on its own listen address.
	Regions []mock.RegionConfig `json:"regions"`
}

// DefaultConfig is the built-in development setup used without -config.
func DefaultConfig() Config {
	region := func(name, listen, env, key string) mock.RegionConfig {
		return mock.RegionConfig{
			Name:      name,
			Listen:    listen,
			Dialect:   mock.DialectAzure,
			APIKeyEnv: env,
			APIKey:    key,
			Deployments: []mock.DeploymentConfig{
				{
					Name:  "gpt-4o-mini",
					Model: "gpt-4o-mini-2024-07-18",
					Kind:  mock.KindChat,
					TPM:   50000,
					RPM:   300,
					Latency: mock.LatencyConfig{
						TTFBMedian:    mock.Duration(150 * time.Millisecond),
						TTFBP99:       mock.Duration(600 * time.Millisecond),
						TokenInterval: mock.Duration(5 * time.Millisecond),
					},
				},
				{
					Name:    "text-embedding-3-small",
					Kind:    mock.KindEmbedding,
					TPM:     120000,
					RPM:     720,
					Latency: mock.LatencyConfig{TTFBMedian: mock.Duration(50 * time.Millisecond), TTFBP99: mock.Duration(200 * time.Millisecond)},
				},
			},
		}
	}
	return Config{Regions: []mock.RegionConfig{
		region("eastus", "127.0.0.1:9101", "MOCK_EASTUS_KEY", "mock-eastus-key"),
		region("swedencentral", "127.0.0.1:9102", "MOCK_SWEDENCENTRAL_KEY", "mock-swedencentral-key"),
	}}
}

// LoadConfig reads a YAML config file strictly: unknown fields are errors.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig parses YAML (or JSON) strictly and validates it.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks what the binary needs beyond what mock.NewRegion checks:
// at least one region, unique names, and a unique listen address for each.
func (c Config) Validate() error {
	if len(c.Regions) == 0 {
		return errors.New("regions: at least one is required")
	}
	names := make(map[string]bool, len(c.Regions))
	addrs := make(map[string]bool, len(c.Regions))
	for i, r := range c.Regions {
		switch {
		case r.Name == "":
			return fmt.Errorf("regions[%d].name: required", i)
		case names[r.Name]:
			return fmt.Errorf("regions[%d].name: duplicate %q", i, r.Name)
		case r.Listen == "":
			return fmt.Errorf("regions[%d].listen: required", i)
		case addrs[r.Listen] && !isEphemeral(r.Listen):
			return fmt.Errorf("regions[%d].listen: %q is used by another region", i, r.Listen)
		}
		names[r.Name] = true
		addrs[r.Listen] = true
	}
	return nil
}

// isEphemeral reports whether addr asks for any free port.
func isEphemeral(addr string) bool {
	return len(addr) >= 2 && addr[len(addr)-2:] == ":0"
}
