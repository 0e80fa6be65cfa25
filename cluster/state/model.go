package state

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Config is the whole declarative configuration an administrator sets. The
// YAML file in deploy/ and the admin API's apply endpoint carry this shape.
type Config struct {
	Providers   []Provider   `json:"providers"`
	Deployments []Deployment `json:"deployments"`
	Models      []Model      `json:"models"`
	Tenants     []Tenant     `json:"tenants"`
	Keys        []Key        `json:"keys"`
	Policies    []Policy     `json:"policies,omitempty"`
	// Quota tunes how each deployment's global quota is divided among
	// the live nodes. Zero fields take the documented defaults.
	Quota QuotaSettings `json:"quota,omitzero"`
}

// QuotaSettings tune the division of every deployment's quota among nodes
// (leased shares) and the batch class's use of it. Every node reads the
// same replicated values, so the allocator and the share holders agree.
type QuotaSettings struct {
	// Lease is how long a granted share stays valid without renewal.
	// Default 2s.
	Lease Duration `json:"lease,omitempty"`
	// Interval is how often the allocator rebalances and renews shares
	// and nodes report their demand. Default 500ms.
	Interval Duration `json:"interval,omitempty"`
	// Grace is how long a node whose lease lapsed keeps admitting at
	// SafeFraction of its last share before it admits nothing. Default 1s.
	Grace Duration `json:"grace,omitempty"`
	// SafeFraction of the last share is admitted during Grace. Default 0.5.
	SafeFraction float64 `json:"safe_fraction,omitempty"`
	// ClockMargin is added to lease ends to cover clock differences between
	// nodes before a share counts as surely expired. Default 250ms.
	ClockMargin Duration `json:"clock_margin,omitempty"`
	// Floor is the fraction of a quota every live node keeps whatever its
	// demand, so that it can serve a first request. Default 0.02.
	Floor float64 `json:"floor,omitempty"`
	// BatchFraction caps the share of a deployment's budget the batch
	// class may use while interactive demand exists. Default 0.5.
	BatchFraction float64 `json:"batch_fraction,omitempty"`
	// BatchQueue bounds the batch requests waiting for budget on one node.
	// Default 256.
	BatchQueue int `json:"batch_queue,omitempty"`
	// IgnoreUpstreamHeaders turns off drift correction: by default the
	// allocator divides less of a deployment's token budget when the
	// provider's x-ratelimit-remaining-tokens says someone else uses part
	// of it. Default false.
	IgnoreUpstreamHeaders bool `json:"ignore_upstream_headers,omitempty"`
	// PaceBurst is the part of a node's share of a token budget (windows
	// of 5 s and more) it may spend at once; the rest it spends at a
	// steady rate over the window, so that a dead node's share, all but
	// its burst, goes back to the others as soon as its lease surely
	// ended instead of a window later. A burst always holds the largest
	// request seen. 1 turns pacing off. Default 0.02.
	PaceBurst float64 `json:"pace_burst,omitempty"`
	// PaceWait is how long a request may wait for a paced share's rate
	// instead of being refused. Default 500ms.
	PaceWait Duration `json:"pace_wait,omitempty"`
}

// Default quota settings.
const (
	DefaultLease         = 2 * time.Second
	DefaultQuotaInterval = 500 * time.Millisecond
	DefaultGrace         = 1 * time.Second
	DefaultSafeFraction  = 0.5
	DefaultClockMargin   = 250 * time.Millisecond
	DefaultFloor         = 0.02
	DefaultBatchFraction = 0.5
	DefaultBatchQueue    = 256
	DefaultPaceBurst     = 0.02
	DefaultPaceWait      = 500 * time.Millisecond
)

func (q *QuotaSettings) setDefaults() {
	if q.Lease == 0 {
		q.Lease = Duration(DefaultLease)
	}
	if q.Interval == 0 {
		q.Interval = Duration(DefaultQuotaInterval)
	}
	if q.Grace == 0 {
		q.Grace = Duration(DefaultGrace)
	}
	if q.SafeFraction == 0 {
		q.SafeFraction = DefaultSafeFraction
	}
	if q.ClockMargin == 0 {
		q.ClockMargin = Duration(DefaultClockMargin)
	}
	if q.Floor == 0 {
		q.Floor = DefaultFloor
	}
	if q.BatchFraction == 0 {
		q.BatchFraction = DefaultBatchFraction
	}
	if q.BatchQueue == 0 {
		q.BatchQueue = DefaultBatchQueue
	}
	if q.PaceBurst == 0 {
		q.PaceBurst = DefaultPaceBurst
	}
	if q.PaceWait == 0 {
		q.PaceWait = Duration(DefaultPaceWait)
	}
}

// DefaultQuotaSettings returns the settings with every default applied.
func DefaultQuotaSettings() QuotaSettings {
	var q QuotaSettings
	q.setDefaults()
	return q
}

// ProviderKind names the wire dialect spoken to a provider.
type ProviderKind string

