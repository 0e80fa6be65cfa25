package mock

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"os"
	"strings"
	"time"
)

// Dialect selects the wire format a Region speaks.
type Dialect string

const (
	// DialectAzure serves /openai/deployments/{deployment}/... with the
	// api-key header, api-version query parameter and Azure's error shapes,
	// and Azure's v1 API under /openai/v1/ (deployment from "model").
	DialectAzure Dialect = "azure"
	// DialectOpenAI serves /v1/... with bearer auth and picks the deployment
	// from the request body's "model".
	DialectOpenAI Dialect = "openai"
)

// Kind is what a deployment serves, and also names an operation for
// PromptTokens and Cost.
type Kind string

const (
	// KindChat deployments serve chat/completions and completions.
	KindChat Kind = "chat"
	// KindEmbedding deployments serve embeddings.
	KindEmbedding Kind = "embedding"
	// KindCompletion is the legacy completions operation. It is not a
	// deployment kind (chat deployments serve it); it exists so PromptTokens
	// and Cost can count a completions body.
	KindCompletion Kind = "completion"
)

// Defaults applied by setDefaults.
const (
	DefaultSeed          int64 = 1
	DefaultRPMWindow           = time.Second
	DefaultTPMWindow           = 10 * time.Second
	DefaultMaxTokens           = 1024
	DefaultMeanTokens          = 64
	DefaultEmbeddingDims       = 1536
	DefaultDialect             = DialectAzure
	DefaultKind                = KindChat
)

// Validation bounds.
const (
	maxEmbeddingDims        = 16384
	maxDeploymentNameLength = 64
)

// RegionConfig configures one Region.
type RegionConfig struct {
	// Name identifies the region (e.g. "eastus"); it is reported in the
	// x-ms-region header and in Stats. Required.
	Name string `json:"name"`
	// Listen is the address the mockllm binary serves this region on. The
	// Region itself ignores it.
	Listen string `json:"listen,omitempty"`
	// Dialect is "azure" (default) or "openai".
	Dialect Dialect `json:"dialect,omitempty"`
	// APIKey is the key clients must present.
	APIKey string `json:"api_key,omitempty"`
	// APIKeyEnv names an environment variable holding the key. When the
	// variable is set and non-empty it wins over APIKey; otherwise APIKey is
	// the fallback. One of the two must yield a key.
	APIKeyEnv string `json:"api_key_env,omitempty"`
	// Seed seeds every random draw of the region (0 means DefaultSeed).
	Seed int64 `json:"seed,omitempty"`
	// Deployments hosted by the region. At least one is required.
	Deployments []DeploymentConfig `json:"deployments"`
	// Faults active from the start, keyed by deployment name or "*" for
	// every deployment.
	Faults map[string]Faults `json:"faults,omitempty"`
	// RequestLog is how many delivered answers the region remembers by
	// x-request-id for POST /mock/lookup (default DefaultRequestLogSize).
	RequestLog int `json:"request_log,omitempty"`

	// Now is the clock used for rate-limit windows, stats and timestamps
	// (default time.Now). Delays (latency, stalls) always use real time.
	Now func() time.Time `json:"-"`
	// Logger receives one debug line per API request and never sees API
	// keys (default: discard).
	Logger *slog.Logger `json:"-"`
}

// DeploymentConfig configures one deployment of a Region.
type DeploymentConfig struct {
	// Name is the deployment name in the Azure path, or the "model" value
	// OpenAI-dialect clients send. Required.
	Name string `json:"name"`
	// Model is the underlying model reported in responses (default Name).
	Model string `json:"model,omitempty"`
	// Kind is "chat" (default; also serves completions) or "embedding".
	Kind Kind `json:"kind,omitempty"`
	// TPM is the tokens-per-minute quota (0 = unlimited).
	TPM int64 `json:"tpm,omitempty"`
	// RPM is the requests-per-minute quota (0 = unlimited).
	RPM int64 `json:"rpm,omitempty"`
	// RPMWindow is the fixed window requests are counted in (default 1s).
	// Each window allows floor(RPM*RPMWindow/1m) requests, at least 1.
	RPMWindow Duration `json:"rpm_window,omitempty"`
	// TPMWindow is the fixed window tokens are counted in (default 10s).
	// Each window allows floor(TPM*TPMWindow/1m) tokens, at least 1.
	TPMWindow Duration `json:"tpm_window,omitempty"`
	// DefaultMaxTokens is charged (and caps the output) when a request
	// gives no max_tokens / max_completion_tokens (default 1024).
	DefaultMaxTokens int `json:"default_max_tokens,omitempty"`
	// Latency shapes the time to first byte and the streaming pace.
	Latency LatencyConfig `json:"latency,omitzero"`
	// Completion shapes the length of generated answers.
	Completion CompletionConfig `json:"completion,omitzero"`
	// EmbeddingDims is the full embedding size (default 1536).
	EmbeddingDims int `json:"embedding_dims,omitempty"`
}

// LatencyConfig shapes response timing.
type LatencyConfig struct {
	// TTFBMedian and TTFBP99 fit a lognormal distribution of the time to
	// first byte. Zero median means no delay; a zero p99 means a constant
	// delay of TTFBMedian.
	TTFBMedian Duration `json:"ttfb_median,omitempty"`
	TTFBP99    Duration `json:"ttfb_p99,omitempty"`
	// TokenInterval is the pause between streamed output tokens (default 0).
	TokenInterval Duration `json:"token_interval,omitempty"`
}

