package suite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/admin"
)

// Errors of the process layer.
var (
	// ErrNotRunning: the node's process is not running.
	ErrNotRunning = errors.New("node not running")
	// ErrRunning: the node's process already runs.
	ErrRunning = errors.New("node already running")
	// ErrNoLeader: the nodes asked do not agree on a leader.
	ErrNoLeader = errors.New("no agreed leader")
)

// ClusterConfig configures a Cluster.
type ClusterConfig struct {
	// Bin is the path of the sluice binary. Required.
	Bin string
	// Dir holds every node's data directory and log. Required.
	Dir string
	// AdminToken is the admin token every node accepts (role admin).
	// Default: a fixed development token.
	AdminToken string
	// Env is added to every process's environment (after SLUICE_ variables
	// of this process are removed, so a developer's settings cannot leak in).
	Env []string
	// DrainTimeout is passed as -drain-timeout (default 5s, so a SIGTERM
	// in a rolling restart ends quickly).
	DrainTimeout time.Duration
	// Logger receives lifecycle events (default: discard).
	Logger *slog.Logger
}

// DefaultAdminToken is the admin token used when ClusterConfig.AdminToken
// is empty. It only ever guards processes on loopback or a private
// namespace that live for one run.
const DefaultAdminToken = "chaos-suite-admin-token-0000"

func (c *ClusterConfig) setDefaults() error {
	if c.Bin == "" || c.Dir == "" {
		return errors.New("cluster config: Bin and Dir are required")
	}
	if c.AdminToken == "" {
		c.AdminToken = DefaultAdminToken
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Node is one sluice agent. Its addresses and data directory survive a
// kill, so a restart brings back the same member.
type Node struct {
	ID      string
	DataDir string
	Gossip  string // -gossip-addr
	Raft    string // -cluster-addr: raft and forwarding
	Admin   string // -admin-listen
	API     string // -listen: the OpenAI API
	Netns   string // run inside this network namespace, if set
	LogPath string
	Join    []string
	Expect  int
	// Client calls the node's admin API with the cluster's token.
	Client *admin.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	starts int
}

// Cluster is a set of sluice agent processes. Every method is safe for
// concurrent use; Close kills every process and is idempotent.
type Cluster struct {
	cfg   ClusterConfig
	http  *http.Client
	mu    sync.Mutex
	nodes []*Node
	ports map[string]bool
}

// NewCluster returns an empty cluster; AddNode declares nodes.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	return &Cluster{
		cfg:   cfg,
		http:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
		ports: map[string]bool{},
	}, nil
}

// AdminToken returns the admin token the nodes accept.
func (c *Cluster) AdminToken() string { return c.cfg.AdminToken }

// Nodes returns the declared nodes in order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Node returns the node with the given ID, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// FreeAddr returns a port of host that was free for TCP and UDP (gossip
// binds both) a moment ago and has not been handed out before.
func (c *Cluster) FreeAddr(host string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return freeAddr(host, c.ports)
}

func freeAddr(host string, taken map[string]bool) (string, error) {
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", fmt.Errorf("free port on %s: %w", host, err)
		}
		addr := l.Addr().String()
		u, uerr := net.ListenPacket("udp", addr)
		_ = l.Close()
		if uerr != nil {
			continue
		}
		_ = u.Close()
		if taken[addr] {
			continue
		}
		taken[addr] = true
		return addr, nil
	}
	return "", fmt.Errorf("no free TCP+UDP port on %s", host)
}

// AddNode declares a node whose four addresses are on host (free ports
// chosen now). For a node in a network namespace, pass its namespace and
// the namespace's own address: nothing listens there yet, so ports from
// base on are used.
func (c *Cluster) AddNode(id, host, netns string, base int) (*Node, error) {
	n := &Node{
		ID: id, DataDir: filepath.Join(c.cfg.Dir, id), Netns: netns,
		LogPath: filepath.Join(c.cfg.Dir, id+".log"),
	}
	if netns != "" {
		p := func(i int) string { return net.JoinHostPort(host, strconv.Itoa(base+i)) }
		n.Gossip, n.Raft, n.Admin, n.API = p(0), p(1), p(2), p(3)
	} else {
		for _, a := range []*string{&n.Gossip, &n.Raft, &n.Admin, &n.API} {
			addr, err := c.FreeAddr(host)
			if err != nil {
				return nil, err
			}
			*a = addr
		}
	}
	n.Client = &admin.Client{Addr: n.Admin, Token: c.cfg.AdminToken, HTTP: c.http}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

// Bootstrap makes every declared node expect all of them and join the
// others' gossip addresses, then starts them all.
func (c *Cluster) Bootstrap() error {
	ns := c.Nodes()
	for i, n := range ns {
		n.Expect = len(ns)
		n.Join = nil
		for j, m := range ns {
			if i != j {
				n.Join = append(n.Join, m.Gossip)
			}
		}
	}
	for _, n := range ns {
		if err := c.Start(n); err != nil {
			return err
		}
	}
	return nil
}

// Start runs n's process (again, after a kill: same data directory and
// addresses). Its output is appended to n.LogPath.
func (c *Cluster) Start(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runningLocked() {
		return fmt.Errorf("start %s: %w", n.ID, ErrRunning)
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	n.starts++
	fmt.Fprintf(logf, "=== start %d of %s at %s ===\n", n.starts, n.ID, time.Now().UTC().Format(time.RFC3339Nano))
	args := []string{"agent",
		"-node-id", n.ID, "-data-dir", n.DataDir, "-listen", n.API,
		"-admin-listen", n.Admin, "-gossip-addr", n.Gossip, "-cluster-addr", n.Raft,
		"-drain-timeout", c.cfg.DrainTimeout.String(),
	}
	if len(n.Join) > 0 {
		args = append(args, "-join", strings.Join(n.Join, ","))
	}
	if n.Expect > 0 {
		args = append(args, "-bootstrap-expect", strconv.Itoa(n.Expect))
	}
	cmd := exec.Command(c.cfg.Bin, args...)
	if n.Netns != "" {
		// ip netns exec replaces itself with the agent: same process.
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.Netns, c.cfg.Bin}, args...)...)
	}
	cmd.Env = append(append(HermeticEnv(), admin.TokensEnv+"=chaos:admin:"+c.cfg.AdminToken), c.cfg.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	exited := make(chan struct{})
	go func() { // owned by the process: ends when it is reaped
		defer close(exited)
		_ = cmd.Wait()
		_ = logf.Close()
	}()
	n.cmd, n.exited, n.paused = cmd, exited, false
	c.cfg.Logger.Info("node started", "node", n.ID, "pid", cmd.Process.Pid, "start", n.starts)
	return nil
}

