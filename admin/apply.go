package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// apply replaces the whole configuration with the body (YAML or JSON, the
// shape of state.Config) as one ApplyConfig command. With ?dry_run=true it
// only validates and answers the diff against the current configuration.
func (s *Server) apply(c echo.Context) error {
	dryRun := false
	if v := c.QueryParam("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return invalidField("dry_run", "must be true or false")
		}
		dryRun = b
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	cfg, err := parseConfig(body)
	if err != nil {
		return err
	}
	h, err := s.header(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()

	if dryRun {
		snap, err := s.read(c)
		if err != nil {
			return err
		}
		diff, err := diffAgainst(&cfg, snap)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, ApplyResult{DryRun: true, Version: snap.Version, Diff: diff})
	}

	// The diff is computed against the very version the write replaces
	// (IfVersion), so it is exact.
	var diff Diff
	res, err := s.modify(ctx, h, func(snap *state.Snapshot) (fsm.Command, error) {
		next := cfg.Clone()
		d, err := diffAgainst(&next, snap)
		if err != nil {
			return nil, err
		}
		diff = d
		return &fsm.ApplyConfig{Header: h, Config: next}, nil
	})
	if err != nil {
		return err
	}
	c.Response().Header().Set(VersionHeader, strconv.FormatUint(res.Index, 10))
	return c.JSON(http.StatusOK, ApplyResult{Version: res.Index, Diff: diff})
}

// parseConfig decodes YAML or JSON strictly (unknown or duplicate fields
// are errors) and validates it here, so a literal provider secret is
// refused before it can reach the raft log.
func parseConfig(body []byte) (state.Config, error) {
	var cfg state.Config
	if err := yaml.UnmarshalStrict(body, &cfg); err != nil {
		return cfg, decodeError(err)
	}
	for i, p := range cfg.Providers {
		if p.APIKey != MaskedSecret {
			if err := checkSecretRef("providers["+strconv.Itoa(i)+"].api_key", p.APIKey); err != nil {
				return cfg, err
			}
		}
	}
	return cfg, nil
}

// diffAgainst resolves masked secrets in next from cur, validates next and
// returns what applying it would change. Both sides are compared with
// defaults applied, so writing a default explicitly is no change.
func diffAgainst(next *state.Config, cur *state.Snapshot) (Diff, error) {
	if err := unmaskProviders(next, cur); err != nil {
		return Diff{}, err
	}
	built, err := state.Build(*next, 0)
	if err != nil {
		return Diff{}, err
	}
	a, b := &cur.Config, &built.Config
	return Diff{
		Providers:   diffKind(a.Providers, b.Providers, func(p *state.Provider) string { return p.Name }),
		Deployments: diffKind(a.Deployments, b.Deployments, func(d *state.Deployment) string { return d.Name }),
		Models:      diffKind(a.Models, b.Models, func(m *state.Model) string { return m.Name }),
		Tenants:     diffKind(a.Tenants, b.Tenants, func(t *state.Tenant) string { return t.Name }),
		Keys:        diffKind(a.Keys, b.Keys, func(k *state.Key) string { return k.ID }),
		Policies:    diffKind(a.Policies, b.Policies, func(p *state.Policy) string { return p.Name }),
	}, nil
}

// diffKind compares two lists by name; items are equal when their JSON
// encodings are.
func diffKind[T any](old, next []T, name func(*T) string) KindDiff {
	enc := func(v *T) []byte {
		b, _ := json.Marshal(v)
		return b
	}
	before := make(map[string][]byte, len(old))
	for i := range old {
		before[name(&old[i])] = enc(&old[i])
	}
	var d KindDiff
	seen := make(map[string]bool, len(next))
	for i := range next {
		n := name(&next[i])
		seen[n] = true
		prev, ok := before[n]
		switch {
		case !ok:
			d.Added = append(d.Added, n)
		case !bytes.Equal(prev, enc(&next[i])):
			d.Changed = append(d.Changed, n)
		}
	}
	for n := range before {
		if !seen[n] {
			d.Removed = append(d.Removed, n)
		}
	}
	slices.Sort(d.Added)
	slices.Sort(d.Changed)
	slices.Sort(d.Removed)
	return d
}