// CompletionConfig shapes generated answers.
type CompletionConfig struct {
	// MeanTokens is the mean answer length in tokens (default 64). The
	// actual length of each answer is min(limit, sample), at least 1, where
	// the sample is drawn from a seeded normal distribution around the mean
	// (standard deviation mean/3) and limit is the request's max tokens.
	MeanTokens int `json:"mean_tokens,omitempty"`
}

// DefaultDeploymentConfig returns a chat deployment called name with every
// default applied.
func DefaultDeploymentConfig(name string) DeploymentConfig {
	d := DeploymentConfig{Name: name}
	d.setDefaults()
	return d
}

func (c *RegionConfig) setDefaults() {
	if c.Dialect == "" {
		c.Dialect = DefaultDialect
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	for i := range c.Deployments {
		c.Deployments[i].setDefaults()
	}
}

func (d *DeploymentConfig) setDefaults() {
	if d.Model == "" {
		d.Model = d.Name
	}
	if d.Kind == "" {
		d.Kind = DefaultKind
	}
	if d.RPMWindow == 0 {
		d.RPMWindow = Duration(DefaultRPMWindow)
	}
	if d.TPMWindow == 0 {
		d.TPMWindow = Duration(DefaultTPMWindow)
	}
	if d.DefaultMaxTokens == 0 {
		d.DefaultMaxTokens = DefaultMaxTokens
	}
	if d.Completion.MeanTokens == 0 {
		d.Completion.MeanTokens = DefaultMeanTokens
	}
	if d.EmbeddingDims == 0 {
		d.EmbeddingDims = DefaultEmbeddingDims
	}
}

// resolveAPIKey returns the key the region expects.
func (c *RegionConfig) resolveAPIKey() string {
	if c.APIKeyEnv != "" {
		if v := os.Getenv(c.APIKeyEnv); v != "" {
			return v
		}
	}
	return c.APIKey
}

// validate checks a config whose defaults are set. Errors name the field.
func (c *RegionConfig) validate() error {
	if c.Name == "" {
		return errors.New("name: required")
	}
	switch c.Dialect {
	case DialectAzure, DialectOpenAI:
	default:
		return fmt.Errorf("dialect: %q is not one of azure, openai", c.Dialect)
	}
	if c.resolveAPIKey() == "" {
		if c.APIKeyEnv != "" {
			return fmt.Errorf("api_key: required (environment variable %s is empty and no api_key fallback is set)", c.APIKeyEnv)
		}
		return errors.New("api_key: required (set api_key or api_key_env)")
	}
	if len(c.Deployments) == 0 {
		return errors.New("deployments: at least one is required")
	}
	seen := make(map[string]bool, len(c.Deployments))
	for i := range c.Deployments {
		d := &c.Deployments[i]
		if err := d.validate(); err != nil {
			return fmt.Errorf("deployments[%d].%w", i, err)
		}
		if seen[d.Name] {
			return fmt.Errorf("deployments[%d].name: duplicate %q", i, d.Name)
		}
		seen[d.Name] = true
	}
	for name, f := range c.Faults {
		if name != AllDeployments && !seen[name] {
			return fmt.Errorf("faults[%q]: no such deployment", name)
		}
		if err := f.validate(); err != nil {
			return fmt.Errorf("faults[%q].%w", name, err)
		}
	}
	return nil
}

func (d *DeploymentConfig) validate() error {
	switch {
	case d.Name == "":
		return errors.New("name: required")
	case d.Name == AllDeployments || strings.ContainsAny(d.Name, "/?#% \t\r\n"):
		return fmt.Errorf("name: %q is not a valid deployment name", d.Name)
	case len(d.Name) > maxDeploymentNameLength:
		return fmt.Errorf("name: longer than %d characters", maxDeploymentNameLength)
	}
	switch d.Kind {
	case KindChat, KindEmbedding:
	default:
		return fmt.Errorf("kind: %q is not one of chat, embedding", d.Kind)
	}
	if d.TPM < 0 {
		return errors.New("tpm: must not be negative")
	}
	if d.RPM < 0 {
		return errors.New("rpm: must not be negative")
	}
	if d.RPMWindow <= 0 {
		return errors.New("rpm_window: must be positive")
	}
	if d.TPMWindow <= 0 {
		return errors.New("tpm_window: must be positive")
	}
	if d.DefaultMaxTokens < 1 {
		return errors.New("default_max_tokens: must be at least 1")
	}
	if d.Completion.MeanTokens < 1 {
		return errors.New("completion.mean_tokens: must be at least 1")
	}
	if d.EmbeddingDims < 1 || d.EmbeddingDims > maxEmbeddingDims {
		return fmt.Errorf("embedding_dims: must be between 1 and %d", maxEmbeddingDims)
	}
	l := d.Latency
	switch {
	case l.TTFBMedian < 0:
		return errors.New("latency.ttfb_median: must not be negative")
	case l.TTFBP99 < 0:
		return errors.New("latency.ttfb_p99: must not be negative")
	case l.TTFBP99 > 0 && l.TTFBMedian == 0:
		return errors.New("latency.ttfb_median: required when latency.ttfb_p99 is set")
	case l.TTFBP99 > 0 && l.TTFBP99 < l.TTFBMedian:
		return errors.New("latency.ttfb_p99: must not be below latency.ttfb_median")
	case l.TokenInterval < 0:
		return errors.New("latency.token_interval: must not be negative")
	}
	return nil
}

// windowAllowance is floor(perMinute*window/1m), at least 1; 0 means
// unlimited.
func windowAllowance(perMinute int64, window time.Duration) int64 {
	if perMinute <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(perMinute), uint64(window))
	if hi >= uint64(time.Minute) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(time.Minute))
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return max(int64(q), 1)
}
