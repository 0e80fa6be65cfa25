package suite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/chaos/report"
	"github.com/sluicehq/sluice/cluster/state"
)

// Options configure one chaos run.
type Options struct {
	// Schedule is smoke, ci or long (default ci).
	Schedule string
	// Seed picks fault order and targets, prompts and the mock's draws.
	Seed int64
	// Out is the output directory: node data, logs and the report.
	// Required.
	Out string
	// BinDir holds prebuilt sluice and mockllm binaries; empty builds them
	// (CGO off) into Out/bin.
	BinDir string
	// Logger receives progress (default: discard).
	Logger *slog.Logger
}

// Quota of each mock deployment and of the matching Sluice deployment.
// Requests are counted in 10 s windows on both sides (Azure counts RPM in
// 1 s or 10 s windows): with 1 s windows a budget this small splits into
// three or four requests per node and second, and the rounding, not the
// allocator, would decide the run.
const (
	DeploymentRPM       = 600   // 10 requests/s
	DeploymentTPM       = 30000 // 500 tokens/s: about 12 requests/s of ~40 tokens
	DeploymentRPMWindow = 10 * time.Second
	DeploymentTPMWindow = 10 * time.Second
)

// region is one mock region and the Sluice deployment in front of it.
type region struct {
	Name, Deployment, KeyEnv, Key string
}

var regions = []region{
	{Name: "eastus", Deployment: "east", KeyEnv: "CHAOS_EASTUS_KEY"},
	{Name: "swedencentral", Deployment: "sweden", KeyEnv: "CHAOS_SWEDENCENTRAL_KEY"},
}

// tenant is one tenant of the run.
type tenant struct {
	Name, Class string
	// Budget is the tenant's offered load as a share of the summed
	// request budget (normal tenants), or Excess its share of what is
	// offered beyond the normal tenants' part (batch and abusive), so
	// normal tenants always ask for the same 60% and a higher load factor
	// only adds pressure from the others.
	Budget, Excess float64
	Limits         state.Limits
}

// AbusiveRPM and AbusiveTPM are the abusive tenant's hard limits, well
// below what it sends.
const (
	AbusiveRPM = 60
	AbusiveTPM = 3000
)

var tenants = []tenant{
	{Name: "alpha", Class: ClassNormal, Budget: 0.30},
	{Name: "bravo", Class: ClassNormal, Budget: 0.30},
	{Name: "crunch", Class: ClassBatch, Excess: 0.6},
	{Name: "abuser", Class: ClassAbusive, Excess: 0.4, Limits: state.Limits{RPM: AbusiveRPM, TPM: AbusiveTPM}},
}

// tenantRates splits offered requests/s among the tenants; budget is the
// summed request budget in requests/s.
func tenantRates(offered, budget float64) map[string]float64 {
	normal := 0.0
	for _, t := range tenants {
		normal += t.Budget * budget
	}
	excess := max(offered-normal, 0)
	out := map[string]float64{}
	for _, t := range tenants {
		out[t.Name] = t.Budget*budget + t.Excess*excess
	}
	return out
}

// Runner is one chaos run: Run starts everything, runs the schedule,
// checks the invariants and writes the report; Close (deferred by the
// caller) kills every process it started, whatever happened.
type Runner struct {
	opt   Options
	log   *slog.Logger
	sched Schedule

	mu      sync.Mutex
	netns   *Netns
	mock    *Mock
	cluster *Cluster
	closed  bool
	// netemErr says why netem cannot run here (nil: it can).
	netemErr error

	regions []region          // this run's regions and their mock keys
	keys    map[string]string // tenant -> virtual key plaintext
	t0      time.Time
	notes   []string
}

// NewRunner validates opt.
func NewRunner(opt Options) (*Runner, error) {
	if opt.Out == "" {
		return nil, errors.New("options: Out is required")
	}
	if opt.Schedule == "" {
		opt.Schedule = ScheduleCI
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(opt.Out)
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	opt.Out = abs
	return &Runner{opt: opt, log: opt.Logger, regions: slices.Clone(regions), keys: map[string]string{}}, nil
}

// Close kills every process and removes the network namespace. It is
// idempotent and safe to call from a signal handler's goroutine.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	if r.cluster != nil {
		errs = append(errs, r.cluster.Close())
	}
	if r.mock != nil {
		errs = append(errs, r.mock.Close())
	}
	if r.netns != nil {
		errs = append(errs, r.netns.Close())
	}
	return errors.Join(errs...)
}

