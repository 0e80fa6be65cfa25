package cluster

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMetaRoundTrip(t *testing.T) {
	m := NodeMeta{ID: "n1", Name: "gw-1", ClusterAddr: "10.0.0.1:7947", APIAddr: "10.0.0.1:8080",
		AdminAddr: "10.0.0.1:8081", Region: "eu", Zone: "eu-1a", Version: "1.2.3", BootstrapExpect: 3}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"empty":      nil,
		"format":     append([]byte{9}, b[1:]...),
		"json":       {metaFormat, '{'},
		"no cluster": append([]byte{metaFormat}, `{"id":"x"}`...),
		"no id":      append([]byte{metaFormat}, `{"c":"h:1"}`...),
	} {
		if _, err := decodeMeta(bad); !errors.Is(err, errMeta) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	m.Version = strings.Repeat("x", 600)
	if _, err := encodeMeta(m); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("oversized meta: %v", err)
	}
}

func TestResolveJoin(t *testing.T) {
	c, err := New(Config{DataDir: t.TempDir(), Logger: testLogger(), lookupHost: func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "peers.sluice.test":
			return []string{"10.0.0.2", "10.0.0.1", "10.0.0.3"}, nil
		}
		return nil, errors.New("no such host")
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.resolveJoin(context.Background(), []string{"peers.sluice.test:7000", "peers.sluice.test", "10.0.0.9:1", "nowhere.test:1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:7000", "10.0.0.1:7946", "10.0.0.2:7000", "10.0.0.2:7946", "10.0.0.3:7000", "10.0.0.3:7946", "10.0.0.9:1"}
	if !slices.Equal(got, want) {
		t.Errorf("resolved %v\nwant %v", got, want)
	}
	if _, err := c.resolveJoin(context.Background(), []string{"nowhere.test"}); err == nil {
		t.Error("nothing resolvable, no error")
	}
}

// TestJoinByDNSName joins through a name that resolves to the address of
// a running node, with the port from the join entry.
func TestJoinByDNSName(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.BootstrapExpect = 0 })
	n1 := tc.startNodes("n1")[0]
	_, port, _ := net.SplitHostPort(n1.c.GossipAddr())
	n2 := tc.newNode("n2", func(c *Config) {
		c.Join = []string{"peers.sluice.test:" + port}
		c.lookupHost = func(_ context.Context, host string) ([]string, error) {
			if host == "peers.sluice.test" {
				return []string{"127.0.0.1"}, nil
			}
			return nil, errors.New("no such host")
		}
	})
	tc.start(n2)
	tc.waitMembers(5*time.Second, StateAlive, "n1", "n2")
}

// TestJoinRetriesUntilPeerStarts: the join target is not listening yet;
// the join loop keeps trying until it is.
func TestJoinRetriesUntilPeerStarts(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.BootstrapExpect = 0 })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	early := tc.newNode("early", func(c *Config) { c.Join = []string{addr} })
	tc.start(early)
	late := tc.newNode("late", func(c *Config) { c.GossipAddr = addr; c.Join = []string{} })
	waitFor(t, 2*time.Second, "a few failed join attempts", func() error {
		if len(early.c.Members()) != 1 {
			return errors.New("joined a node that does not exist")
		}
		return nil
	})
	tc.start(late)
	tc.waitMembers(5*time.Second, StateAlive, "early", "late")
}

