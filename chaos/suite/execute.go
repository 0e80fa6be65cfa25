package suite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/chaos/report"
)

// recorder collects what the run's background actors saw.
type recorder struct {
	mu        sync.Mutex
	faults    []report.Fault
	shares    []report.ShareSample
	acked     []string
	notAcked  int
	warm      []*Record
	loadStart time.Time
}

func (rc *recorder) addFault(f report.Fault) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.faults = append(rc.faults, f)
}

// execute runs the schedule under load and then checks everything.
func (r *Runner) execute(ctx context.Context) (*report.Run, error) {
	var ids, regionNames []string
	for _, n := range r.cluster.Nodes() {
		ids = append(ids, n.ID)
	}
	for _, rg := range r.regions {
		regionNames = append(regionNames, rg.Name)
	}
	nsNode := ""
	if r.netns != nil {
		nsNode = ids[len(ids)-1]
	}
	sched, err := BuildSchedule(r.opt.Schedule, r.opt.Seed, ids, regionNames, nsNode)
	if err != nil {
		return nil, err
	}
	r.sched = sched
	rec := &recorder{}
	base := baseTransport()
	defer base.CloseIdleConnections()

	if err := r.warmUp(ctx, base, rec); err != nil {
		return nil, err
	}

	budget := float64(len(r.regions)) * DeploymentRPM / 60
	offered := budget * sched.LoadFactor
	rates := tenantRates(offered, budget)
	var tls []TenantLoad
	for _, t := range tenants {
		tls = append(tls, TenantLoad{Tenant: t.Name, Class: t.Class, Key: r.keys[t.Name], Rate: rates[t.Name], Streams: 0.25})
	}
	load := NewLoad(LoadConfig{
		Tenants:   tls,
		Transport: &FailoverTransport{Targets: r.targets(), Base: base},
		Seed:      r.opt.Seed,
	})
	r.log.Info("load starting", "schedule", sched.Name, "seed", sched.Seed, "offered_rps", offered,
		"budget_rps", budget, "load", sched.Load, "faults", len(sched.Steps))

	r.t0 = time.Now()
	rec.loadStart = r.t0
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() { // owned here: stopLoad ends it, loadDone says it did
		defer close(loadDone)
		load.Run(loadCtx, ctx) // in-flight requests end by their deadline, or at once on ctx
	}()
	bgCtx, stopBG := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); r.scrapeShares(bgCtx, rec) }()
	go func() { defer bg.Done(); r.writeConfig(bgCtx, rec) }()

	for _, st := range sched.Steps {
		if !sleepUntil(ctx, r.t0.Add(st.At)) {
			break
		}
		r.inject(ctx, st, rec)
	}
	sleepUntil(ctx, r.t0.Add(sched.Load))
	stopLoad()
	loadEnd := time.Now()
	stopBG()
	bg.Wait()
	r.log.Info("load stopped; waiting for requests in flight")
	wait := time.NewTimer(45 * time.Second)
	select {
	case <-loadDone:
		wait.Stop()
	case <-wait.C:
		r.note("requests still in flight 45 s after the load stopped; counted as never ended")
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	r.restoreAll(ctx)
	return r.check(ctx, load.Records(), rec, loadEnd)
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// warmUp waits until every node answers a chat with 200. These requests
// are recorded too: the ledger and the mock count them.
func (r *Runner) warmUp(ctx context.Context, base http.RoundTripper, rec *recorder) error {
	key := r.keys[tenants[0].Name]
	for _, n := range r.cluster.Nodes() {
		tr := &FailoverTransport{Targets: []Target{{Node: n.ID, Addr: n.API}}, Base: base}
		client := openai.NewClient(option.WithBaseURL("http://sluice.invalid/v1/"), option.WithAPIKey(key),
			option.WithHTTPClient(&http.Client{Transport: tr}), option.WithMaxRetries(0))
		i := 0
		err := Poll(ctx, 30*time.Second, 200*time.Millisecond, func() error {
			i++
			wr := &Record{ID: fmt.Sprintf("warm-%s-%d", n.ID, i), Tenant: tenants[0].Name, Class: "warm-up"}
			rec.warm = append(rec.warm, wr)
			cctx, cancel := context.WithTimeout(WithRecord(ctx, wr), 10*time.Second)
			defer cancel()
			_, err := client.Chat.Completions.New(cctx, openai.ChatCompletionNewParams{
				Model:     "gpt-4o-mini",
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("warm up")},
				MaxTokens: openai.Int(8),
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("%s does not serve: %w; its log ends:\n%s", n.ID, err, Tail(n.LogPath, 15))
		}
	}
	return nil
}

// since is t's offset from the load's start.
func (r *Runner) since(t time.Time) time.Duration { return t.Sub(r.t0) }

// hold waits d unless ctx ends.
func hold(ctx context.Context, d time.Duration) { sleepUntil(ctx, time.Now().Add(d)) }

// inject carries out one step and records it.
func (r *Runner) inject(ctx context.Context, st Step, rec *recorder) {
	c := r.cluster
	at := time.Now()
	f := report.Fault{At: r.since(at), Kind: st.Kind, Target: st.Target}
	fail := func(err error) {
		r.note("%s at %v on %s: %v", st.Kind, f.At.Round(time.Second), f.Target, err)
		r.log.Warn("fault failed", "kind", st.Kind, "target", f.Target, "err", err)
	}
	r.log.Info("fault", "kind", st.Kind, "target", st.Target, "at", f.At.Round(time.Millisecond))
	switch st.Kind {
	case FaultSIGKILL, FaultLeaderKill:
		n := c.Node(st.Target)
		leader, lerr := c.Leader(ctx)
		if st.Kind == FaultLeaderKill {
			if lerr != nil {
				fail(lerr)
				return
			}
			n = leader
		} else if leader != nil && n == leader && !st.AnyNode {
			n = r.nextNode(n) // a follower, as the schedule asks
		}
		f.Target = n.ID
		if err := c.Kill(n); err != nil {
			fail(err)
			return
		}
		hold(ctx, st.For)
		if err := c.Start(n); err != nil {
			fail(err)
		}
		f.Until = r.since(time.Now())
		f.Detail = fmt.Sprintf("SIGKILL, restarted after %v", st.For)
		r.awaitReady(ctx, n, st.Kind)
	case FaultPause:
		n := c.Node(st.Target)
		if err := c.Pause(n); err != nil {
			fail(err)
			return
		}
		hold(ctx, st.For)
		if err := c.Resume(n); err != nil {
			fail(err)
		}
		f.Until = r.since(time.Now())
		f.Detail = fmt.Sprintf("SIGSTOP for %v, then SIGCONT", st.For)
	case FaultPartition, FaultNetem:
		if r.netns == nil || st.Target == "" {
			r.note("%s skipped: no network namespace (needs root, ip, iptables and tc)", st.Kind)
			return
		}
		cut := c.Node(st.Target)
		var err error
		if st.Kind == FaultPartition {
			var others []*Node
			for _, n := range c.Nodes() {
				if n != cut {
					others = append(others, n)
				}
			}
			err = r.netns.Partition(others, cut)
			f.Detail = "gossip and raft cut both ways; API and provider reachable"
		} else if r.netemErr == nil {
			err = r.netns.Netem(100*time.Millisecond, 5)
			f.Detail = "netem delay 100ms +-25ms, loss 5% on every link of the node"
		} else {
			err = r.netns.Degrade(1000, 5)
			f.Detail = "no netem in this kernel: link slowed to 1 Mbit/s (tbf), 5% random loss both ways (iptables)"
		}
		if err != nil {
			fail(err)
			return
		}
		hold(ctx, st.For)
		r.netns.Heal()
		r.netns.ClearNetem()
		f.Until = r.since(time.Now())
	case FaultRegionDown, Fault429Storm:
		faults := mock.Faults{Down: true}
		f.Detail = "every connection to the region reset"
		if st.Kind == Fault429Storm {
			faults = mock.Faults{Force429For: mock.Duration(st.For)}
			f.Detail = fmt.Sprintf("every request answered 429 with retry-after for %v", st.For)
		}
		if err := r.mock.SetFaults(ctx, st.Target, mock.AllDeployments, faults); err != nil {
			fail(err)
			return
		}
		hold(ctx, st.For)
		if err := r.mock.ClearFaults(ctx, st.Target); err != nil {
			fail(err)
		}
		f.Until = r.since(time.Now())
	case FaultRollingRestart:
		f.Target = "all"
		var steps []string
		for _, n := range c.Nodes() {
			t := time.Now()
			if err := c.Stop(n); err != nil {
				fail(err)
			}
			stopped := time.Since(t)
			if err := c.Start(n); err != nil {
				fail(err)
				continue
			}
			r.awaitReady(ctx, n, st.Kind)
			steps = append(steps, fmt.Sprintf("%s stopped in %v, ready after %v", n.ID, stopped.Round(time.Millisecond), time.Since(t).Round(time.Millisecond)))
		}
		f.Until = r.since(time.Now())
		f.Detail = fmt.Sprint(steps)
	default:
		fail(fmt.Errorf("unknown fault kind"))
		return
	}
	rec.addFault(f)
}

// awaitReady waits (at most 30 s) for a restarted node's readyz and
// notes, with the end of its log, when it exited or never got ready.
func (r *Runner) awaitReady(ctx context.Context, n *Node, why string) {
	err := Poll(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		if !n.Running() {
			return fmt.Errorf("exited")
		}
		return r.cluster.Ready(ctx, n)
	})
	if err != nil {
		r.note("%s did not come back after %s at %v (%v); its log ends:\n%s",
			n.ID, why, r.since(time.Now()).Round(time.Second), err, Tail(n.LogPath, 8))
		r.log.Warn("node did not come back", "node", n.ID, "after", why, "err", err)
	}
}

// nextNode returns the node after n in declaration order.
func (r *Runner) nextNode(n *Node) *Node {
	ns := r.cluster.Nodes()
	for i, m := range ns {
		if m == n {
			return ns[(i+1)%len(ns)]
		}
	}
	return n
}

// restoreAll undoes whatever a fault left behind and waits until every
// node is ready again.
func (r *Runner) restoreAll(ctx context.Context) {
	if r.netns != nil {
		r.netns.Heal()
		r.netns.ClearNetem()
	}
	for _, rg := range r.regions {
		_ = r.mock.ClearFaults(ctx, rg.Name)
	}
	for _, n := range r.cluster.Nodes() {
		if n.Running() && !n.Live() {
			_ = r.cluster.Resume(n)
		}
		if !n.Running() {
			r.note("%s was not running after the load; restarted", n.ID)
			_ = r.cluster.Start(n)
		}
		if err := Poll(ctx, 30*time.Second, 100*time.Millisecond, func() error { return r.cluster.Ready(ctx, n) }); err != nil {
			r.note("%s not ready after the run: %v", n.ID, err)
		}
	}
}

// scrapeShares reads every live node's quota shares once a second.
func (r *Runner) scrapeShares(ctx context.Context, rec *recorder) {
	client := &http.Client{Timeout: 800 * time.Millisecond}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, n := range r.cluster.Nodes() {
			if !n.Live() {
				continue
			}
			at := r.since(time.Now())
			samples, err := scrapeShare(ctx, client, n.API)
			if err != nil {
				continue
			}
			rec.mu.Lock()
			for _, s := range samples {
				s.At, s.Node = at, n.ID
				rec.shares = append(rec.shares, s)
			}
			rec.mu.Unlock()
		}
	}
}

// writeConfig creates a key every ~3 s through a random live node and
// remembers the acknowledged ones.
func (r *Runner) writeConfig(ctx context.Context, rec *recorder) {
	rng := rand.New(rand.NewPCG(uint64(r.opt.Seed), 0xc0f1))
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var live []*Node
		for _, n := range r.cluster.Nodes() {
			if n.Live() {
				live = append(live, n)
			}
		}
		if len(live) == 0 {
			continue
		}
		n := live[rng.IntN(len(live))]
		id := fmt.Sprintf("cw-%04d", i)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.Client.CreateKey(cctx, admin.KeyRequest{ID: id, Tenant: tenants[0].Name})
		cancel()
		rec.mu.Lock()
		if err == nil {
			rec.acked = append(rec.acked, id)
		} else {
			rec.notAcked++
		}
		rec.mu.Unlock()
	}
}
