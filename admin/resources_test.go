package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster/state"
)

// TestCRUD creates, reads, lists, updates and deletes one item of each
// kind. Writes go to a follower (forwarded to the leader); reads go to
// every node, consistently, and to the stale local snapshot once the
// version has reached it.
func TestCRUD(t *testing.T) {
	fx.reset(t, baseConfig())
	w := fx.follower(t)
	tests := []struct {
		kind, name     string
		create, update string
		field          string // a field the update changes
		before, after  any    // its value before and after, as JSON decodes it
	}{
		{"providers", "crud-prov",
			`{"name":"crud-prov","kind":"openai","endpoint":"https://api.example.com","api_key":"env:OPENAI_KEY"}`,
			`{"kind":"openai","endpoint":"https://api2.example.com","api_key":"env:OPENAI_KEY"}`,
			"endpoint", "https://api.example.com", "https://api2.example.com"},
		{"deployments", "crud-dep",
			`{"name":"crud-dep","provider":"base-prov","upstream":"gpt-4o-mini","tpm":1000}`,
			`{"provider":"base-prov","upstream":"gpt-4o-mini","tpm":2000}`,
			"tpm", 1000.0, 2000.0},
		{"models", "crud-model",
			`{"name":"crud-model","deployments":["base-dep"]}`,
			`{"deployments":["base-dep"],"default_max_tokens":2048}`,
			"default_max_tokens", 1024.0, 2048.0}, // 1024 is the default, applied on read
		{"tenants", "crud-tenant",
			`{"name":"crud-tenant","plan":"free"}`,
			`{"plan":"pro","class":"batch"}`,
			"plan", "free", "pro"},
		{"policies", "crud-policy",
			`{"name":"crud-policy","retry":{"max_attempts":2}}`,
			`{"limit_mode":"soft"}`,
			"limit_mode", "hard", "soft"},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			base := "/admin/v1/" + tc.kind
			r := fx.call(t, w, "POST", base, adminToken, []byte(tc.create))
			if r.status != http.StatusCreated {
				t.Fatalf("create: %d %s", r.status, r.body)
			}
			version, err := strconv.ParseUint(r.header.Get(admin.VersionHeader), 10, 64)
			if err != nil || version == 0 {
				t.Fatalf("create answered version %q", r.header.Get(admin.VersionHeader))
			}
			var created map[string]any
			r.decode(t, &created)
			if created["name"] != tc.name || created[tc.field] != tc.before {
				t.Fatalf("create answered %v", created)
			}
			if r := fx.call(t, w, "POST", base, adminToken, []byte(tc.create)); r.status != http.StatusConflict {
				t.Fatalf("second create: %d %s", r.status, r.body)
			}

			// A consistent read on every node sees the write at once.
			for i := range fx.nodes {
				r := fx.call(t, i, "GET", base+"/"+tc.name+"?consistent=true", readToken, nil)
				if r.status != 200 {
					t.Fatalf("node %d get: %d %s", i, r.status, r.body)
				}
				var got map[string]any
				r.decode(t, &got)
				if got[tc.field] != tc.before {
					t.Fatalf("node %d: %s = %v, want %v", i, tc.field, got[tc.field], tc.before)
				}
			}

			var page admin.Page
			r = fx.call(t, w, "GET", base, readToken, nil)
			r.decode(t, &page)
			if !slices.ContainsFunc(page.Items, func(raw json.RawMessage) bool { return contains(raw, `"`+tc.name+`"`) }) {
				t.Fatalf("list does not show %s: %s", tc.name, r.body)
			}

			r = fx.call(t, w, "PUT", base+"/"+tc.name, adminToken, []byte(tc.update))
			if r.status != http.StatusOK {
				t.Fatalf("update: %d %s", r.status, r.body)
			}
			var updated map[string]any
			r.decode(t, &updated)
			if updated[tc.field] != tc.after {
				t.Fatalf("update answered %s = %v, want %v", tc.field, updated[tc.field], tc.after)
			}
			v, _ := strconv.ParseUint(r.header.Get(admin.VersionHeader), 10, 64)
			fx.waitVersion(t, v)
			for i := range fx.nodes { // stale reads, now that every node has v
				var got map[string]any
				fx.call(t, i, "GET", base+"/"+tc.name, readToken, nil).decode(t, &got)
				if got[tc.field] != tc.after {
					t.Fatalf("node %d after update: %s = %v", i, tc.field, got[tc.field])
				}
			}

			if r := fx.call(t, w, "DELETE", base+"/"+tc.name, adminToken, nil); r.status != http.StatusNoContent {
				t.Fatalf("delete: %d %s", r.status, r.body)
			}
			for i := range fx.nodes {
				if r := fx.call(t, i, "GET", base+"/"+tc.name+"?consistent=true", readToken, nil); r.status != 404 {
					t.Fatalf("node %d get after delete: %d %s", i, r.status, r.body)
				}
			}
			if r := fx.call(t, w, "DELETE", base+"/"+tc.name, adminToken, nil); r.status != 404 {
				t.Fatalf("second delete: %d %s", r.status, r.body)
			}
		})
	}
}

