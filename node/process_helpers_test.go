package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/chaos/suite"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/state"
)

// This file runs real `sluice agent` processes on loopback: the binary is
// built once per test binary run, every process is SIGKILLed in
// t.Cleanup, and each one's output goes to a file whose tail is logged
// when the test fails.

// procToken is the admin token every process of a test accepts.
const procToken = "process-test-admin-token"

// sluiceBin is the binary built for this run of the test binary.
var sluiceBin struct {
	once sync.Once
	path string
	err  error
}

// sluiceBinary builds node/cmd/sluice once per test binary run (CGO off,
// no race detector: the processes are under test, not instrumented) and
// returns its path. The package's TestMain removes the build directory.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	sluiceBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-process-test-")
		if err != nil {
			sluiceBin.err = err
			return
		}
		path := filepath.Join(dir, "sluice")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "github.com/sluicehq/sluice/node/cmd/sluice")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			sluiceBin.err = fmt.Errorf("go build sluice: %w\n%s", err, out)
			_ = os.RemoveAll(dir)
			return
		}
		sluiceBin.path = path
	})
	if sluiceBin.err != nil {
		t.Fatal(sluiceBin.err)
	}
	return sluiceBin.path
}

// procCluster is a set of sluice processes on 127.0.0.1 for one test.
type procCluster struct {
	t     *testing.T
	bin   string
	nodes []*procNode
	ports map[int]bool // handed out in this test, so none is given twice
	tr    *http.Transport
}

// procNode is one node: its fixed addresses and data directory survive a
// kill, so it can be restarted as the same member.
type procNode struct {
	id       string
	dataDir  string
	gossip   string
	raftAddr string // -cluster-addr: raft and forwarding
	admin    string
	api      string // -listen; empty picks a free port at each start
	netns    string // run inside this network namespace (ip netns exec)
	join     []string
	expect   int
	logPath  string
	client   *admin.Client

	cmd    *exec.Cmd     // nil before the first start
	exited chan struct{} // closed when cmd has been reaped
	up     bool          // started and not killed by the test
	starts int
}

func newProcCluster(t *testing.T) *procCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs sluice processes; skipped with -short")
	}
	c := &procCluster{t: t, bin: sluiceBinary(t), ports: map[int]bool{}, tr: &http.Transport{MaxIdleConnsPerHost: 8}}
	// Registered first, so it runs after every node's cleanup has killed
	// its process: no keep-alive connection or its goroutines remain.
	t.Cleanup(c.tr.CloseIdleConnections)
	return c
}

// freeAddr returns a 127.0.0.1 port that was free for TCP and UDP (gossip
// binds both) a moment ago.
func (c *procCluster) freeAddr() string {
	c.t.Helper()
	return c.freeAddrOn("127.0.0.1")
}

// freeAddrOn returns a port of host (an address of this network
// namespace) that was free for TCP and UDP a moment ago.
func (c *procCluster) freeAddrOn(host string) string {
	c.t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			c.t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, uerr := net.ListenPacket("udp", l.Addr().String())
		_ = l.Close()
		if uerr != nil {
			continue
		}
		_ = u.Close()
		if c.ports[port] {
			continue
		}
		c.ports[port] = true
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	c.t.Fatalf("no free port for TCP and UDP on %s", host)
	return ""
}

// addNode declares a node with fresh addresses; start runs it.
func (c *procCluster) addNode(id string, expect int) *procNode {
	c.t.Helper()
	// The log goes to the artifact directory: a temporary directory like
	// t.TempDir, kept when the test runs with -artifacts.
	n := &procNode{
		id: id, dataDir: c.t.TempDir(), logPath: filepath.Join(c.t.ArtifactDir(), id+".log"),
		gossip: c.freeAddr(), raftAddr: c.freeAddr(), admin: c.freeAddr(), expect: expect,
	}
	n.client = &admin.Client{Addr: n.admin, Token: procToken, HTTP: &http.Client{Transport: c.tr}}
	c.nodes = append(c.nodes, n)
	c.t.Cleanup(func() {
		c.kill(n)
		if c.t.Failed() {
			c.t.Logf("--- %s: end of %s (kept with -artifacts), per-request lines left out ---\n%s", n.id, n.logPath, suite.Tail(n.logPath, 40))
		}
	})
	return n
}

