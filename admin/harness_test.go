package admin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// The *cluster.Cluster the node wires in must satisfy Store.
var _ admin.Store = (*cluster.Cluster)(nil)

// The tests share one in-process cluster of three nodes on 127.0.0.1
// (ports from the kernel, data in a temporary directory, shortened
// timings, as in package cluster's harness) with an admin server on each
// node. Tests run one after another; each starts from a configuration it
// applies itself. TestMain stops everything and checks for leaked
// goroutines. Set SLUICE_TEST_LOG=1 to copy the captured logs to stderr.

// Tokens of the shared servers.
const (
	adminName  = "ops-admin"
	adminToken = "adm-0123456789abcdef-token"
	readName   = "viewer"
	readToken  = "read-0123456789abcdef-token"
)

var fx *fixture

type fixture struct {
	dir     string
	key     []byte // the cluster key
	logs    *syncBuffer
	nodes   []*cluster.Cluster
	servers []*admin.Server
	drains  atomic.Int64 // calls of node 0's drainer
	tr      *http.Transport
	hc      *http.Client
}

func TestMain(m *testing.M) {
	f, err := startFixture()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start test cluster:", err)
		if f != nil {
			f.stop()
		}
		os.Exit(1)
	}
	fx = f
	code := m.Run()
	f.stop()
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		_, _ = os.Stderr.Write(f.logs.Bytes())
	}
	if err := waitNoLeaks(5 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "goroutines leaked after shutdown:", err)
		code = 1
	}
	os.Exit(code)
}

// waitNoLeaks polls goleak: memberlist's Shutdown does not wait for an
// in-flight probe, which ends by itself within a probe interval.
func waitNoLeaks(timeout time.Duration, opts ...goleak.Option) error {
	opts = append(opts,
		// Started by a package init of go-metrics' default sink; shared by
		// the process, owned by no node.
		goleak.IgnoreTopFunction("github.com/hashicorp/go-metrics.(*InmemSignal).run"),
		goleak.IgnoreTopFunction("github.com/armon/go-metrics.(*InmemSignal).run"),
	)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

func nodeConfig(id, dir string, logger *slog.Logger) cluster.Config {
	cfg := cluster.DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dir + "/" + id
	cfg.ClusterName = "admin-test"
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.ClusterAddr = "127.0.0.1:0"
	cfg.BootstrapExpect = 3
	// Shortened where it speeds up forming the cluster; failure detection
	// and elections keep roomy timings, since these tests never kill a
	// node and must not see a spurious election on a loaded machine.
	cfg.PromoteAfter = 300 * time.Millisecond
	cfg.ReconcileInterval = 200 * time.Millisecond
	cfg.JoinRetryMax = 300 * time.Millisecond
	cfg.RPCTimeout = 2 * time.Second
	cfg.ApplyTimeout = 5 * time.Second
	cfg.LeaveTimeout = time.Second
	cfg.Gossip.GossipInterval = 50 * time.Millisecond
	cfg.Gossip.ProbeInterval = 500 * time.Millisecond
	cfg.Gossip.ProbeTimeout = 250 * time.Millisecond
	cfg.Raft.HeartbeatTimeout = time.Second
	cfg.Raft.ElectionTimeout = time.Second
	cfg.Raft.LeaderLeaseTimeout = 500 * time.Millisecond
	cfg.Raft.CommitTimeout = 10 * time.Millisecond
	cfg.Raft.WALSegmentSize = 1 << 20
	cfg.Logger = logger.With("test_node", id)
	return cfg
}

func startFixture() (*fixture, error) {
	dir, err := os.MkdirTemp("", "sluice-admin-test-")
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, key: make([]byte, 32), logs: &syncBuffer{}}
	_, _ = rand.Read(f.key)
	// Everything logs at debug level into one buffer, so the secret tests
	// can search all of it.
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.tr = &http.Transport{MaxIdleConnsPerHost: 8}
	f.hc = &http.Client{Transport: f.tr, Timeout: 20 * time.Second}

	ctx := context.Background()
	for i := range 3 {
		cfg := nodeConfig(fmt.Sprintf("n%d", i+1), dir, logger)
		for _, o := range f.nodes {
			cfg.Join = append(cfg.Join, o.GossipAddr())
		}
		c, err := cluster.New(cfg)
		if err != nil {
			return f, err
		}
		if err := c.Start(ctx); err != nil {
			return f, err
		}
		f.nodes = append(f.nodes, c)
	}
	if err := f.waitLeader(15 * time.Second); err != nil {
		return f, err
	}
	for i, c := range f.nodes {
		acfg := admin.Config{
			Addr: "127.0.0.1:0",
			Tokens: []admin.Token{
				{Name: adminName, Role: admin.RoleAdmin, Token: adminToken},
				{Name: readName, Role: admin.RoleRead, Token: readToken},
			},
			ClusterKey: f.key,
			Logger:     logger.With("admin_node", c.ID()),
		}
		if i == 0 {
			acfg.Drainer = admin.DrainFunc(func(context.Context) error { f.drains.Add(1); return nil })
		}
		s, err := admin.New(acfg, c)
		if err != nil {
			return f, err
		}
		if err := s.Start(); err != nil {
			return f, err
		}
		f.servers = append(f.servers, s)
	}
	return f, nil
}

