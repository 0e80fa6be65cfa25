package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster/state"
)

const applyYAML = `
providers:
  - name: az-east
    kind: azure
    endpoint: https://east.example.com
    api_key: env:AZ_EAST_KEY
deployments:
  - name: gpt4o-east
    provider: az-east
    upstream: gpt-4o
    tpm: 240000
    tpm_window: 10s
models:
  - name: gpt-4o
    deployments: [gpt4o-east]
tenants:
  - name: team-a
    class: batch
keys:
  - id: k1
    hash: %s
    tenant: team-a
policies:
  - name: strict
    limit_mode: hard
`

func TestApply(t *testing.T) {
	fx.reset(t, baseConfig())
	ctx := context.Background()
	w := fx.follower(t)
	c := fx.client(w, adminToken)
	doc := fmt.Sprintf(applyYAML, state.HashKey("sk-team-a"))
	before := fx.nodes[w].Snapshot().Version

	dry, err := c.Apply(ctx, []byte(doc), true)
	if err != nil {
		t.Fatal(err)
	}
	want := admin.Diff{
		Providers:   admin.KindDiff{Added: []string{"az-east"}, Removed: []string{"base-prov"}},
		Deployments: admin.KindDiff{Added: []string{"gpt4o-east"}, Removed: []string{"base-dep"}},
		Models:      admin.KindDiff{Added: []string{"gpt-4o"}, Removed: []string{"base-model"}},
		Tenants:     admin.KindDiff{Added: []string{"team-a"}, Removed: []string{"base-tenant"}},
		Keys:        admin.KindDiff{Added: []string{"k1"}},
		Policies:    admin.KindDiff{Added: []string{"strict"}},
	}
	if !dry.DryRun || dry.Version != before || !diffEqual(dry.Diff, want) {
		t.Fatalf("dry run: %+v", dry)
	}
	if v := fx.nodes[w].Snapshot().Version; v != before {
		t.Fatalf("dry run wrote: version %d -> %d", before, v)
	}

	res, err := c.Apply(ctx, []byte(doc), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.DryRun || res.Version <= before || !diffEqual(res.Diff, want) {
		t.Fatalf("apply: %+v", res)
	}
	fx.waitVersion(t, res.Version)
	for _, n := range fx.nodes {
		snap := n.Snapshot()
		if _, ok := snap.Model("gpt-4o"); !ok {
			t.Fatalf("%s lacks the applied model", n.ID())
		}
		if _, ok := snap.Authenticate("sk-team-a"); !ok {
			t.Fatalf("%s lacks the applied key", n.ID())
		}
	}
	entries, err := c.Audit(ctx, 1)
	if err != nil || len(entries) != 1 || entries[0].Op != "apply" || entries[0].Actor != adminName {
		t.Fatalf("audit after apply: %+v, %v", entries, err)
	}

	// Applying the same document again changes nothing, even though the
	// stored copy has defaults filled in.
	again, err := c.Apply(ctx, []byte(doc), true)
	if err != nil || !again.Diff.Empty() {
		t.Fatalf("re-apply diff: %+v, %v", again, err)
	}

	// JSON is YAML too; a changed deployment and a removed policy.
	changed := strings.Replace(doc, "tpm: 240000", "tpm: 300000", 1)
	changed = changed[:strings.Index(changed, "policies:")]
	dry, err = c.Apply(ctx, []byte(changed), true)
	if err != nil {
		t.Fatal(err)
	}
	want = admin.Diff{
		Deployments: admin.KindDiff{Changed: []string{"gpt4o-east"}},
		Policies:    admin.KindDiff{Removed: []string{"strict"}},
	}
	if !diffEqual(dry.Diff, want) {
		t.Fatalf("changed dry run: %+v", dry.Diff)
	}
	r := fx.call(t, w, "POST", "/admin/v1/apply?dry_run=true", adminToken,
		[]byte(`{"tenants":[{"name":"solo"}],"providers":[],"deployments":[],"models":[],"keys":[]}`))
	var jr admin.ApplyResult
	r.decode(t, &jr)
	if r.status != 200 || !slices.Equal(jr.Diff.Tenants.Added, []string{"solo"}) || len(jr.Diff.Keys.Removed) != 1 {
		t.Fatalf("JSON dry run: %d %s", r.status, r.body)
	}

	tests := []struct {
		name  string
		doc   string
		field string
	}{
		{"unknown field", "tenants:\n  - name: a\n    colour: red\n", "colour"},
		{"duplicate field", "tenants:\n  - name: a\n    name: b\n", ""},
		{"unknown deployment", "models:\n  - name: m\n    deployments: [nope]\n", "models[0].deployments[0]"},
		{"negative tpm", strings.Replace(doc, "tpm: 240000", "tpm: -1", 1), "deployments[0].tpm"},
		{"literal secret", "providers:\n  - name: p\n    kind: openai\n    endpoint: https://x.example.com\n    api_key: sk-oops-literal\n", "providers[0].api_key"},
		{"not YAML", "tenants: [\n", ""},
		{"wrong type", "tenants: 5\n", ""},
		{"masked secret without a stored one", "providers:\n  - name: p\n    kind: openai\n    endpoint: https://x.example.com\n    api_key: enc:****\n", "providers[0].api_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, dryRun := range []bool{true, false} {
				_, err := c.Apply(ctx, []byte(tc.doc), dryRun)
				e := asAPIError(t, err)
				if e.Status != http.StatusBadRequest || e.Code != admin.CodeInvalid {
					t.Fatalf("dry_run=%v: %v", dryRun, err)
				}
				if tc.field != "" && !strings.Contains(e.Message, tc.field) {
					t.Fatalf("dry_run=%v: %q does not name %s", dryRun, e.Message, tc.field)
				}
				if strings.Contains(e.Message, "sk-oops-literal") {
					t.Fatalf("the literal secret was echoed: %s", e.Message)
				}
			}
		})
	}
	if v := fx.nodes[w].Snapshot().Version; v != res.Version {
		t.Fatalf("a refused apply wrote: version %d -> %d", res.Version, v)
	}
	// The refused literal never reached the raft log, so no node logged it.
	if strings.Contains(string(fx.logs.Bytes()), "sk-oops-literal") {
		t.Fatal("a refused literal secret appears in the logs")
	}
}

func diffEqual(a, b admin.Diff) bool {
	eq := func(x, y admin.KindDiff) bool {
		return slices.Equal(x.Added, y.Added) && slices.Equal(x.Changed, y.Changed) && slices.Equal(x.Removed, y.Removed)
	}
	return eq(a.Providers, b.Providers) && eq(a.Deployments, b.Deployments) && eq(a.Models, b.Models) &&
		eq(a.Tenants, b.Tenants) && eq(a.Keys, b.Keys) && eq(a.Policies, b.Policies)
}