// note adds a line to the report's notes.
func (r *Runner) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// Build compiles sluice and mockllm (CGO off) into dir.
func Build(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/sluicehq/sluice/node/cmd/sluice", "github.com/sluicehq/sluice/chaos/cmd/mockllm")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// Run performs the whole run and returns the report (also written to
// Out). An error means the run could not be carried out; failed
// invariants are in the report, not an error.
func (r *Runner) Run(ctx context.Context) (*report.Run, error) {
	if err := os.MkdirAll(r.opt.Out, 0o755); err != nil {
		return nil, fmt.Errorf("out: %w", err)
	}
	bin := r.opt.BinDir
	if bin == "" {
		bin = filepath.Join(r.opt.Out, "bin")
		r.log.Info("building binaries", "dir", "bin")
		start := time.Now()
		if err := Build(ctx, bin); err != nil {
			return nil, err
		}
		r.log.Info("built", "took", time.Since(start).Round(time.Millisecond))
	}
	if err := r.start(ctx, bin); err != nil {
		return nil, err
	}
	return r.execute(ctx)
}

// start runs the mock and the cluster and applies the configuration.
func (r *Runner) start(ctx context.Context, bin string) error {
	host := "127.0.0.1"
	partitionOK, _, why := NetnsSupport()
	if partitionOK {
		ns, err := NewNetns()
		if err != nil {
			r.note("partition and netem skipped: network namespace: %v", err)
		} else {
			r.mu.Lock()
			r.netns = ns
			r.mu.Unlock()
			host = ns.HostIP
			if err := ns.NetemWorks(); err != nil {
				r.netemErr = err
				r.note("netem unavailable (%v): the netem fault uses a token bucket (1 Mbit/s) and iptables random loss instead", err)
			}
		}
	} else {
		r.note("partition and netem skipped: %s", why)
	}

	taken := map[string]bool{}
	var rcs []mock.RegionConfig
	var env []string
	for i := range r.regions {
		rg := &r.regions[i]
		addr, err := freeAddr(host, taken)
		if err != nil {
			return err
		}
		rg.Key = "chaos-" + rg.Name + "-" + randomHex(8)
		env = append(env, rg.KeyEnv+"="+rg.Key)
		rcs = append(rcs, mock.RegionConfig{
			Name: rg.Name, Listen: addr, Dialect: mock.DialectAzure, APIKey: rg.Key,
			Deployments: []mock.DeploymentConfig{{
				Name: "gpt-4o-mini", Model: "gpt-4o-mini-2024-07-18", Kind: mock.KindChat,
				RPM: DeploymentRPM, TPM: DeploymentTPM,
				RPMWindow: mock.Duration(DeploymentRPMWindow), TPMWindow: mock.Duration(DeploymentTPMWindow),
				Latency: mock.LatencyConfig{
					TTFBMedian: mock.Duration(80 * time.Millisecond), TTFBP99: mock.Duration(400 * time.Millisecond),
					TokenInterval: mock.Duration(4 * time.Millisecond),
				},
			}},
		})
	}
	m, err := StartMock(ctx, MockConfig{Bin: filepath.Join(bin, "mockllm"), Dir: r.opt.Out, Regions: rcs, Seed: r.opt.Seed})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.mock = m
	r.mu.Unlock()

	c, err := NewCluster(ClusterConfig{Bin: filepath.Join(bin, "sluice"), Dir: r.opt.Out, Env: env, Logger: r.log})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cluster = c
	r.mu.Unlock()
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		var err error
		if i == 3 && r.netns != nil {
			_, err = c.AddNode(id, r.netns.NsIP, r.netns.Name, 20000)
		} else {
			_, err = c.AddNode(id, host, "", 0)
		}
		if err != nil {
			return err
		}
	}
	if err := c.Bootstrap(); err != nil {
		return err
	}
	if err := Poll(ctx, 45*time.Second, 100*time.Millisecond, func() error {
		if err := r.exited(); err != nil {
			return err
		}
		_, err := c.Leader(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("waiting for a leader: %w", err)
	}
	doc, err := json.Marshal(r.config())
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := Poll(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.Nodes()[0].Client.Apply(cctx, doc, false)
		return err
	}); err != nil {
		return fmt.Errorf("applying the configuration: %w", err)
	}
	r.log.Info("cluster up and configured", "nodes", len(c.Nodes()), "host", host)
	return nil
}

// exited returns an error naming a node that should run and does not.
func (r *Runner) exited() error {
	for _, n := range r.cluster.Nodes() {
		if !n.Running() {
			return fmt.Errorf("%s exited; its log ends:\n%s", n.ID, Tail(n.LogPath, 15))
		}
	}
	return nil
}

func (r *Runner) config() state.Config {
	cfg := state.Config{}
	for _, rg := range r.regions {
		cfg.Providers = append(cfg.Providers, state.Provider{
			Name: "az-" + rg.Name, Kind: state.KindAzure,
			Endpoint: "http://" + r.mock.Addr(rg.Name), APIKey: "env:" + rg.KeyEnv,
		})
		cfg.Deployments = append(cfg.Deployments, state.Deployment{
			Name: rg.Deployment, Provider: "az-" + rg.Name, Region: rg.Name, Upstream: "gpt-4o-mini",
			RPM: DeploymentRPM, TPM: DeploymentTPM,
			RPMWindow: state.Duration(DeploymentRPMWindow), TPMWindow: state.Duration(DeploymentTPMWindow),
		})
	}
	cfg.Models = []state.Model{{Name: "gpt-4o-mini", Deployments: []string{r.regions[0].Deployment, r.regions[1].Deployment}}}
	for _, t := range tenants {
		class := state.ClassInteractive
		if t.Class == ClassBatch {
			class = state.ClassBatch
		}
		cfg.Tenants = append(cfg.Tenants, state.Tenant{Name: t.Name, Plan: t.Class, Class: class, Limits: t.Limits})
		if r.keys[t.Name] == "" {
			r.keys[t.Name] = "sk-chaos-" + t.Name + "-" + randomHex(12)
		}
		cfg.Keys = append(cfg.Keys, state.Key{ID: "k-" + t.Name, Hash: state.HashKey(r.keys[t.Name]), Tenant: t.Name})
	}
	return cfg
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// targets returns the nodes as clients address them.
func (r *Runner) targets() []Target {
	var ts []Target
	for _, n := range r.cluster.Nodes() {
		ts = append(ts, Target{Node: n.ID, Addr: n.API})
	}
	return ts
}

// baseTransport is what each attempt goes over: a header timeout leaves
// a paused node for the next one.
func baseTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   64,
		ResponseHeaderTimeout: 12 * time.Second,
		IdleConnTimeout:       30 * time.Second,
	}
}

// discard drains and closes a body.
func discard(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, rc)
	_ = rc.Close()
}
