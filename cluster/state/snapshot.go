package state

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Snapshot is an immutable, validated and indexed view of a Config. It is
// built once per configuration change and shared by every request that
// starts while it is current. Its maps and pointers must not be modified.
type Snapshot struct {
	// Version increases with every change (the raft index in a cluster).
	Version uint64
	// Config is the configuration with defaults applied.
	Config Config

	providers   map[string]*Provider
	deployments map[string]*Deployment
	models      map[string]*ResolvedModel
	tenants     map[string]*ResolvedTenant
	keysByHash  map[[32]byte]*ResolvedKey
	keysByID    map[string]*ResolvedKey
}

// ResolvedModel is a model with its pool and fallbacks resolved to pointers.
type ResolvedModel struct {
	*Model
	Pool      []*Deployment
	Fallbacks []*ResolvedModel
}

// ResolvedTenant is a tenant with its policy resolved.
type ResolvedTenant struct {
	*Tenant
	Policy *Policy
}

// ResolvedKey is a key with its tenant and allowed models resolved.
type ResolvedKey struct {
	*Key
	Tenant *ResolvedTenant
	// models is nil when every model is allowed.
	models map[string]struct{}
}

// Allows reports whether the key may use the model.
func (k *ResolvedKey) Allows(model string) bool {
	if k.models == nil {
		return true
	}
	_, ok := k.models[model]
	return ok
}

