package router

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/quota"
	"github.com/sluicehq/sluice/router/wire"
)

// secret holds a resolved provider credential. Its String and GoString
// never reveal it, so a stray %v in a log or error cannot leak it.
type secret string

func (secret) String() string   { return "[redacted]" }
func (secret) GoString() string { return "[redacted]" }

// target is one deployment as the request path sees it: where and how to
// call it, its budget and its health, all resolved when the table is built.
type target struct {
	dep        *state.Deployment
	region     string
	kind       state.ProviderKind
	urls       [3]string // by wire.Endpoint
	authHeader string
	authValue  secret
	setModel   bool // OpenAI dialects name the upstream model in the body
	budget     *quota.Deployment
	health     *health
	// broken is why the deployment cannot be called (for example its
	// secret reference does not resolve); nil when usable.
	broken error
}

// route is a public model: its pool and its fallbacks.
type route struct {
	model     *state.ResolvedModel
	pool      []*target
	fallbacks []*route
}

// table is the immutable routing view of one snapshot.
type table struct {
	snap    *state.Snapshot
	targets map[string]*target
	routes  map[string]*route
	tenants map[string]*quota.Subject
	keys    map[string]*quota.Subject
}

// SecretResolver turns a secret reference (env:NAME, enc:...) into the
// secret. Errors must not contain the secret.
type SecretResolver func(ref string) (string, error)

func endpointPath(ep wire.Endpoint) string {
	switch ep {
	case wire.EndpointCompletions:
		return "completions"
	case wire.EndpointEmbeddings:
		return "embeddings"
	}
	return "chat/completions"
}

var allEndpoints = [...]wire.Endpoint{wire.EndpointChat, wire.EndpointCompletions, wire.EndpointEmbeddings}

// newTarget resolves a deployment's upstream URLs and credential.
func newTarget(d *state.Deployment, p *state.Provider, resolve SecretResolver) *target {
	t := &target{dep: d, region: d.Region, kind: p.Kind}
	base := strings.TrimRight(p.Endpoint, "/")
	for _, ep := range allEndpoints {
		switch p.Kind {
		case state.KindAzure:
			t.urls[ep] = fmt.Sprintf("%s/openai/deployments/%s/%s?api-version=%s",
				base, url.PathEscape(d.Upstream), endpointPath(ep), url.QueryEscape(p.APIVersion))
		default:
			t.urls[ep] = base + "/v1/" + endpointPath(ep)
		}
	}
	t.setModel = p.Kind != state.KindAzure
	if p.APIKey != "" {
		key, err := resolve(p.APIKey)
		switch {
		case err != nil:
			t.broken = fmt.Errorf("provider %s: credential: %w", p.Name, err)
		case key == "":
			t.broken = fmt.Errorf("provider %s: credential %s is empty", p.Name, p.APIKey)
		case p.Kind == state.KindAzure:
			t.authHeader, t.authValue = "Api-Key", secret(key)
		default:
			t.authHeader, t.authValue = "Authorization", secret("Bearer "+key)
		}
	}
	return t
}
