package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster/state"
)

var keyRE = regexp.MustCompile(`^sk-sluice-[0-9A-Za-z]{32,}$`)

func TestKeys(t *testing.T) {
	fx.reset(t, baseConfig())
	ctx := context.Background()
	w := fx.follower(t)
	c := fx.client(w, adminToken)

	expires := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	created, err := c.CreateKey(ctx, admin.KeyRequest{
		Tenant: "base-tenant", Models: []string{"base-model"}, ExpiresAt: &expires,
		Limits: state.Limits{RPM: 60},
	})
	if err != nil {
		t.Fatal(err)
	}
	plaintext := created.Key
	if !keyRE.MatchString(plaintext) {
		t.Fatalf("generated key %q does not look like sk-sluice-<base62>", plaintext)
	}
	hash := state.HashKey(plaintext)
	if created.ID == "" || created.Tenant != "base-tenant" || created.Limits.RPM != 60 ||
		created.ExpiresAt == nil || !created.ExpiresAt.Equal(expires) ||
		!strings.HasPrefix(hash, strings.TrimPrefix(created.HashPrefix, "sha256:")) {
		t.Fatalf("create answered %+v", created.KeyInfo)
	}

	// The hash, and only the hash, reaches every node's snapshot.
	waitFor(t, 10*time.Second, "the key on every node", func() error {
		for _, n := range fx.nodes {
			snap := n.Snapshot()
			rk, ok := snap.Authenticate(plaintext)
			if !ok {
				return fmt.Errorf("%s does not authenticate the key", n.ID())
			}
			if rk.ID != created.ID || rk.Hash != hash || !rk.Allows("base-model") || rk.Allows("other") {
				return fmt.Errorf("%s has %+v", n.ID(), *rk.Key)
			}
		}
		return nil
	})

	// No read shows the plaintext (or the whole hash) again.
	var shown admin.KeyInfo
	for i := range fx.nodes {
		r := fx.call(t, i, "GET", "/admin/v1/keys/"+created.ID+"?consistent=true", readToken, nil)
		if r.status != 200 {
			t.Fatalf("get key: %d %s", r.status, r.body)
		}
		if contains(r.body, plaintext) || contains(r.body, hash) || contains(r.body, `"key"`) || contains(r.body, `"hash"`) {
			t.Fatalf("get shows the key or its hash: %s", r.body)
		}
		r.decode(t, &shown)
		r = fx.call(t, i, "GET", "/admin/v1/keys", readToken, nil)
		if contains(r.body, plaintext) || contains(r.body, hash) {
			t.Fatalf("list shows the key or its hash: %s", r.body)
		}
	}
	if shown.ID != created.ID || shown.HashPrefix != created.HashPrefix || shown.Disabled {
		t.Fatalf("get shows %+v", shown)
	}
	keys, err := c.ListKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != created.ID {
		t.Fatalf("ListKeys: %+v, %v", keys, err)
	}

	// Two keys never share a plaintext; an explicit ID is kept, and taken
	// only once.
	second, err := c.CreateKey(ctx, admin.KeyRequest{ID: "team-key", Tenant: "base-tenant"})
	if err != nil || second.ID != "team-key" || second.Key == plaintext {
		t.Fatalf("second key: %+v, %v", second, err)
	}
	_, err = c.CreateKey(ctx, admin.KeyRequest{ID: "team-key", Tenant: "base-tenant"})
	if e := asAPIError(t, err); e.Status != http.StatusConflict || e.Code != admin.CodeExists {
		t.Fatalf("duplicate id: %v", err)
	}

	// Update keeps the hash.
	var updated admin.KeyInfo
	if err := c.Put(ctx, admin.KindKeys, "team-key", admin.KeyRequest{Tenant: "base-tenant", Limits: state.Limits{TPM: 5000}}, &updated); err != nil {
		t.Fatal(err)
	}
	if updated.Limits.TPM != 5000 || updated.HashPrefix != second.HashPrefix {
		t.Fatalf("update answered %+v", updated)
	}
	if _, ok := fx.nodes[w].Snapshot().Authenticate(second.Key); !ok {
		t.Fatal("update lost the key's hash")
	}

	// Revoke disables the key everywhere.
	revoked, err := c.RevokeKey(ctx, created.ID)
	if err != nil || !revoked.Disabled {
		t.Fatalf("revoke: %+v, %v", revoked, err)
	}
	waitFor(t, 10*time.Second, "the key disabled on every node", func() error {
		for _, n := range fx.nodes {
			rk, ok := n.Snapshot().Authenticate(plaintext)
			if !ok || !rk.Disabled {
				return fmt.Errorf("%s: key present %v", n.ID(), ok)
			}
		}
		return nil
	})

	if err := c.Delete(ctx, admin.KindKeys, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := fx.nodes[w].Snapshot().Authenticate(plaintext); ok {
		t.Fatal("deleted key still authenticates")
	}
	if strings.Contains(string(fx.logs.Bytes()), plaintext) {
		t.Fatal("the plaintext key appears in the logs")
	}
}
