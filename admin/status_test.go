package admin_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster"
)

// TestDeploymentStatusUnavailable: a node started without a status source
// answers 501, not an empty list that would look like no deployments.
func TestDeploymentStatusUnavailable(t *testing.T) {
	r := fx.call(t, 0, http.MethodGet, "/admin/v1/deployments/status", readToken, nil)
	if r.status != http.StatusNotImplemented || r.apiError(t).Code != admin.CodeNotImplemented {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}

// TestDeploymentStatus: the endpoint shows this node's view from its
// source to a read token, refuses callers without one and bad parameters,
// and the client decodes it.
func TestDeploymentStatus(t *testing.T) {
	want := []admin.DeploymentState{
		{Name: "east-chat", Provider: "az-east", ProviderKind: "azure", Region: "eastus", TPM: 120000, RPM: 720,
			State: "cooling", Circuit: "closed", CoolingSeconds: 1.5, LatencyMS: 230, InFlight: 3,
			ShareRequests: 4, ShareTokens: 6000, UsedRequests: 1, UsedTokens: 900, RequestWindowSeconds: 1, TokenWindowSeconds: 10},
		{Name: "local-vllm", Provider: "vllm", ProviderKind: "openai-compatible", State: "healthy", Circuit: "closed",
			ShareRequests: -1, ShareTokens: -1, RequestWindowSeconds: 1, TokenWindowSeconds: 10},
	}
	var calls atomic.Int32
	cfg := admin.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Tokens = []admin.Token{{Name: readName, Role: admin.RoleRead, Token: readToken}}
	cfg.Deployments = admin.DeploymentStatusFunc(func() []admin.DeploymentState { calls.Add(1); return want })
	srv, err := admin.New(cfg, fx.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	c := &admin.Client{Addr: srv.Addr(), Token: readToken, HTTP: fx.hc}

	for _, all := range []bool{false, true} {
		got, err := c.DeploymentStatus(context.Background(), all)
		if err != nil {
			t.Fatal(err)
		}
		// Fixture members announce no admin address, so ?all=1 has no
		// peer to ask and answers this node alone.
		if len(got.Nodes) != 1 || got.Nodes[0].Node != fx.nodes[0].ID() || got.Nodes[0].Error != "" || got.Nodes[0].At.IsZero() {
			t.Fatalf("all=%v: %+v", all, got.Nodes)
		}
		if len(got.Nodes[0].Deployments) != len(want) {
			t.Fatalf("deployments %+v", got.Nodes[0].Deployments)
		}
		for i := range want {
			if got.Nodes[0].Deployments[i] != want[i] {
				t.Fatalf("deployment %d: %+v, want %+v", i, got.Nodes[0].Deployments[i], want[i])
			}
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("source called %d times, want 2", n)
	}

	anon := &admin.Client{Addr: srv.Addr(), HTTP: fx.hc}
	if _, err := anon.DeploymentStatus(context.Background(), false); asAPIError(t, err).Status != http.StatusUnauthorized {
		t.Fatalf("without a token: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.Addr()+"/admin/v1/deployments/status?all=maybe", nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := fx.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("?all=maybe: status %d", resp.StatusCode)
	}
}

// membersStore is a Store whose membership is given by the test.
type membersStore struct {
	admin.Store
	members []cluster.Member
}

func (s membersStore) Members() []cluster.Member { return s.members }

func startStatusServer(t *testing.T, store admin.Store, deps []admin.DeploymentState) *admin.Server {
	t.Helper()
	cfg := admin.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Tokens = []admin.Token{{Name: readName, Role: admin.RoleRead, Token: readToken}}
	cfg.Deployments = admin.DeploymentStatusFunc(func() []admin.DeploymentState { return deps })
	srv, err := admin.New(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// TestDeploymentStatusAllNodes: ?all=1 asks every other live member with
// an admin address, with the caller's token, lists a peer that cannot
// answer with its error, and skips dead members and members without an
// admin address.
func TestDeploymentStatusAllNodes(t *testing.T) {
	peer := startStatusServer(t, fx.nodes[1], []admin.DeploymentState{{Name: "peer-dep", State: "cooling"}})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there any more
	self := fx.nodes[0].ID()
	store := membersStore{Store: fx.nodes[0], members: []cluster.Member{
		{NodeMeta: cluster.NodeMeta{ID: self, AdminAddr: "127.0.0.1:1"}, State: cluster.StateAlive},
		{NodeMeta: cluster.NodeMeta{ID: "p-a-peer", AdminAddr: peer.Addr()}, State: cluster.StateAlive},
		{NodeMeta: cluster.NodeMeta{ID: "p-b-unreachable", AdminAddr: deadAddr}, State: cluster.StateAlive},
		{NodeMeta: cluster.NodeMeta{ID: "p-c-dead", AdminAddr: peer.Addr()}, State: cluster.StateDead},
		{NodeMeta: cluster.NodeMeta{ID: "p-d-no-admin"}, State: cluster.StateAlive},
	}}
	srv := startStatusServer(t, store, []admin.DeploymentState{{Name: "local-dep", State: "healthy"}})

	got, err := (&admin.Client{Addr: srv.Addr(), Token: readToken, HTTP: fx.hc}).DeploymentStatus(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != 3 {
		t.Fatalf("want this node, the peer and the unreachable one: %+v", got.Nodes)
	}
	if n := got.Nodes[0]; n.Node != self || len(n.Deployments) != 1 || n.Deployments[0].Name != "local-dep" {
		t.Fatalf("first entry is not this node: %+v", n)
	}
	if n := got.Nodes[1]; n.Node != fx.nodes[1].ID() || n.Error != "" || len(n.Deployments) != 1 || n.Deployments[0].Name != "peer-dep" {
		t.Fatalf("peer entry: %+v", n)
	}
	if n := got.Nodes[2]; n.Node != "p-b-unreachable" || n.Error == "" || len(n.Deployments) != 0 {
		t.Fatalf("unreachable peer entry: %+v", n)
	} else if strings.Contains(n.Error, readToken) {
		t.Fatalf("the peer error shows the token: %s", n.Error)
	}
}