// bootstrap declares and starts ids as a new cluster: each expects them
// all and joins the others' gossip addresses.
func (c *procCluster) bootstrap(ids ...string) []*procNode {
	c.t.Helper()
	ns := make([]*procNode, len(ids))
	for i, id := range ids {
		ns[i] = c.addNode(id, len(ids))
	}
	for i, n := range ns {
		for j, m := range ns {
			if i != j {
				n.join = append(n.join, m.gossip)
			}
		}
	}
	for _, n := range ns {
		c.start(n)
	}
	return ns
}

// start runs n's process (again, after a kill: same data directory and
// addresses). Its output is appended to n.logPath.
func (c *procCluster) start(n *procNode) {
	c.t.Helper()
	if c.running(n) {
		c.t.Fatalf("%s is already running", n.id)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	n.starts++
	fmt.Fprintf(logf, "=== start %d of %s ===\n", n.starts, n.id)
	listen := n.api
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"agent",
		"-node-id", n.id, "-data-dir", n.dataDir, "-listen", listen,
		"-admin-listen", n.admin, "-gossip-addr", n.gossip, "-cluster-addr", n.raftAddr,
	}
	if len(n.join) > 0 {
		args = append(args, "-join", strings.Join(n.join, ","))
	}
	if n.expect > 0 {
		args = append(args, "-bootstrap-expect", strconv.Itoa(n.expect))
	}
	cmd := exec.Command(c.bin, args...)
	if n.netns != "" {
		// ip netns exec replaces itself with the agent: same process.
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.netns, c.bin}, args...)...)
	}
	cmd.Env = append(suite.HermeticEnv(), admin.TokensEnv+"=test:admin:"+procToken)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		c.t.Fatalf("start %s: %v", n.id, err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = cmd.Wait()
		_ = logf.Close()
	}()
	n.cmd, n.exited, n.up = cmd, exited, true
}

// running reports whether n's process has been started and not reaped.
func (c *procCluster) running(n *procNode) bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to n's process, if it runs, and waits until it is
// reaped.
func (c *procCluster) kill(n *procNode) {
	c.t.Helper()
	n.up = false
	if !c.running(n) {
		return
	}
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.t.Errorf("kill %s: %v", n.id, err)
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		c.t.Errorf("%s (pid %d) not reaped 10s after SIGKILL", n.id, n.cmd.Process.Pid)
	}
}

// eventually polls cond until it returns nil; after d it fails the test
// with cond's last error. A node that should run and has exited fails the
// test at once.
func (c *procCluster) eventually(d time.Duration, what string, cond func() error) {
	c.t.Helper()
	if err := c.poll(d, 20*time.Millisecond, cond); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
}

// poll is eventually that returns the error instead of failing.
func (c *procCluster) poll(d, every time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for _, n := range c.nodes {
			if n.up && !c.running(n) {
				// Reaped: reading ProcessState is ordered after Wait.
				return fmt.Errorf("%s exited unexpectedly (%v); its log ends:\n%s", n.id, n.cmd.ProcessState, suite.Tail(n.logPath, 20))
			}
		}
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %v: %w", d, err)
		}
		<-tick.C
	}
}

