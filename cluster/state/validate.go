package state

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// FieldError is a validation failure of one field, named by its path in the
// configuration, e.g. "deployments[2].tpm".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ErrInvalid is wrapped by every validation error, so callers can map it to
// a 400 without inspecting the message.
var ErrInvalid = errors.New("invalid configuration")

// ValidationError lists every field error found in a configuration.
type ValidationError struct {
	Fields []*FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration: ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)

type validator struct{ errs []*FieldError }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) name(field, name string) {
	switch {
	case name == "":
		v.add(field, "required")
	case !nameRE.MatchString(name):
		v.add(field, "%q is not a valid name (letters, digits, . _ : / -; at most 128)", name)
	}
}

func (v *validator) unique(seen map[string]bool, field, name string) {
	if name == "" {
		return
	}
	if seen[name] {
		v.add(field, "duplicate name %q", name)
	}
	seen[name] = true
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.errs}
}

// Validate checks a configuration without building a snapshot. Every error
// names the field it is about.
func Validate(c *Config) error {
	var v validator
	providers := map[string]bool{}
	for i, p := range c.Providers {
		f := fmt.Sprintf("providers[%d]", i)
		v.name(f+".name", p.Name)
		v.unique(providers, f+".name", p.Name)
		switch p.Kind {
		case KindAzure, KindOpenAI, KindOpenAICompatible:
		case "":
			v.add(f+".kind", "required (azure, openai or openai-compatible)")
		default:
			v.add(f+".kind", "unknown kind %q (want azure, openai or openai-compatible)", p.Kind)
		}
		if u, err := url.Parse(p.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(f+".endpoint", "must be an http(s) URL, got %q", p.Endpoint)
		}
		if p.APIKey == "" && p.Kind != KindOpenAICompatible && p.Kind != "" {
			v.add(f+".api_key", "required for kind %s (a reference such as env:NAME)", p.Kind)
		}
		if p.APIKey != "" && !IsSecretRef(p.APIKey) {
			// Never echo the value: it may be a pasted secret.
			v.add(f+".api_key", "must be a secret reference (env:NAME or enc:...), not a literal key")
		}
	}
	deployments := map[string]bool{}
	for i, d := range c.Deployments {
		f := fmt.Sprintf("deployments[%d]", i)
		v.name(f+".name", d.Name)
		v.unique(deployments, f+".name", d.Name)
		if d.Provider == "" {
			v.add(f+".provider", "required")
		} else if !providers[d.Provider] {
			v.add(f+".provider", "unknown provider %q", d.Provider)
		}
		if d.Upstream == "" {
			v.add(f+".upstream", "required (the Azure deployment or upstream model name)")
		}
		if d.TPM < 0 {
			v.add(f+".tpm", "must not be negative")
		}
		if d.RPM < 0 {
			v.add(f+".rpm", "must not be negative")
		}
		if d.TPMWindow < 0 || (d.TPMWindow > 0 && d.TPMWindow.D() > 60e9) {
			v.add(f+".tpm_window", "must be between 0 and 60s")
		}
		if d.RPMWindow < 0 || (d.RPMWindow > 0 && d.RPMWindow.D() > 60e9) {
			v.add(f+".rpm_window", "must be between 0 and 60s")
		}
		if d.Weight < 0 {
			v.add(f+".weight", "must not be negative")
		}
	}
	models := map[string]bool{}
	for i, m := range c.Models {
		f := fmt.Sprintf("models[%d]", i)
		v.name(f+".name", m.Name)
		v.unique(models, f+".name", m.Name)
	}
	for i, m := range c.Models {
		f := fmt.Sprintf("models[%d]", i)
		switch m.Kind {
		case "", ModelChat, ModelEmbedding:
		default:
			v.add(f+".kind", "unknown kind %q (want chat or embedding)", m.Kind)
		}
		if len(m.Deployments) == 0 && m.StaticResponse == "" && len(m.Fallbacks) == 0 {
			v.add(f+".deployments", "required: at least one deployment, fallback or a static_response")
		}
		for j, d := range m.Deployments {
			if !deployments[d] {
				v.add(fmt.Sprintf("%s.deployments[%d]", f, j), "unknown deployment %q", d)
			}
		}
		for j, fb := range m.Fallbacks {
			switch {
			case fb == m.Name:
				v.add(fmt.Sprintf("%s.fallbacks[%d]", f, j), "a model cannot fall back to itself")
			case !models[fb]:
				v.add(fmt.Sprintf("%s.fallbacks[%d]", f, j), "unknown model %q", fb)
			}
		}
		if m.DefaultMaxTokens < 0 {
			v.add(f+".default_max_tokens", "must not be negative")
		}
		switch m.Encoding {
		case "", "o200k_base", "cl100k_base":
		default:
			v.add(f+".encoding", "unknown encoding %q (want o200k_base or cl100k_base)", m.Encoding)
		}
	}
	policies := map[string]bool{}
	for i, p := range c.Policies {
		f := fmt.Sprintf("policies[%d]", i)
		v.name(f+".name", p.Name)
		v.unique(policies, f+".name", p.Name)
		if p.Retry.MaxAttempts < 0 || p.Retry.MaxAttempts > 10 {
			v.add(f+".retry.max_attempts", "must be between 1 and 10")
		}
		if p.Retry.BaseInterval < 0 || p.Retry.MaxInterval < 0 {
			v.add(f+".retry", "intervals must not be negative")
		}
		if p.Retry.MaxInterval > 0 && p.Retry.BaseInterval > p.Retry.MaxInterval {
			v.add(f+".retry.base_interval", "must not exceed max_interval")
		}
		switch p.Retry.Jitter {
		case "", "full", "none":
		default:
			v.add(f+".retry.jitter", "unknown jitter %q (want full or none)", p.Retry.Jitter)
		}
		if p.Retry.BudgetRatio < 0 || p.Retry.BudgetRatio > 1 {
			v.add(f+".retry.budget_ratio", "must be between 0 and 1")
		}
		if p.Timeouts.Connect < 0 || p.Timeouts.FirstByte < 0 || p.Timeouts.Total < 0 {
			v.add(f+".timeouts", "must not be negative")
		}
		if p.Cache.TTL < 0 {
			v.add(f+".cache.ttl", "must not be negative")
		}
		if p.Cache.MaxEntryBytes < 0 {
			v.add(f+".cache.max_entry_bytes", "must not be negative")
		}
		switch p.LimitMode {
		case "", LimitHard, LimitSoft:
		default:
			v.add(f+".limit_mode", "unknown mode %q (want hard or soft)", p.LimitMode)
		}
	}
	tenants := map[string]bool{}
	for i, t := range c.Tenants {
		f := fmt.Sprintf("tenants[%d]", i)
		v.name(f+".name", t.Name)
		v.unique(tenants, f+".name", t.Name)
		switch t.Class {
		case "", ClassInteractive, ClassBatch:
		default:
			v.add(f+".class", "unknown class %q (want interactive or batch)", t.Class)
		}
		if t.Policy != "" && t.Policy != DefaultPolicyName && !policies[t.Policy] {
			v.add(f+".policy", "unknown policy %q", t.Policy)
		}
		v.limits(f+".limits", t.Limits)
	}
	keyIDs, hashes := map[string]bool{}, map[string]bool{}
	for i, k := range c.Keys {
		f := fmt.Sprintf("keys[%d]", i)
		v.name(f+".id", k.ID)
		v.unique(keyIDs, f+".id", k.ID)
		if h, ok := normalHash(k.Hash); !ok {
			v.add(f+".hash", "must be a hex SHA-256 (64 hex digits, optional sha256: prefix)")
		} else if hashes[h] {
			v.add(f+".hash", "the same key hash is used twice")
		} else {
			hashes[h] = true
		}
		if k.Tenant == "" {
			v.add(f+".tenant", "required")
		} else if !tenants[k.Tenant] {
			v.add(f+".tenant", "unknown tenant %q", k.Tenant)
		}
		for j, m := range k.Models {
			if !models[m] {
				v.add(fmt.Sprintf("%s.models[%d]", f, j), "unknown model %q", m)
			}
		}
		v.limits(f+".limits", k.Limits)
	}
	if err := fallbackCycle(c.Models); err != "" {
		v.add("models", "%s", err)
	}
	v.quota(c.Quota)
	for i, p := range c.Policies {
		if p.BatchMaxWait < 0 {
			v.add(fmt.Sprintf("policies[%d].batch_max_wait", i), "must not be negative")
		}
	}
	return v.err()
}

