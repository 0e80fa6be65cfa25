package node

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/cluster/state"
)

// MaxConfigBytes bounds a configuration file.
const MaxConfigBytes = 8 << 20

// LoadConfig reads a declarative configuration (YAML or JSON) and
// validates it. Unknown fields are errors, and every error names the file
// and the field.
func LoadConfig(path string) (state.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return state.Config{}, fmt.Errorf("read config: %w", err)
	}
	if len(b) > MaxConfigBytes {
		return state.Config{}, fmt.Errorf("config %s: larger than %d bytes", path, MaxConfigBytes)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return state.Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and validates a declarative configuration.
func ParseConfig(b []byte) (state.Config, error) {
	var cfg state.Config
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return state.Config{}, fmt.Errorf("decode: %w", err)
	}
	if err := state.Validate(&cfg); err != nil {
		return state.Config{}, err
	}
	return cfg, nil
}
