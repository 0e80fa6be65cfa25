package cluster

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

func TestConfigValidation(t *testing.T) {
	base := func() Config { return Config{DataDir: t.TempDir()} }
	cases := map[string]func(*Config){
		"no data dir":         func(c *Config) { c.DataDir = "" },
		"bad node id":         func(c *Config) { c.NodeID = "a b" },
		"bad gossip addr":     func(c *Config) { c.GossipAddr = "nohostport" },
		"bad key":             func(c *Config) { c.GossipKey = []byte("123") },
		"negative expect":     func(c *Config) { c.BootstrapExpect = -1 },
		"expect > voters":     func(c *Config) { c.BootstrapExpect = 7 },
		"election < hb":       func(c *Config) { c.Raft.ElectionTimeout = time.Millisecond },
		"lease > hb":          func(c *Config) { c.Raft.LeaderLeaseTimeout = time.Hour },
		"probe timeout > int": func(c *Config) { c.Gossip.ProbeTimeout = time.Hour },
	}
	for name, mod := range cases {
		cfg := base()
		mod(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	c, err := New(base())
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.DeadCleanup != 30*time.Second || c.cfg.MaxVoters != 5 || c.cfg.Gossip.ProbeInterval != 200*time.Millisecond {
		t.Errorf("defaults not applied: %+v", c.cfg)
	}
}

func TestNodeIDPersists(t *testing.T) {
	dir := t.TempDir()
	id, err := loadOrCreateNodeID(dir, "")
	if err != nil || len(id) != 32 {
		t.Fatalf("generated id %q, %v", id, err)
	}
	again, err := loadOrCreateNodeID(dir, "")
	if err != nil || again != id {
		t.Fatalf("second load %q, %v", again, err)
	}
	if _, err := loadOrCreateNodeID(dir, "other"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("explicit ID over a kept one: %v", err)
	}
}

// TestStartFailureReleasesEverything: Start fails after the stores are
// open (the cluster port is taken); nothing leaks and the data directory
// can be used again at once.
func TestStartFailureReleasesEverything(t *testing.T) {
	defer verifyNoLeaks(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := testConfig("n1", dir, "start-failure")
	cfg.ClusterAddr = busy.Addr().String()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded on a busy port")
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after failed Start: %v", err)
	}
	if _, err := c.Apply(context.Background(), applySample()); !errors.Is(err, ErrShutdown) {
		t.Errorf("Apply after failed Start: %v", err)
	}

	// Gossip port taken: fails later in Start, after raft is running.
	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	cfg = testConfig("n1", dir, "start-failure")
	cfg.GossipAddr = busyUDP.LocalAddr().String()
	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "gossip") {
		t.Fatalf("Start with a busy gossip port: %v", err)
	}

	// The stores were closed: the same directory opens again.
	cfg = testConfig("n1", dir, "start-failure")
	cfg.BootstrapExpect = 1
	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	waitFor(t, 5*time.Second, "single node leader", func() error {
		if !c.IsLeader() {
			return errors.New("not leader")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "wal")); err != nil {
		t.Errorf("raft log directory: %v", err)
	}
}

// TestClusterPortProtocols: unknown protocol bytes are dropped; a bad RPC
// request gets an error, not a crash; a follower's RPC refuses an apply
// only the leader may serve and the caller retries elsewhere.
func TestClusterPortProtocols(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2", "n3")
	leader := tc.waitLeader(10 * time.Second)
	var follower *testNode
	for _, n := range tc.running() {
		if n != leader {
			follower = n
		}
	}

	conn, err := net.Dial("tcp", leader.c.ClusterAddr())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := bufio.NewReader(conn).ReadByte(); err == nil {
		t.Error("unknown protocol got an answer")
	}
	conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = follower.c.call(ctx, leader.c.ClusterAddr(), opApply, applyRequest{Cmd: []byte{60, '{', '}'}}, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown command through RPC: %v", err)
	}
	err = leader.c.call(ctx, follower.c.ClusterAddr(), opApply, applyRequest{Cmd: mustEncode(t, applySample())}, nil)
	if !errors.Is(err, ErrNotLeader) {
		t.Errorf("apply on a follower's RPC: %v", err)
	}
	err = leader.c.call(ctx, follower.c.ClusterAddr(), "bogus", struct{}{}, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown op: %v", err)
	}
	var st statusResponse
	if err := leader.c.call(ctx, follower.c.ClusterAddr(), opStatus, struct{}{}, &st); err != nil || !st.HasState || st.LeaderID != leader.id {
		t.Errorf("status: %+v, %v", st, err)
	}
	// A dead address fails as not sent (safe to retry).
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	if err := leader.c.call(ctx, addr, opStatus, struct{}{}, nil); !errors.Is(err, errNotSent) {
		t.Errorf("call to a closed port: %v", err)
	}
}

func mustEncode(t *testing.T, cmd fsm.Command) []byte {
	t.Helper()
	b, err := fsm.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWireErrors(t *testing.T) {
	verr := &state.ValidationError{Fields: []*state.FieldError{{Field: "deployments[0].tpm", Msg: "must not be negative"}}}
	for _, err := range []error{ErrNotLeader, ErrNoLeader, ErrTimeout, ErrLeadershipLost, ErrShutdown, ErrQuorum,
		ErrMemberAlive, ErrUnknownMember, ErrNotFound, ErrExists, ErrConflict, ErrInvalid} {
		got := fromWire(toWire(wrap(err)))
		if !errors.Is(got, err) || got.Error() != wrap(err).Error() {
			t.Errorf("%v: round trip gives %v", err, got)
		}
	}
	got := fromWire(toWire(wrap(verr)))
	var ve *state.ValidationError
	if !errors.Is(got, ErrInvalid) || !errors.As(got, &ve) || ve.Fields[0].Field != "deployments[0].tpm" {
		t.Errorf("validation error round trip: %v", got)
	}
	if got := fromWire(toWire(errors.New("boom"))); got.Error() != "boom" || errors.Is(got, ErrInvalid) {
		t.Errorf("plain error: %v", got)
	}
	if fromWire(nil) != nil || toWire(nil) != nil {
		t.Error("nil errors")
	}
}

func wrap(err error) error { return errors.Join(errors.New("context"), err) }