// call runs f with a context bounded by d.
func call[T any](d time.Duration, f func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

// status returns n's raft status.
func (n *procNode) status() (cluster.Status, error) {
	info, err := call(time.Second, n.client.Status)
	if err != nil {
		return cluster.Status{}, fmt.Errorf("%s: status: %w", n.id, err)
	}
	return info.Status, nil
}

// sameLeader checks that every node in ns names the same leader, not one
// of exclude, and returns it.
func sameLeader(ns []*procNode, exclude ...string) (string, error) {
	leader := ""
	for _, n := range ns {
		st, err := n.status()
		if err != nil {
			return "", err
		}
		switch {
		case st.LeaderID == "":
			return "", fmt.Errorf("%s knows no leader (%s, term %d)", n.id, st.RaftState, st.Term)
		case leader != "" && st.LeaderID != leader:
			return "", fmt.Errorf("leaders differ: %s and %s", leader, st.LeaderID)
		}
		for _, x := range exclude {
			if st.LeaderID == x {
				return "", fmt.Errorf("%s still names %s as leader", n.id, x)
			}
		}
		leader = st.LeaderID
	}
	return leader, nil
}

// allAlive checks that every node in ns sees exactly the members ids, all
// alive.
func allAlive(ns []*procNode, ids []string) error {
	for _, n := range ns {
		ms, err := call(time.Second, n.client.Members)
		if err != nil {
			return fmt.Errorf("%s: members: %w", n.id, err)
		}
		alive := map[string]bool{}
		for _, m := range ms {
			if m.State == string(cluster.StateAlive) {
				alive[m.ID] = true
			}
		}
		for _, id := range ids {
			if !alive[id] {
				return fmt.Errorf("%s does not see %s alive (members %+v)", n.id, id, ms)
			}
		}
		if len(ms) != len(ids) {
			return fmt.Errorf("%s sees %d members, want %d: %+v", n.id, len(ms), len(ids), ms)
		}
	}
	return nil
}

// nodeIDs returns the IDs of ns.
func nodeIDs(ns []*procNode) []string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.id
	}
	return ids
}

// startServing joins every node of ns to every other, starts them with
// keyEnv=key in their environment, waits for a leader, applies a
// configuration of one deployment "east" (rpm and tpm; 0 unlimited) at
// endpoint, serving model gpt-4o-mini to key sk-chaos of tenant t, and
// waits until every node answers a chat. It returns the leader's id.
func (c *procCluster) startServing(ns []*procNode, endpoint, keyEnv, key string, rpm, tpm int64) string {
	c.t.Helper()
	for i, n := range ns {
		for j, m := range ns {
			if i != j {
				n.join = append(n.join, m.gossip)
			}
		}
	}
	c.t.Setenv(keyEnv, key)
	for _, n := range ns {
		c.start(n)
	}
	leader := ""
	c.eventually(30*time.Second, "a leader", func() (err error) { leader, err = sameLeader(ns); return err })
	cfg := state.Config{
		Providers:   []state.Provider{{Name: "az", Kind: state.KindAzure, Endpoint: endpoint, APIKey: "env:" + keyEnv}},
		Deployments: []state.Deployment{{Name: "east", Provider: "az", Upstream: "gpt-4o-mini", RPM: rpm, TPM: tpm}},
		Models:      []state.Model{{Name: "gpt-4o-mini", Deployments: []string{"east"}}},
		Tenants:     []state.Tenant{{Name: "t"}},
		Keys:        []state.Key{{ID: "k1", Hash: state.HashKey("sk-chaos"), Tenant: "t"}},
	}
	doc, _ := json.Marshal(cfg)
	c.eventually(20*time.Second, "the configuration applied", func() error {
		_, err := call(5*time.Second, func(ctx context.Context) (any, error) { return ns[0].client.Apply(ctx, doc, false) })
		return err
	})
	c.eventually(20*time.Second, "every node to serve", func() error {
		for _, n := range ns {
			if code := chatOnce(n.api); code != 200 {
				return fmt.Errorf("%s answered %d", n.id, code)
			}
		}
		return nil
	})
	return leader
}

// mockUpstream serves a mock Azure region "eastus" with one deployment
// gpt-4o-mini (rpm and tpm; 0 unlimited) for api key key, until the test
// ends.
func mockUpstream(t *testing.T, key string, rpm, tpm int64) (*mock.Region, *httptest.Server) {
	t.Helper()
	region, err := mock.NewRegion(mock.RegionConfig{Name: "eastus", APIKey: key,
		Deployments: []mock.DeploymentConfig{{Name: "gpt-4o-mini", RPM: rpm, TPM: tpm}}})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(region)
	t.Cleanup(func() {
		up.Close()
		_ = region.Close()
	})
	return region, up
}
