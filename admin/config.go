package admin

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Environment variables the node reads for the admin API. The package never
// reads the environment itself: the node passes the values to LoadTokens and
// LoadClusterKey, so tests and embedders stay in control.
const (
	// TokensEnv holds admin tokens as "name:role:token,name:role:token".
	TokensEnv = "SLUICE_ADMIN_TOKENS"
	// ClusterKeyEnv holds the base64 of the 32-byte cluster key that
	// encrypts provider secrets given as api_key_value.
	ClusterKeyEnv = "SLUICE_CLUSTER_KEY"
)

// Role is what a token may do.
type Role string

// Roles.
const (
	// RoleAdmin may read and write everything.
	RoleAdmin Role = "admin"
	// RoleRead may read configuration, membership and the audit log; it may
	// not write, and may not download snapshots (they hold every key hash
	// and every encrypted provider secret).
	RoleRead Role = "read"
)

// MinTokenLength is the shortest admin token accepted: shorter ones are
// guessable.
const MinTokenLength = 16

// Token is one admin credential. Name is what the audit log records as the
// actor of a write; Token is the bearer secret, never logged or returned.
type Token struct {
	Name  string
	Role  Role
	Token string
}

// String never shows the secret, so a Token printed by mistake leaks nothing.
func (t Token) String() string { return t.Name + ":" + string(t.Role) + ":****" }

// GoString hides the secret from %#v as well.
func (t Token) GoString() string { return "admin.Token{" + t.String() + "}" }

// Drainer stops a node from taking new proxied requests and lets the ones
// in flight finish. The node passes one in Config; POST /admin/v1/drain
// answers 501 without it.
type Drainer interface {
	Drain(ctx context.Context) error
}

// DrainFunc adapts a function to Drainer.
type DrainFunc func(ctx context.Context) error

// Drain calls f.
func (f DrainFunc) Drain(ctx context.Context) error { return f(ctx) }

// Timeouts bound the admin listener's connections and each request's work.
type Timeouts struct {
	// ReadHeader bounds reading request headers. Default 5s.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included. Default 30s, long
	// enough for an 8 MiB snapshot on a slow link.
	Read time.Duration
	// Write bounds writing a response. Default 60s.
	Write time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request. Default 120s.
	Idle time.Duration
	// Request is the deadline of the cluster work one request does (a raft
	// write, a consistent read, a drain). When it passes the answer is 504.
	// Default 15s: above the cluster's own apply timeout, so a slow write
	// reports the cluster's error rather than ours.
	Request time.Duration
}

// Config configures the admin server. Start from DefaultConfig; New fills
// any zero field from the defaults.
type Config struct {
	// Addr is the host:port the admin API listens on. Default
	// "127.0.0.1:8081": loopback, so a node never exposes its admin API by
	// accident; set it to a routable address on purpose.
	Addr string
	// Tokens are the accepted bearer tokens (see LoadTokens). At least one
	// is required: a server nobody can call is a configuration mistake.
	Tokens []Token
	// ClusterKey is the 32-byte AES-256 key that encrypts provider secrets
	// sent as api_key_value (see LoadClusterKey). Nil refuses
	// api_key_value; env:NAME references still work.
	ClusterKey []byte
	// MaxBodyBytes caps request bodies. Default 1 MiB (a resource is a few
	// hundred bytes).
	MaxBodyBytes int64
	// MaxApplyBytes caps the bodies of /apply and snapshot restore, which
	// carry a whole configuration. Default 8 MiB.
	MaxApplyBytes int64
	// Timeouts; see Timeouts for each default.
	Timeouts Timeouts
	// Drainer is called by POST /admin/v1/drain. Default nil: 501.
	Drainer Drainer
	// Usage answers GET /admin/v1/usage from the usage ledger. Default
	// nil: 501.
	Usage UsageReader
	// Deployments reports this node's deployment health and quota shares
	// for GET /admin/v1/deployments/status. Default nil: 501.
	Deployments DeploymentStatus
	// Logger receives one line per request and the server's own events; it
	// never sees tokens, bodies or secrets. Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultAddr          = "127.0.0.1:8081"
	DefaultMaxBodyBytes  = 1 << 20
	DefaultMaxApplyBytes = 8 << 20
)

// DefaultConfig returns the documented defaults (no tokens).
func DefaultConfig() Config {
	return Config{
		Addr:          DefaultAddr,
		MaxBodyBytes:  DefaultMaxBodyBytes,
		MaxApplyBytes: DefaultMaxApplyBytes,
		Timeouts: Timeouts{
			ReadHeader: 5 * time.Second,
			Read:       30 * time.Second,
			Write:      60 * time.Second,
			Idle:       120 * time.Second,
			Request:    15 * time.Second,
		},
	}
}

// ErrInvalidConfig wraps every Config validation error.
var ErrInvalidConfig = errors.New("invalid admin configuration")