// TestPutCreates checks PUT creates an item it does not find (201) and
// that a name with a slash travels escaped.
func TestPutCreates(t *testing.T) {
	fx.reset(t, baseConfig())
	c := fx.client(fx.follower(t), adminToken)
	ctx := context.Background()
	m := state.Model{Name: "openai/gpt-x", Deployments: []string{"base-dep"}}
	var got state.Model
	if err := c.Put(ctx, admin.KindModels, m.Name, m, &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != m.Name || got.Kind != state.ModelChat {
		t.Fatalf("put answered %+v", got)
	}
	got = state.Model{}
	if err := c.Get(ctx, admin.KindModels, m.Name, &got); err != nil || got.Name != m.Name {
		t.Fatalf("get %q: %+v, %v", m.Name, got, err)
	}
	if err := c.Create(ctx, admin.KindModels, m, nil); asAPIError(t, err).Status != http.StatusConflict {
		t.Fatalf("create existing: %v", err)
	}
	if err := c.Delete(ctx, admin.KindModels, m.Name); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, admin.KindModels, m.Name, &got); asAPIError(t, err).Status != http.StatusNotFound {
		t.Fatalf("get deleted: %v", err)
	}
}

func TestPagination(t *testing.T) {
	cfg := baseConfig()
	cfg.Tenants = nil
	for _, i := range []int{7, 3, 5, 1, 6, 2, 4} { // written out of order
		cfg.Tenants = append(cfg.Tenants, state.Tenant{Name: fmt.Sprintf("tenant-%02d", i)})
	}
	fx.reset(t, cfg)
	c := fx.client(2, readToken)
	ctx := context.Background()

	var names []string
	opt := admin.ListOptions{Limit: 3}
	pages := 0
	for {
		p, err := c.List(ctx, admin.KindTenants, opt)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Items) > 3 {
			t.Fatalf("page of %d items", len(p.Items))
		}
		for _, raw := range p.Items {
			var tn state.Tenant
			if err := json.Unmarshal(raw, &tn); err != nil {
				t.Fatal(err)
			}
			names = append(names, tn.Name)
		}
		if p.Next == "" {
			break
		}
		opt.After = p.Next
	}
	want := []string{"tenant-01", "tenant-02", "tenant-03", "tenant-04", "tenant-05", "tenant-06", "tenant-07"}
	if !slices.Equal(names, want) || pages != 3 {
		t.Fatalf("pages %d, names %v", pages, names)
	}
	all, err := admin.ListAll[state.Tenant](ctx, c, admin.KindTenants)
	if err != nil || len(all) != 7 {
		t.Fatalf("ListAll: %d, %v", len(all), err)
	}
	// after a name that is not there starts at the next one.
	p, err := c.List(ctx, admin.KindTenants, admin.ListOptions{After: "tenant-035", Limit: 2})
	if err != nil || len(p.Items) != 2 || !contains(p.Items[0], "tenant-04") || p.Next != "tenant-05" {
		t.Fatalf("after a missing name: %+v, %v", p, err)
	}
	p, err = c.List(ctx, admin.KindTenants, admin.ListOptions{After: "tenant-07"})
	if err != nil || len(p.Items) != 0 || p.Next != "" {
		t.Fatalf("after the last: %+v, %v", p, err)
	}
}

// TestAuditActor checks that writes carry the token's name and the time
// into the replicated audit log, on every node.
func TestAuditActor(t *testing.T) {
	fx.reset(t, baseConfig())
	start := time.Now().Add(-time.Second)
	r := fx.call(t, fx.follower(t), "PUT", "/admin/v1/tenants/audited", adminToken, []byte(`{}`))
	if r.status != http.StatusCreated {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	v, _ := strconv.ParseUint(r.header.Get(admin.VersionHeader), 10, 64)
	fx.waitVersion(t, v)
	for i := range fx.nodes {
		entries, err := fx.client(i, readToken).Audit(context.Background(), 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 || len(entries) > 5 {
			t.Fatalf("node %d: %d entries", i, len(entries))
		}
		last := entries[len(entries)-1]
		if last.Index != v || last.Actor != adminName || last.Kind != "tenant" || last.Name != "audited" ||
			last.Op != "upsert" || last.At.Before(start) {
			t.Fatalf("node %d: last audit entry %+v", i, last)
		}
	}
}