// Expired reports whether the key has expired at now.
func (k *ResolvedKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// Empty returns a valid snapshot with no configuration, version 0.
func Empty() *Snapshot {
	s, err := Build(Config{}, 0)
	if err != nil {
		panic("state: empty config does not build: " + err.Error())
	}
	return s
}

// Build validates c, applies defaults and indexes it. The snapshot keeps
// its own copy of c: later changes to c do not affect it.
func Build(c Config, version uint64) (*Snapshot, error) {
	c = c.Clone()
	if err := Validate(&c); err != nil {
		return nil, err
	}
	c.setDefaults()
	s := &Snapshot{
		Version:     version,
		Config:      c,
		providers:   make(map[string]*Provider, len(c.Providers)),
		deployments: make(map[string]*Deployment, len(c.Deployments)),
		models:      make(map[string]*ResolvedModel, len(c.Models)),
		tenants:     make(map[string]*ResolvedTenant, len(c.Tenants)),
		keysByHash:  make(map[[32]byte]*ResolvedKey, len(c.Keys)),
		keysByID:    make(map[string]*ResolvedKey, len(c.Keys)),
	}
	for i := range s.Config.Providers {
		p := &s.Config.Providers[i]
		s.providers[p.Name] = p
	}
	for i := range s.Config.Deployments {
		d := &s.Config.Deployments[i]
		s.deployments[d.Name] = d
	}
	for i := range s.Config.Models {
		m := &s.Config.Models[i]
		rm := &ResolvedModel{Model: m}
		for _, d := range m.Deployments {
			rm.Pool = append(rm.Pool, s.deployments[d])
		}
		s.models[m.Name] = rm
	}
	for _, rm := range s.models {
		for _, fb := range rm.Model.Fallbacks {
			rm.Fallbacks = append(rm.Fallbacks, s.models[fb])
		}
	}
	policies := map[string]*Policy{}
	for i := range s.Config.Policies {
		p := &s.Config.Policies[i]
		policies[p.Name] = p
	}
	if _, ok := policies[DefaultPolicyName]; !ok {
		p := DefaultPolicy()
		policies[DefaultPolicyName] = &p
	}
	for i := range s.Config.Tenants {
		t := &s.Config.Tenants[i]
		s.tenants[t.Name] = &ResolvedTenant{Tenant: t, Policy: policies[t.Policy]}
	}
	for i := range s.Config.Keys {
		k := &s.Config.Keys[i]
		rk := &ResolvedKey{Key: k, Tenant: s.tenants[k.Tenant]}
		if len(k.Models) > 0 {
			rk.models = make(map[string]struct{}, len(k.Models))
			for _, m := range k.Models {
				rk.models[m] = struct{}{}
			}
		}
		var h [32]byte
		// Validate has checked the hash is 64 hex digits.
		_, _ = hex.Decode(h[:], []byte(k.Hash))
		s.keysByHash[h] = rk
		s.keysByID[k.ID] = rk
	}
	return s, nil
}

// Authenticate finds the key whose hash matches the plaintext. The lookup
// is by hash, so it takes the same time for every wrong key.
func (s *Snapshot) Authenticate(plaintext string) (*ResolvedKey, bool) {
	h := sha256.Sum256([]byte(plaintext))
	k, ok := s.keysByHash[h]
	return k, ok
}

// Provider returns the named provider.
func (s *Snapshot) Provider(name string) (*Provider, bool) {
	p, ok := s.providers[name]
	return p, ok
}

// Deployment returns the named deployment.
func (s *Snapshot) Deployment(name string) (*Deployment, bool) {
	d, ok := s.deployments[name]
	return d, ok
}

// Model returns the named model with its pool resolved.
func (s *Snapshot) Model(name string) (*ResolvedModel, bool) {
	m, ok := s.models[name]
	return m, ok
}

// Tenant returns the named tenant with its policy resolved.
func (s *Snapshot) Tenant(name string) (*ResolvedTenant, bool) {
	t, ok := s.tenants[name]
	return t, ok
}

// KeyByID returns the key with the given public ID.
func (s *Snapshot) KeyByID(id string) (*ResolvedKey, bool) {
	k, ok := s.keysByID[id]
	return k, ok
}

// Clone returns a deep copy of c.
func (c Config) Clone() Config {
	out := Config{
		Providers:   append([]Provider(nil), c.Providers...),
		Deployments: append([]Deployment(nil), c.Deployments...),
		Models:      make([]Model, len(c.Models)),
		Tenants:     append([]Tenant(nil), c.Tenants...),
		Keys:        make([]Key, len(c.Keys)),
		Policies:    append([]Policy(nil), c.Policies...),
		Quota:       c.Quota,
	}
	for i, m := range c.Models {
		m.Deployments = append([]string(nil), m.Deployments...)
		m.Fallbacks = append([]string(nil), m.Fallbacks...)
		out.Models[i] = m
	}
	for i, k := range c.Keys {
		k.Models = append([]string(nil), k.Models...)
		if k.ExpiresAt != nil {
			t := *k.ExpiresAt
			k.ExpiresAt = &t
		}
		out.Keys[i] = k
	}
	return out
}

// setDefaults fills documented defaults in place; c must be valid.
func (c *Config) setDefaults() {
	for i := range c.Providers {
		p := &c.Providers[i]
		if p.Kind == KindAzure && p.APIVersion == "" {
			p.APIVersion = DefaultAzureAPIVersion
		}
	}
	for i := range c.Deployments {
		d := &c.Deployments[i]
		if d.TPMWindow == 0 {
			d.TPMWindow = Duration(DefaultTPMWindow)
		}
		if d.RPMWindow == 0 {
			d.RPMWindow = Duration(DefaultRPMWindow)
		}
		if d.Weight == 0 {
			d.Weight = 1
		}
	}
	for i := range c.Models {
		m := &c.Models[i]
		if m.Kind == "" {
			m.Kind = ModelChat
		}
		if m.DefaultMaxTokens == 0 {
			m.DefaultMaxTokens = DefaultMaxTokens
		}
		if m.Encoding == "" {
			m.Encoding = DefaultEncoding
		}
	}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		if t.Class == "" {
			t.Class = ClassInteractive
		}
		if t.Policy == "" {
			t.Policy = DefaultPolicyName
		}
	}
	for i := range c.Keys {
		k := &c.Keys[i]
		k.Hash, _ = normalHash(k.Hash)
	}
	for i := range c.Policies {
		c.Policies[i].setDefaults()
	}
	c.Quota.setDefaults()
}