func (v *validator) quota(q QuotaSettings) {
	for _, d := range []struct {
		f string
		v Duration
	}{{"quota.lease", q.Lease}, {"quota.interval", q.Interval}, {"quota.grace", q.Grace}, {"quota.clock_margin", q.ClockMargin}, {"quota.pace_wait", q.PaceWait}} {
		if d.v < 0 {
			v.add(d.f, "must not be negative")
		}
	}
	if q.Lease != 0 && q.Interval != 0 && q.Interval >= q.Lease {
		v.add("quota.interval", "must be shorter than quota.lease (%s), or shares lapse between renewals", q.Lease.D())
	}
	for _, f := range []struct {
		f string
		v float64
	}{{"quota.safe_fraction", q.SafeFraction}, {"quota.floor", q.Floor}, {"quota.batch_fraction", q.BatchFraction}, {"quota.pace_burst", q.PaceBurst}} {
		if f.v < 0 || f.v > 1 {
			v.add(f.f, "must be within [0, 1], got %g", f.v)
		}
	}
	if q.Floor > 0.3 {
		v.add("quota.floor", "must be at most 0.3 so that demand decides most of a quota, got %g", q.Floor)
	}
	if q.BatchQueue < 0 {
		v.add("quota.batch_queue", "must not be negative")
	}
}

func (v *validator) limits(f string, l Limits) {
	if l.TPM < 0 || l.RPM < 0 || l.TokensPerHour < 0 || l.TokensPerDay < 0 || l.MaxConcurrent < 0 {
		v.add(f, "limits must not be negative")
	}
}

// IsSecretRef reports whether s is a secret reference rather than a literal.
func IsSecretRef(s string) bool {
	return (strings.HasPrefix(s, "env:") && len(s) > 4) || (strings.HasPrefix(s, "enc:") && len(s) > 4)
}

func normalHash(h string) (string, bool) {
	h = strings.ToLower(strings.TrimPrefix(h, "sha256:"))
	if len(h) != 64 {
		return "", false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return h, true
}

// fallbackCycle returns a description of the first fallback cycle, or "".
func fallbackCycle(models []Model) string {
	next := map[string][]string{}
	for _, m := range models {
		next[m.Name] = m.Fallbacks
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var path []string
	var visit func(string) string
	visit = func(n string) string {
		color[n] = grey
		path = append(path, n)
		for _, m := range next[n] {
			switch color[m] {
			case grey:
				return "fallback cycle " + strings.Join(append(path, m), " -> ")
			case white:
				if s := visit(m); s != "" {
					return s
				}
			}
		}
		path = path[:len(path)-1]
		color[n] = black
		return ""
	}
	for _, m := range models {
		if color[m.Name] == white {
			if s := visit(m.Name); s != "" {
				return s
			}
		}
	}
	return ""
}