// setDefaults fills zero fields from DefaultConfig.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxApplyBytes == 0 {
		c.MaxApplyBytes = d.MaxApplyBytes
	}
	t, dt := &c.Timeouts, d.Timeouts
	if t.ReadHeader == 0 {
		t.ReadHeader = dt.ReadHeader
	}
	if t.Read == 0 {
		t.Read = dt.Read
	}
	if t.Write == 0 {
		t.Write = dt.Write
	}
	if t.Idle == 0 {
		t.Idle = dt.Idle
	}
	if t.Request == 0 {
		t.Request = dt.Request
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// validate checks a Config with defaults applied.
func (c *Config) validate() error {
	if err := validateTokens(c.Tokens); err != nil {
		return err
	}
	if len(c.Tokens) == 0 {
		return fmt.Errorf("%w: no admin tokens (set %s)", ErrInvalidConfig, TokensEnv)
	}
	if c.ClusterKey != nil && len(c.ClusterKey) != 32 {
		return fmt.Errorf("%w: the cluster key must be 32 bytes, got %d", ErrInvalidConfig, len(c.ClusterKey))
	}
	if c.MaxBodyBytes < 0 || c.MaxApplyBytes < 0 {
		return fmt.Errorf("%w: body limits must not be negative", ErrInvalidConfig)
	}
	t := c.Timeouts
	if t.ReadHeader < 0 || t.Read < 0 || t.Write < 0 || t.Idle < 0 || t.Request < 0 {
		return fmt.Errorf("%w: timeouts must not be negative", ErrInvalidConfig)
	}
	return nil
}

// validateTokens checks names, roles, lengths and uniqueness. Its errors
// name the token by its name or position, never by its secret.
func validateTokens(tokens []Token) error {
	names, secrets := map[string]bool{}, map[string]bool{}
	for i, t := range tokens {
		switch {
		case t.Name == "":
			return fmt.Errorf("%w: token %d has no name", ErrInvalidConfig, i+1)
		case strings.ContainsAny(t.Name, ":, \t\r\n"):
			return fmt.Errorf("%w: token name %q must not contain ':', ',' or spaces", ErrInvalidConfig, t.Name)
		case t.Role != RoleAdmin && t.Role != RoleRead:
			return fmt.Errorf("%w: token %q has role %q (want admin or read)", ErrInvalidConfig, t.Name, t.Role)
		case len(t.Token) < MinTokenLength:
			return fmt.Errorf("%w: token %q is shorter than %d characters", ErrInvalidConfig, t.Name, MinTokenLength)
		case strings.ContainsAny(t.Token, ", \t\r\n"):
			return fmt.Errorf("%w: token %q contains ',' or white space", ErrInvalidConfig, t.Name)
		case names[t.Name]:
			return fmt.Errorf("%w: token name %q is used twice", ErrInvalidConfig, t.Name)
		case secrets[t.Token]:
			return fmt.Errorf("%w: token %q has the same secret as another token", ErrInvalidConfig, t.Name)
		}
		names[t.Name], secrets[t.Token] = true, true
	}
	return nil
}

// LoadTokens parses admin tokens from env, the value of TokensEnv
// ("name:role:token,..."), and from file, the path of a file with one
// "name:role:token" per line (blank lines and lines starting with # are
// skipped). Either may be empty; tokens from both are returned, env first.
// The token part may itself contain ':'. Errors never contain a secret.
func LoadTokens(env, file string) ([]Token, error) {
	var out []Token
	for i, entry := range strings.Split(env, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		t, err := parseToken(entry)
		if err != nil {
			return nil, fmt.Errorf("%s entry %d: %w", TokensEnv, i+1, err)
		}
		out = append(out, t)
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("%w: read tokens file: %w", ErrInvalidConfig, err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for line := 1; sc.Scan(); line++ {
			entry := strings.TrimSpace(sc.Text())
			if entry == "" || strings.HasPrefix(entry, "#") {
				continue
			}
			t, err := parseToken(entry)
			if err != nil {
				return nil, fmt.Errorf("tokens file line %d: %w", line, err)
			}
			out = append(out, t)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%w: read tokens file: %w", ErrInvalidConfig, err)
		}
	}
	if err := validateTokens(out); err != nil {
		return nil, err
	}
	return out, nil
}

func parseToken(entry string) (Token, error) {
	parts := strings.SplitN(entry, ":", 3)
	if len(parts) != 3 {
		return Token{}, fmt.Errorf("%w: want name:role:token", ErrInvalidConfig)
	}
	return Token{
		Name:  strings.TrimSpace(parts[0]),
		Role:  Role(strings.TrimSpace(parts[1])),
		Token: strings.TrimSpace(parts[2]),
	}, nil
}

// LoadClusterKey decodes the value of ClusterKeyEnv: standard or URL-safe
// base64 of exactly 32 bytes. An empty value returns nil and no error (no
// cluster key: api_key_value is refused).
func LoadClusterKey(value string) ([]byte, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, nil
	}
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(value); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64", ErrInvalidConfig, ClusterKeyEnv)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: %s must decode to 32 bytes, got %d", ErrInvalidConfig, ClusterKeyEnv, len(key))
	}
	return key, nil
}
