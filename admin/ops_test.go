package admin_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster/state"
)

func TestClusterEndpoints(t *testing.T) {
	fx.reset(t, baseConfig())
	ctx := context.Background()
	for i, n := range fx.nodes {
		c := fx.client(i, readToken)
		info, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status.ID != n.ID() || info.Status.Voters != 3 || len(info.Status.Servers) != 3 ||
			info.Status.LeaderID == "" || info.ConfigVersion == 0 || len(info.Members) != 3 {
			t.Fatalf("node %d status: %+v", i, info)
		}
		members, err := c.Members(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range members {
			if m.State != "alive" || m.GossipAddr == "" || m.ClusterAddr == "" {
				t.Fatalf("member %+v", m)
			}
			ids = append(ids, m.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"n1", "n2", "n3"}) {
			t.Fatalf("node %d members %v", i, ids)
		}
		if err := c.Health(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSnapshotBackupRestore(t *testing.T) {
	fx.reset(t, baseConfig())
	ctx := context.Background()
	w := fx.follower(t)
	c := fx.client(w, adminToken)

	var backup bytes.Buffer
	if err := c.Snapshot(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, admin.KindTenants, "after-backup", state.Tenant{}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := c.Restore(ctx, bytes.NewReader(backup.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	fx.waitVersion(t, res.Version)
	for _, n := range fx.nodes {
		snap := n.Snapshot()
		if _, ok := snap.Tenant("after-backup"); ok {
			t.Fatalf("%s still has the tenant written after the backup", n.ID())
		}
		if _, ok := snap.Tenant("base-tenant"); !ok {
			t.Fatalf("%s lacks the restored tenant", n.ID())
		}
	}
	entries, err := c.Audit(ctx, 1)
	if err != nil || len(entries) != 1 || entries[0].Actor != adminName || entries[0].Index != res.Version {
		t.Fatalf("audit after restore: %+v, %v", entries, err)
	}
	// The stale variant works too (backup without a leader).
	r := fx.call(t, w, "GET", "/admin/v1/snapshot?consistent=false", adminToken, nil)
	if r.status != 200 || r.header.Get("Content-Disposition") == "" {
		t.Fatalf("stale snapshot: %d", r.status)
	}

	_, err = c.Restore(ctx, bytes.NewReader([]byte("not a snapshot")))
	if e := asAPIError(t, err); e.Status != http.StatusBadRequest {
		t.Fatalf("restore garbage: %v", err)
	}
}

func TestDrain(t *testing.T) {
	before := fx.drains.Load()
	if err := fx.client(0, adminToken).Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fx.drains.Load() != before+1 {
		t.Fatal("the drainer was not called")
	}
	err := fx.client(1, adminToken).Drain(context.Background())
	if e := asAPIError(t, err); e.Status != http.StatusNotImplemented || e.Code != admin.CodeNotImplemented {
		t.Fatalf("drain without a drainer: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	_, err := fx.client(0, "wrong-token-wrong-token").Members(ctx)
	if e := asAPIError(t, err); e.Status != http.StatusUnauthorized || e.Code != admin.CodeUnauthorized || e.Message == "" {
		t.Fatalf("wrong token: %+v", e)
	}
	err = fx.client(0, readToken).Put(ctx, admin.KindTenants, "x", state.Tenant{}, nil)
	if e := asAPIError(t, err); e.Status != http.StatusForbidden {
		t.Fatalf("read token put: %v", err)
	}
	// A path the API does not have is a JSON 404 as well.
	c := &admin.Client{Addr: "http://" + fx.servers[0].Addr() + "/not-here", Token: adminToken, HTTP: fx.hc}
	_, err = c.Members(ctx)
	if e := asAPIError(t, err); e.Status != http.StatusNotFound || e.Code != admin.CodeNotFound {
		t.Fatalf("wrong base: %v", err)
	}
	// A non-API answer (a proxy's page) still becomes an *admin.Error.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer proxy.Close()
	c = &admin.Client{Addr: proxy.URL, Token: adminToken, HTTP: fx.hc}
	_, err = c.Status(ctx)
	if e := asAPIError(t, err); e.Status != http.StatusBadGateway || !strings.Contains(e.Message, "bad gateway") {
		t.Fatalf("proxy page: %+v", e)
	}
}