// stop shuts down in the node's order: stop taking admin traffic, then
// leave the cluster.
func (f *fixture) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range f.servers {
		_ = s.Shutdown(ctx)
	}
	if f.tr != nil {
		f.tr.CloseIdleConnections()
	}
	for _, c := range f.nodes {
		_ = c.Shutdown(ctx)
	}
	_ = os.RemoveAll(f.dir)
}

func (f *fixture) waitLeader(timeout time.Duration) error {
	return poll(timeout, func() error {
		var id string
		leaders := 0
		for i, c := range f.nodes {
			st := c.Status()
			if st.LeaderID == "" {
				return fmt.Errorf("%s sees no leader", c.ID())
			}
			if i > 0 && st.LeaderID != id {
				return fmt.Errorf("nodes disagree on the leader")
			}
			id = st.LeaderID
			if st.RaftState == "Leader" {
				leaders++
			}
			if st.Voters != 3 {
				return fmt.Errorf("%s sees %d voters", c.ID(), st.Voters)
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders", leaders)
		}
		return nil
	})
}

// follower returns the index of a node that is not the leader: writes to
// its admin API are forwarded.
func (f *fixture) follower(t *testing.T) int {
	t.Helper()
	for i, c := range f.nodes {
		if !c.IsLeader() {
			return i
		}
	}
	t.Fatal("no follower")
	return -1
}

// reset replaces the whole configuration through the leader and waits
// until every node has it.
func (f *fixture) reset(t *testing.T, cfg state.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.nodes[0].Apply(ctx, &fsm.ApplyConfig{Header: fsm.Header{Actor: "test-reset"}, Config: cfg})
	if err != nil {
		t.Fatalf("reset configuration: %v", err)
	}
	f.waitVersion(t, res.Index)
}

func (f *fixture) waitVersion(t *testing.T, v uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("version %d on every node", v), func() error {
		for _, c := range f.nodes {
			if got := c.Snapshot().Version; got < v {
				return fmt.Errorf("%s at %d", c.ID(), got)
			}
		}
		return nil
	})
}

// client returns an admin.Client for node i.
func (f *fixture) client(i int, token string) *admin.Client {
	return &admin.Client{Addr: f.servers[i].Addr(), Token: token, HTTP: f.hc}
}

// response is one raw answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// apiError decodes the error envelope, failing the test if the body does
// not have the API's error shape.
func (r response) apiError(t *testing.T) admin.Error {
	t.Helper()
	var env struct {
		Error *admin.Error `json:"error"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Error == nil || env.Error.Message == "" || env.Error.Code == "" {
		t.Fatalf("status %d: body is not an API error: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error content type %q", ct)
	}
	return *env.Error
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// call sends one request to node i's admin server. Every answer is kept
// in the transcript, for the secret test.
func (f *fixture) call(t *testing.T, i int, method, path, token string, body []byte) response {
	t.Helper()
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	return f.callHeader(t, i, method, path, auth, body)
}

// callHeader is call with the whole Authorization header given.
func (f *fixture) callHeader(t *testing.T, i int, method, path, auth string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+f.servers[i].Addr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, path, err)
	}
	transcript.add(b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// transcript keeps every response body the tests saw.
var transcript syncBuffer

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
	}
}

func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) add(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.buf.WriteByte('\n')
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// baseConfig has one of each kind that the others can reference.
func baseConfig() state.Config {
	return state.Config{
		Providers:   []state.Provider{{Name: "base-prov", Kind: state.KindAzure, Endpoint: "https://az.example.com", APIKey: "env:AZ_KEY"}},
		Deployments: []state.Deployment{{Name: "base-dep", Provider: "base-prov", Upstream: "gpt-4o", TPM: 1000}},
		Models:      []state.Model{{Name: "base-model", Deployments: []string{"base-dep"}}},
		Tenants:     []state.Tenant{{Name: "base-tenant"}},
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func asAPIError(t *testing.T, err error) *admin.Error {
	t.Helper()
	var ae *admin.Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *admin.Error, got %T: %v", err, err)
	}
	return ae
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
