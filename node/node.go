package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/quota"
	"github.com/sluicehq/sluice/quota/ledger"
	"github.com/sluicehq/sluice/router"
)

// Config is a node's own settings (the shared configuration is
// state.Config). Zero values take the documented defaults.
type Config struct {
	// APIAddr is where the OpenAI and Azure APIs listen. Default 127.0.0.1:8080.
	APIAddr string
	// Router tunes the request path; its Metrics, Logger and Limiter are
	// filled by the node when empty.
	Router router.Config
	// Quota tunes local admission.
	Quota quota.Config
	// DrainTimeout bounds how long Shutdown waits for requests in flight.
	// Default 30s.
	DrainTimeout time.Duration
	// Admin, when set on a cluster member, serves the admin API.
	Admin *admin.Config
	// Cluster, when set, makes the node a cluster member: its
	// configuration comes from raft, not from Install. Nil: standalone.
	Cluster *cluster.Config
	// SeedConfig, in a cluster, is applied once by the leader when the
	// replicated configuration is still empty (first start of a cluster).
	SeedConfig *state.Config
	// Ledger tunes the usage batcher of a cluster node; NodeID, Metrics,
	// Logger and, when the node has a data directory, JournalPath are
	// filled by the node. See ledger.BatcherConfig for defaults.
	Ledger ledger.BatcherConfig
	// Logger is the node's logger. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.APIAddr == "" {
		c.APIAddr = "127.0.0.1:8080"
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Node is one running Sluice node.
type Node struct {
	cfg     Config
	metrics *metrics.Set
	router  *router.Router
	limiter *quota.Limiter
	shares  *quota.Shares // cluster mode only
	ledger  *nodeLedger   // cluster mode only (ledger.go)
	// coolVia spreads cooling marks once the cluster runs.
	coolVia atomic.Pointer[cluster.Cluster]

	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when the API server has stopped serving

	mu      sync.Mutex // serialises config installs
	version uint64

	cluster  *cluster.Cluster
	admin    *admin.Server
	draining atomic.Bool
	stop     context.CancelFunc // stops the goroutines below
	wg       sync.WaitGroup     // snapshot follower and seeder

	stopOnce sync.Once
	stopErr  error
}

// New builds a node. It does not listen until Start.
func New(cfg Config) *Node {
	cfg.setDefaults()
	n := &Node{cfg: cfg, metrics: metrics.NewSet(), done: make(chan struct{})}
	qc := cfg.Quota
	// In a cluster a node admits only the share of each quota leased to it.
	qc.Leased = cfg.Cluster != nil
	n.limiter = quota.New(qc)
	rc := cfg.Router
	if rc.Metrics == nil {
		rc.Metrics = n.metrics
	}
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	if rc.Limiter == nil {
		rc.Limiter = n.limiter
	}
	if rc.OnCool == nil && cfg.Cluster != nil {
		rc.OnCool = n.broadcastCool
	}
	n.initLedger(&rc) // cluster mode: the usage ledger is the sink (ledger.go)
	if rc.Resolve == nil && cfg.Admin != nil && cfg.Admin.ClusterKey != nil {
		// enc: references are provider secrets encrypted with the cluster key.
		rc.Resolve = admin.Resolver(cfg.Admin.ClusterKey, router.EnvResolver)
	}
	n.router = router.New(rc)
	return n
}

// Install validates c and makes it the configuration the node serves.
// It is the single owner of configuration changes on a standalone node.
func (n *Node) Install(c state.Config) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	snap, err := state.Build(c, n.version+1)
	if err != nil {
		return err
	}
	n.version++
	n.router.Update(snap)
	n.cfg.Logger.Info("configuration installed", "version", snap.Version,
		"deployments", len(c.Deployments), "models", len(c.Models), "keys", len(c.Keys))
	return nil
}

// Router returns the node's router.
func (n *Node) Router() *router.Router { return n.router }

// Metrics returns the node's metric set.
func (n *Node) Metrics() *metrics.Set { return n.metrics }

// Handler returns the API handler including /metrics.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	api := n.router.Handler()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.draining.Load() && r.URL.Path != "/healthz" {
			// Draining: refuse new work so load balancers move on; requests
			// already in flight finish.
			w.Header().Set("Connection", "close")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"message":"This node is draining; retry on another node.","type":"server_error","param":null,"code":"draining"}}` + "\n"))
			return
		}
		api.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		n.metrics.WritePrometheus(w)
	})
	return mux
}

// Start listens on the API address and serves in the background. In a
// cluster it first joins the cluster and follows its configuration.
func (n *Node) Start() (err error) {
	ln, err := net.Listen("tcp", n.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen api %s: %w", n.cfg.APIAddr, err)
	}
	n.ln = ln
	ctx, stop := context.WithCancel(context.Background())
	n.stop = stop
	defer func() {
		if err != nil {
			stop()
			n.wg.Wait()
			_ = ln.Close()
			if n.cluster != nil {
				_ = n.cluster.Shutdown(context.Background())
			}
		}
	}()
	if n.cfg.Cluster != nil {
		if err := n.startCluster(ctx); err != nil {
			return err
		}
	}
	n.srv = &http.Server{
		Handler:           n.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.cfg.Logger.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(n.done)
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error("api server stopped", "err", err)
		}
	}()
	n.cfg.Logger.Info("api listening", "addr", ln.Addr().String())
	return nil
}

// APIAddr returns the address the API listens on (after Start).
func (n *Node) APIAddr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// Shutdown stops the node: it stops accepting requests, lets those in
// flight finish (up to DrainTimeout or ctx), then closes upstream
// connections. It is safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		if n.srv == nil {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, n.cfg.DrainTimeout)
		defer cancel()
		// 1. Stop accepting and drain in-flight requests.
		if err := n.srv.Shutdown(ctx); err != nil {
			n.stopErr = fmt.Errorf("drain api: %w", err)
			_ = n.srv.Close()
		}
		<-n.done
		// 2. Give the quota shares back: nothing more is admitted here, so
		// the allocator may hand them to the other nodes as soon as what
		// this node charged leaves the windows, not a lease later.
		if n.shares != nil {
			// Two rounds' time: a leader waits for its own next round.
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			if err := n.shares.Release(rctx); err != nil {
				n.cfg.Logger.Warn("quota shares not released; the allocator waits for the lease", "err", err)
			}
			rcancel()
		}
		// 3. Stop the admin API.
		if n.admin != nil {
			if err := n.admin.Shutdown(ctx); err != nil && n.stopErr == nil {
				n.stopErr = fmt.Errorf("admin shutdown: %w", err)
			}
		}
		// 4. Stop following the configuration.
		n.stop()
		n.wg.Wait()
		// 5. Leave the gossip pool and shut raft (the cluster orders its own parts).
		if n.cluster != nil {
			if err := n.cluster.Shutdown(ctx); err != nil && n.stopErr == nil {
				n.stopErr = fmt.Errorf("cluster shutdown: %w", err)
			}
		}
		// 6. Close pooled upstream connections.
		n.router.Close()
	})
	return n.stopErr
}

// Drain stops taking new API requests (they get 503 and readyz fails)
// while those in flight finish. It waits until none is left or ctx ends.
func (n *Node) Drain(ctx context.Context) error {
	n.draining.Store(true)
	n.cfg.Logger.Info("draining")
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for n.router.InFlight() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// AdminAddr returns the admin API's address, or "" when it has none.
func (n *Node) AdminAddr() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.Addr()
}