func TestGossipEncryption(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	tc := newTestCluster(t, func(c *Config) { c.BootstrapExpect = 0; c.GossipKey = key })
	tc.startNodes("n1", "n2")
	tc.waitMembers(5*time.Second, StateAlive, "n1", "n2")

	for name, k := range map[string][]byte{"no key": nil, "other key": bytes.Repeat([]byte{8}, 16)} {
		n := tc.newNode("x-"+strings.ReplaceAll(name, " ", "-"), func(c *Config) { c.GossipKey = k; c.Join = []string{} })
		tc.start(n)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if got, err := n.c.Join(ctx, []string{tc.node("n1").c.GossipAddr()}); err == nil || got != 0 {
			t.Errorf("%s: joined an encrypted cluster (%d, %v)", name, got, err)
		}
		cancel()
		for _, m := range tc.node("n1").c.Members() {
			if m.ID == n.id {
				t.Errorf("%s: n1 lists %s", name, n.id)
			}
		}
		tc.stop(n)
	}
	if _, err := New(Config{DataDir: t.TempDir(), GossipKey: []byte("short")}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("5-byte key accepted: %v", err)
	}
	if k, err := DecodeGossipKey("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="); err != nil || !bytes.Equal(k, key) {
		t.Errorf("DecodeGossipKey: %v", err)
	}
	if _, err := DecodeGossipKey("c2hvcnQ="); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("short decoded key: %v", err)
	}
}

func TestGossipMessages(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.BootstrapExpect = 0 })
	nodes := tc.startNodes("n1", "n2", "n3")
	tc.waitMembers(5*time.Second, StateAlive, "n1", "n2", "n3")

	type msg struct{ to, from, payload string }
	var mu sync.Mutex
	var got []msg
	for _, n := range nodes {
		for _, typ := range []byte{20, 21} {
			n.c.RegisterHandler(typ, func(from string, p []byte) {
				mu.Lock()
				got = append(got, msg{n.id, from, string([]byte{typ}) + string(p)})
				mu.Unlock()
			})
		}
	}
	has := func(want msg) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if slices.Contains(got, want) {
				return nil
			}
			return errors.New("not received")
		}
	}
	if err := nodes[0].c.Broadcast(20, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"n2", "n3"} {
		waitFor(t, 5*time.Second, "broadcast at "+to, has(msg{to, "n1", "\x14hello"}))
	}
	if err := nodes[1].c.SendTo("n3", 21, bytes.Repeat([]byte("z"), 5000)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "direct message", has(msg{"n3", "n2", "\x15" + strings.Repeat("z", 5000)}))

	// A newer keyed broadcast replaces a queued older one.
	for i := range 5 {
		if err := nodes[2].c.BroadcastLatest(20, "deployment-x", []byte{'v', byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "latest keyed broadcast", has(msg{"n1", "n3", "\x14v4"}))

	if err := nodes[0].c.Broadcast(20, make([]byte, MaxBroadcastSize+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("oversized broadcast: %v", err)
	}
	if err := nodes[0].c.SendTo("ghost", 20, nil); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("send to unknown node: %v", err)
	}
	mustPanic(t, func() { nodes[0].c.RegisterHandler(20, func(string, []byte) {}) })
	mustPanic(t, func() { nodes[0].c.RegisterHandler(3, func(string, []byte) {}) })
	// Malformed frames and types without a handler are dropped.
	nodes[0].c.handleMessage([]byte{20})
	nodes[0].c.handleMessage([]byte{20, 9, 'x'})
	nodes[0].c.handleMessage(nodes[0].c.encodeMessage(99, []byte("nobody")))
}

func mustPanic(t *testing.T, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Error("did not panic")
		}
	}()
	fn()
}

// TestMembersShowLeftAndDead: a graceful stop shows as left, a hard stop
// as dead, on every other node; a restart shows alive again.
func TestMembersShowLeftAndDead(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.BootstrapExpect = 0 })
	tc.startNodes("n1", "n2", "n3", "n4")
	tc.waitMembers(5*time.Second, StateAlive, "n1", "n2", "n3", "n4")
	tc.stop(tc.node("n3"))
	tc.kill(tc.node("n4"))
	tc.waitMembers(5*time.Second, StateLeft, "n3")
	tc.waitMembers(5*time.Second, StateDead, "n4")
	tc.restart(tc.node("n4"))
	tc.waitMembers(5*time.Second, StateAlive, "n4")
}