// The provider dialects Sluice speaks upstream.
const (
	// KindAzure is Azure OpenAI: {endpoint}/openai/deployments/{deployment}/...?api-version=,
	// authenticated with an api-key header.
	KindAzure ProviderKind = "azure"
	// KindOpenAI is the OpenAI API: {endpoint}/v1/..., Bearer key, model in the body.
	KindOpenAI ProviderKind = "openai"
	// KindOpenAICompatible is a self-hosted server speaking the OpenAI API
	// (vLLM and the like): {endpoint}/v1/..., optional Bearer key.
	KindOpenAICompatible ProviderKind = "openai-compatible"
)

// Provider is one upstream account or endpoint.
type Provider struct {
	Name string       `json:"name"`
	Kind ProviderKind `json:"kind"`
	// Endpoint is the base URL, e.g. https://eastus-res.openai.azure.com or
	// https://api.openai.com (without /v1).
	Endpoint string `json:"endpoint"`
	// APIKey is a secret reference, never the secret itself in stored config:
	// "env:NAME" reads the environment of the node; "enc:..." is a value
	// encrypted with the cluster key. Optional for openai-compatible.
	APIKey string `json:"api_key,omitempty"`
	// APIVersion is the Azure api-version query value. Default DefaultAzureAPIVersion.
	APIVersion string `json:"api_version,omitempty"`
}

// DefaultAzureAPIVersion is used for Azure providers that name none.
const DefaultAzureAPIVersion = "2024-10-21"

// Deployment is one model deployment at one provider, with its quota.
type Deployment struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Region   string `json:"region,omitempty"`
	// Upstream is the Azure deployment name or the upstream model name.
	Upstream string `json:"upstream"`
	// TPM and RPM are the provider's limits for this deployment; 0 means
	// unlimited (self-hosted servers have capacity, not quota).
	TPM int64 `json:"tpm,omitempty"`
	RPM int64 `json:"rpm,omitempty"`
	// TPMWindow and RPMWindow are the short windows the provider enforces
	// the limits over (Azure: 1 s or 10 s). Defaults 10s and 1s.
	TPMWindow Duration `json:"tpm_window,omitempty"`
	RPMWindow Duration `json:"rpm_window,omitempty"`
	// Weight biases the balancer toward this deployment (default 1).
	Weight float64 `json:"weight,omitempty"`
	// SlowTolerant marks a deployment batch traffic prefers (for example
	// a region with spare quota but higher latency).
	SlowTolerant bool `json:"slow_tolerant,omitempty"`
}

// Default provider enforcement windows, from Azure's documented behaviour.
const (
	DefaultTPMWindow = 10 * time.Second
	DefaultRPMWindow = 1 * time.Second
)

// ModelKind says which API a model serves.
type ModelKind string

// Model kinds.
const (
	ModelChat      ModelKind = "chat"      // chat/completions and completions
	ModelEmbedding ModelKind = "embedding" // embeddings
)

// Model is a public model name clients ask for and the pool serving it.
type Model struct {
	Name        string    `json:"name"`
	Kind        ModelKind `json:"kind,omitempty"` // default chat
	Deployments []string  `json:"deployments"`
	// Fallbacks are other models tried in order when every deployment of
	// this one fails.
	Fallbacks []string `json:"fallbacks,omitempty"`
	// StaticResponse, when set, is the assistant text answered when the
	// pool and every fallback failed.
	StaticResponse string `json:"static_response,omitempty"`
	// DefaultMaxTokens is charged on admission when a request gives no
	// max_tokens. Default 1024.
	DefaultMaxTokens int64 `json:"default_max_tokens,omitempty"`
	// Encoding is the tokenizer used for estimates: o200k_base (default) or cl100k_base.
	Encoding string `json:"encoding,omitempty"`
}

// Default model settings.
const (
	DefaultMaxTokens = 1024
	DefaultEncoding  = "o200k_base"
)

// Class is a tenant's priority class.
type Class string

// Priority classes.
const (
	ClassInteractive Class = "interactive"
	ClassBatch       Class = "batch"
)

// Limits are per-tenant or per-key limits; zero means unlimited.
type Limits struct {
	TPM           int64 `json:"tpm,omitempty"`
	RPM           int64 `json:"rpm,omitempty"`
	TokensPerHour int64 `json:"tokens_per_hour,omitempty"`
	TokensPerDay  int64 `json:"tokens_per_day,omitempty"`
	MaxConcurrent int64 `json:"max_concurrent,omitempty"`
}

// IsZero reports whether no limit is set.
func (l Limits) IsZero() bool { return l == Limits{} }

// Tenant is a team or service that owns keys and is billed for usage.
type Tenant struct {
	Name string `json:"name"`
	// Plan is a free label for the tenant's plan.
	Plan string `json:"plan,omitempty"`
	// Class is the priority class, default interactive.
	Class  Class  `json:"class,omitempty"`
	Limits Limits `json:"limits,omitempty"`
	// Policy names the policy applied to the tenant's requests (default "default").
	Policy string `json:"policy,omitempty"`
}

