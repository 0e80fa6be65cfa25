package admin

import (
	"context"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/cluster/state"
)

// Provider secrets. A request carries either a reference in api_key
// (env:NAME, stored as is) or a literal in api_key_value, which is
// encrypted here, before it is written: the raft log, the snapshots, the
// audit log and every response only ever hold the enc: form, shown masked.

// decodeProvider reads a ProviderSpec and, for api_key_value, encrypts the
// secret into APIKey.
func decodeProvider(s *Server, body []byte) (state.Provider, error) {
	spec, err := decodeStrict[ProviderSpec](s, body)
	if err != nil {
		return state.Provider{}, err
	}
	p := spec.Provider
	if spec.APIKeyValue == "" {
		return p, nil
	}
	if p.APIKey != "" {
		return p, invalidField("api_key_value", "give api_key (a reference) or api_key_value (a secret), not both")
	}
	if s.cfg.ClusterKey == nil {
		return p, invalidField("api_key_value", "this node has no cluster key (%s) to encrypt it; use api_key: env:NAME", ClusterKeyEnv)
	}
	if p.APIKey, err = Encrypt(s.cfg.ClusterKey, spec.APIKeyValue); err != nil {
		return p, err
	}
	return p, nil
}

// prepareProvider keeps the stored secret for the masked value a GET
// showed, and refuses a literal in api_key before it can reach the raft
// log (the cluster would reject it, but only after logging it).
func prepareProvider(s *Server, ctx context.Context, p *state.Provider) error {
	if p.APIKey == MaskedSecret {
		snap, err := s.store.Read(ctx, false)
		if err != nil {
			return err
		}
		cur, ok := snap.Provider(p.Name)
		if !ok || !strings.HasPrefix(cur.APIKey, EncPrefix) {
			return invalidField("api_key", "%s keeps the stored encrypted secret, but provider %q has none", MaskedSecret, p.Name)
		}
		p.APIKey = cur.APIKey
		return nil
	}
	return checkSecretRef("api_key", p.APIKey)
}

// checkSecretRef refuses a non-empty api_key that is not a reference,
// without echoing it.
func checkSecretRef(field, v string) error {
	if v != "" && !state.IsSecretRef(v) {
		return invalidField(field, "must be a secret reference (env:NAME or enc:...); send a literal key as api_key_value")
	}
	return nil
}

// maskProvider returns the provider as responses show it: env: references
// as they are, encrypted values as "enc:****", anything else hidden.
func maskProvider(p state.Provider) state.Provider {
	switch {
	case p.APIKey == "", strings.HasPrefix(p.APIKey, "env:"):
	case strings.HasPrefix(p.APIKey, EncPrefix):
		p.APIKey = MaskedSecret
	default:
		p.APIKey = "****"
	}
	return p
}

// unmaskProviders replaces "enc:****" in a whole configuration with the
// stored secret of the provider of the same name, so a configuration read
// back from the API can be applied again.
func unmaskProviders(c *state.Config, cur *state.Snapshot) error {
	for i := range c.Providers {
		p := &c.Providers[i]
		if p.APIKey != MaskedSecret {
			continue
		}
		old, ok := cur.Provider(p.Name)
		if !ok || !strings.HasPrefix(old.APIKey, EncPrefix) {
			return invalidField("providers["+strconv.Itoa(i)+"].api_key", "%s keeps the stored encrypted secret, but provider %q has none", MaskedSecret, p.Name)
		}
		p.APIKey = old.APIKey
	}
	return nil
}