// childAttr puts a child in its own process group (so a signal reaches
// everything it started) and asks the kernel to kill it if this process
// dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// HermeticEnv is this process's environment without SLUICE_ variables.
func HermeticEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Running reports whether n's process has been started and not reaped.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked()
}

func (n *Node) runningLocked() bool {
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

// Live reports whether n runs and is not paused.
func (n *Node) Live() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked() && !n.paused
}

// signal sends sig to n's process group.
func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return fmt.Errorf("%s: %w", n.ID, ErrNotRunning)
	}
	if err := syscall.Kill(-n.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, n.ID, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
	case syscall.SIGCONT:
		n.paused = false
	}
	return nil
}

// wait blocks until n's process is reaped or d passes.
func (n *Node) wait(d time.Duration) error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-exited:
		return nil
	case <-t.C:
		return fmt.Errorf("%s not reaped %v after the signal", n.ID, d)
	}
}

// Kill sends SIGKILL to n (a no-op when it does not run) and waits until
// it is reaped.
func (c *Cluster) Kill(n *Node) error {
	if !n.Running() {
		return nil
	}
	if err := n.signal(syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	c.cfg.Logger.Info("node killed", "node", n.ID)
	return n.wait(10 * time.Second)
}

// Stop sends SIGTERM to n and waits for it to exit (its drain timeout plus
// a margin); after that it is killed.
func (c *Cluster) Stop(n *Node) error {
	if err := n.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := n.wait(c.cfg.DrainTimeout + 10*time.Second); err != nil {
		_ = c.Kill(n)
		return err
	}
	return nil
}

// Pause stops n with SIGSTOP: its sockets stay open, nothing answers.
func (c *Cluster) Pause(n *Node) error { return n.signal(syscall.SIGSTOP) }

// Resume continues a paused n with SIGCONT.
func (c *Cluster) Resume(n *Node) error { return n.signal(syscall.SIGCONT) }

// Restart kills n if it runs and starts it again.
func (c *Cluster) Restart(n *Node) error {
	if err := c.Kill(n); err != nil {
		return err
	}
	return c.Start(n)
}

// Close kills every process (resuming paused ones first is not needed:
// SIGKILL ends a stopped process too). It is idempotent.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes() {
		if err := c.Kill(n); err != nil {
			errs = append(errs, err)
		}
	}
	c.http.CloseIdleConnections()
	return errors.Join(errs...)
}

// Ready reports whether n's OpenAI API answers /readyz with 200.
func (c *Cluster) Ready(ctx context.Context, n *Node) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.API+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s readyz: %w", n.ID, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s readyz: %d", n.ID, resp.StatusCode)
	}
	return nil
}

// Leader asks every live node in ns (all nodes when ns is empty) for the
// raft leader and returns the node they agree on.
func (c *Cluster) Leader(ctx context.Context, ns ...*Node) (*Node, error) {
	if len(ns) == 0 {
		ns = c.Nodes()
	}
	leader := ""
	asked := 0
	for _, n := range ns {
		if !n.Live() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := n.Client.Status(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s status: %w", n.ID, err)
		}
		id := info.Status.LeaderID
		switch {
		case id == "":
			return nil, fmt.Errorf("%s knows no leader: %w", n.ID, ErrNoLeader)
		case leader != "" && id != leader:
			return nil, fmt.Errorf("leaders differ (%s, %s): %w", leader, id, ErrNoLeader)
		}
		leader = id
		asked++
	}
	if asked == 0 {
		return nil, fmt.Errorf("no live node: %w", ErrNoLeader)
	}
	if n := c.Node(leader); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("leader %q is not a declared node: %w", leader, ErrNoLeader)
}

// Poll calls cond every interval until it returns nil, ctx ends or d
// passes; it returns cond's last error.
func Poll(ctx context.Context, d, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", d, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Tail returns the last n lines of the log at path, leaving out the
// per-request lines that would crowd out everything else.
func Tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t := sc.Text()
		if strings.Contains(t, `msg="admin request"`) || strings.Contains(t, `msg=request`) {
			continue
		}
		lines = append(lines, t)
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