// Key is a virtual key. Only the SHA-256 hash of the key is stored.
type Key struct {
	// ID is a public, non-secret identifier used in usage records and the admin API.
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the key's plaintext, optionally prefixed "sha256:".
	Hash   string `json:"hash"`
	Tenant string `json:"tenant"`
	// Models the key may use; empty means every model.
	Models    []string   `json:"models,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Disabled  bool       `json:"disabled,omitempty"`
	Limits    Limits     `json:"limits,omitempty"`
}

// HashKey returns the stored form of a virtual key's plaintext.
func HashKey(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return hex.EncodeToString(sum[:])
}

// LimitMode says what happens when a tenant limit is exceeded.
type LimitMode string

// Limit modes.
const (
	// LimitHard refuses with 429 and retry-after.
	LimitHard LimitMode = "hard"
	// LimitSoft lets the request through and flags it in headers and metrics.
	LimitSoft LimitMode = "soft"
)

// Policy groups the request-handling rules a tenant is served with.
type Policy struct {
	Name      string        `json:"name"`
	Retry     RetryPolicy   `json:"retry,omitempty"`
	Timeouts  TimeoutPolicy `json:"timeouts,omitempty"`
	LimitMode LimitMode     `json:"limit_mode,omitempty"` // default hard
	// BatchMaxWait is how long a batch request may wait for budget when
	// it names no x-sluice-max-wait; default 30s.
	BatchMaxWait Duration    `json:"batch_max_wait,omitempty"`
	Cache        CachePolicy `json:"cache,omitempty"`
}

// CachePolicy is the opt-in exact-match response cache. A cached answer is
// served without calling a provider; it is still charged to the tenant.
type CachePolicy struct {
	// Enabled turns the cache on for the tenants of this policy; default off.
	Enabled bool `json:"enabled,omitempty"`
	// TTL is how long an answer is served from the cache; default 5m.
	TTL Duration `json:"ttl,omitempty"`
	// MaxEntryBytes bounds one cached answer; default 1 MiB.
	MaxEntryBytes int64 `json:"max_entry_bytes,omitempty"`
	// AnyRequest caches every request. By default only requests whose
	// answer is meant to be repeatable (temperature 0 or a seed) qualify.
	AnyRequest bool `json:"any_request,omitempty"`
}

// Default cache settings.
const (
	DefaultCacheTTL           = 5 * time.Minute
	DefaultCacheMaxEntryBytes = 1 << 20
)

// RetryPolicy bounds retries and their backoff.
type RetryPolicy struct {
	// MaxAttempts counts the first try; default 3.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// BaseInterval and MaxInterval bound exponential backoff; defaults 100ms and 2s.
	BaseInterval Duration `json:"base_interval,omitempty"`
	MaxInterval  Duration `json:"max_interval,omitempty"`
	// Jitter is "full" (default) or "none".
	Jitter string `json:"jitter,omitempty"`
	// BudgetRatio caps retries as a fraction of requests over a sliding
	// window; default 0.2.
	BudgetRatio float64 `json:"budget_ratio,omitempty"`
}

// TimeoutPolicy bounds one upstream attempt and the whole request.
type TimeoutPolicy struct {
	Connect   Duration `json:"connect,omitempty"`    // default 2s
	FirstByte Duration `json:"first_byte,omitempty"` // default 30s
	Total     Duration `json:"total,omitempty"`      // default 120s
}

// DefaultBatchMaxWait is how long a batch request waits for budget by default.
const DefaultBatchMaxWait = 30 * time.Second

// DefaultPolicyName is the policy used by tenants that name none.
const DefaultPolicyName = "default"

// DefaultPolicy returns the built-in policy, used when the configuration
// defines no policy named "default". Its values are the documented defaults.
func DefaultPolicy() Policy {
	p := Policy{Name: DefaultPolicyName}
	p.setDefaults()
	return p
}

func (p *Policy) setDefaults() {
	if p.Retry.MaxAttempts == 0 {
		p.Retry.MaxAttempts = 3
	}
	if p.Retry.BaseInterval == 0 {
		p.Retry.BaseInterval = Duration(100 * time.Millisecond)
	}
	if p.Retry.MaxInterval == 0 {
		p.Retry.MaxInterval = Duration(2 * time.Second)
	}
	if p.Retry.Jitter == "" {
		p.Retry.Jitter = "full"
	}
	if p.Retry.BudgetRatio == 0 {
		p.Retry.BudgetRatio = 0.2
	}
	if p.Timeouts.Connect == 0 {
		p.Timeouts.Connect = Duration(2 * time.Second)
	}
	if p.Timeouts.FirstByte == 0 {
		p.Timeouts.FirstByte = Duration(30 * time.Second)
	}
	if p.BatchMaxWait == 0 {
		p.BatchMaxWait = Duration(DefaultBatchMaxWait)
	}
	if p.Timeouts.Total == 0 {
		p.Timeouts.Total = Duration(120 * time.Second)
	}
	if p.LimitMode == "" {
		p.LimitMode = LimitHard
	}
	if p.Cache.TTL == 0 {
		p.Cache.TTL = Duration(DefaultCacheTTL)
	}
	if p.Cache.MaxEntryBytes == 0 {
		p.Cache.MaxEntryBytes = DefaultCacheMaxEntryBytes
	}
}
