package router

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/quota"
	"github.com/sluicehq/sluice/router/wire"
)

// Config configures a Router. Zero values take the documented defaults.
type Config struct {
	// MaxBodyBytes bounds a client's request body. Default 1 MiB.
	MaxBodyBytes int64
	// MaxResponseBytes bounds a non-streamed upstream answer. Default 64 MiB.
	MaxResponseBytes int64
	// ConnectTimeout bounds dialling an upstream. Default 2s.
	ConnectTimeout time.Duration
	// Transport is the upstream round tripper. Default: a pooled transport
	// tuned for many concurrent requests to few hosts.
	Transport http.RoundTripper
	// Resolve turns provider secret references into secrets. Default:
	// env:NAME from the process environment.
	Resolve SecretResolver
	// Limiter owns the deployment and tenant budgets. Default: a new
	// limiter with quota's defaults.
	Limiter *quota.Limiter
	// Sink receives a usage record per finished request. Default: none.
	Sink Sink
	// Health tunes latency tracking and circuit breaking.
	Health HealthConfig
	// RetryFloor is how many retries per 10 s window are always allowed
	// beyond the policy's budget ratio. Default 10.
	RetryFloor int64
	// Metrics is the set the router's metrics are registered in; one per
	// node. Default: a new set.
	Metrics *metrics.Set
	// Logger logs one line per request. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnCool is told when an upstream 429 (or 503 with a wait) cools a
	// deployment, so that the cluster can cool it on every node. Default:
	// nothing.
	OnCool func(deployment string, until time.Time)
	// CacheBytes bounds the response cache (ristretto's MaxCost: entries'
	// bytes plus a small overhead each). The cache exists only once a
	// policy enables it. Default 256 MiB.
	CacheBytes int64
	// NotReadyWait is how long an API request that arrives before the
	// first configuration (a node still starting or catching up) waits for
	// it before the 503 answer. Default 5s: a restarted cluster node
	// catches up in 2 to 3 s, and a client behind DNS would otherwise see
	// errors from a node that is about to serve.
	NotReadyWait time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 64 << 20
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.Transport == nil {
		c.Transport = NewTransport(c.ConnectTimeout)
	}
	if c.Resolve == nil {
		c.Resolve = EnvResolver
	}
	if c.Limiter == nil {
		c.Limiter = quota.New(quota.Config{})
	}
	if c.RetryFloor <= 0 {
		c.RetryFloor = 10
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 256 << 20
	}
	if c.NotReadyWait <= 0 {
		c.NotReadyWait = 5 * time.Second
	}
}

// NewTransport returns the upstream transport: connections pooled and kept
// alive per host, HTTP/2 where the provider offers it.
func NewTransport(connect time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connect,
		ExpectContinueTimeout: time.Second,
	}
}

// EnvResolver resolves env:NAME references from the process environment.
func EnvResolver(ref string) (string, error) {
	name, ok := strings.CutPrefix(ref, "env:")
	if !ok {
		return "", errUnsupportedRef
	}
	v, ok := os.LookupEnv(name)
	if !ok {
		return "", &envMissingError{name: name}
	}
	return v, nil
}

type envMissingError struct{ name string }

func (e *envMissingError) Error() string { return "environment variable " + e.name + " is not set" }

// errUnsupportedRef is returned for references EnvResolver cannot resolve.
var errUnsupportedRef = errors.New("unsupported secret reference (want env:NAME)")

// Router serves the OpenAI and Azure OpenAI APIs. Create it with New,
// install configuration with Update, serve with Handler.
type Router struct {
	cfg     Config
	client  *http.Client
	est     *wire.Estimator
	budget  retryBudget
	metrics *routerMetrics
	table   atomic.Pointer[table]
	// inflight counts API requests being served (for draining).
	inflight atomic.Int64

	// cache is the response cache, made by the first Update whose
	// snapshot has a policy that enables it; nil until then.
	cache atomic.Pointer[respCache]

	mu      sync.Mutex // serialises Update and Close; guards healths, closed
	healths map[string]*health
	closed  bool

	// batchWaiting counts batch requests waiting for budget (priority.go).
	batchWaiting  atomic.Int64
	batchWaitHist *metrics.PrometheusHistogram

	// configured is closed by the first Update; configWaiting counts the
	// requests waiting for it.
	configured    chan struct{}
	configOnce    sync.Once
	configWaiting atomic.Int64
}

// New returns a router with no configuration: API requests wait up to
// Config.NotReadyWait for Update to install a snapshot, then answer 503.
func New(cfg Config) *Router {
	cfg.setDefaults()
	r := &Router{
		cfg:     cfg,
		client:  &http.Client{Transport: cfg.Transport, CheckRedirect: noRedirect},
		est:     wire.NewEstimator(),
		healths: map[string]*health{},

		configured: make(chan struct{}),
	}
	r.budget.floor = cfg.RetryFloor
	r.metrics = newRouterMetrics(cfg.Metrics, r)
	r.batchWaitHist = cfg.Metrics.GetOrCreatePrometheusHistogramExt("sluice_batch_wait_seconds", latencyBuckets)
	cfg.Metrics.RegisterMetricsWriter(r.writeQuota)
	return r
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// loadTable returns the routing table, waiting up to NotReadyWait for the
// first one (nil if none came in time or the client went away).
func (r *Router) loadTable(ctx context.Context) *table {
	if t := r.table.Load(); t != nil {
		return t
	}
	r.configWaiting.Add(1)
	defer r.configWaiting.Add(-1)
	wait := time.NewTimer(r.cfg.NotReadyWait)
	defer wait.Stop()
	select {
	case <-r.configured:
	case <-wait.C:
	case <-ctx.Done():
	}
	return r.table.Load()
}

// WaitingForConfig returns how many requests wait for the first
// configuration.
func (r *Router) WaitingForConfig() int64 { return r.configWaiting.Load() }

// Update installs a new configuration snapshot. It builds the routing table
// off the request path and swaps it in atomically; requests already running
// finish on the table they started with.
func (r *Router) Update(snap *state.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &table{
		snap:    snap,
		targets: make(map[string]*target, len(snap.Config.Deployments)),
		routes:  make(map[string]*route, len(snap.Config.Models)),
		tenants: make(map[string]*quota.Subject),
		keys:    make(map[string]*quota.Subject),
	}
	for i := range snap.Config.Deployments {
		d := &snap.Config.Deployments[i]
		p, _ := snap.Provider(d.Provider)
		tg := newTarget(d, p, r.cfg.Resolve)
		h, ok := r.healths[d.Name]
		if !ok {
			h = newHealth(r.cfg.Health)
			r.healths[d.Name] = h
		}
		tg.health = h
		tg.budget = r.cfg.Limiter.Deployment(d)
		tg.budget.SetBatchFraction(snap.Config.Quota.BatchFraction)
		if tg.broken != nil {
			r.cfg.Logger.Error("deployment unusable", "deployment", d.Name, "err", tg.broken)
		}
		t.targets[d.Name] = tg
	}
	for name := range r.healths {
		if _, ok := t.targets[name]; !ok {
			delete(r.healths, name)
		}
	}
	for i := range snap.Config.Models {
		m, _ := snap.Model(snap.Config.Models[i].Name)
		rt := &route{model: m}
		for _, d := range m.Pool {
			rt.pool = append(rt.pool, t.targets[d.Name])
		}
		t.routes[m.Name] = rt
	}
	for _, rt := range t.routes {
		for _, fb := range rt.model.Fallbacks {
			rt.fallbacks = append(rt.fallbacks, t.routes[fb.Name])
		}
	}
	for i := range snap.Config.Tenants {
		tn, _ := snap.Tenant(snap.Config.Tenants[i].Name)
		if s := r.cfg.Limiter.Tenant(tn); s != nil {
			t.tenants[tn.Name] = s
		}
	}
	for i := range snap.Config.Keys {
		k, _ := snap.KeyByID(snap.Config.Keys[i].ID)
		if s := r.cfg.Limiter.Key(k); s != nil {
			t.keys[k.ID] = s
		}
	}
	r.cfg.Limiter.Retain(snap)
	if r.cache.Load() == nil && !r.closed && cacheWanted(snap) {
		rc, err := newRespCache(r.cfg.CacheBytes)
		if err != nil {
			r.cfg.Logger.Error("response cache unusable", "err", err)
		} else {
			r.cache.Store(rc)
		}
	}
	r.table.Store(t)
	r.configOnce.Do(func() { close(r.configured) })
}

// cacheWanted reports whether a policy of snap enables the response cache.
func cacheWanted(snap *state.Snapshot) bool {
	for i := range snap.Config.Policies {
		if snap.Config.Policies[i].Cache.Enabled {
			return true
		}
	}
	return false
}

// Snapshot returns the snapshot the router is serving, or nil.
func (r *Router) Snapshot() *state.Snapshot {
	if t := r.table.Load(); t != nil {
		return t.snap
	}
	return nil
}

// Ready reports whether a configuration is installed and at least one
// deployment can take a request now.
func (r *Router) Ready() bool {
	t := r.table.Load()
	if t == nil {
		return false
	}
	now := r.cfg.Now().UnixNano()
	for _, tg := range t.targets {
		if tg.broken == nil && tg.health.available(now) {
			return true
		}
	}
	return false
}

// Handler returns the HTTP handler of the OpenAI and Azure APIs plus
// /healthz and /readyz.
func (r *Router) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", r.openAI(wire.EndpointChat))
	mux.HandleFunc("POST /v1/completions", r.openAI(wire.EndpointCompletions))
	mux.HandleFunc("POST /v1/embeddings", r.openAI(wire.EndpointEmbeddings))
	mux.HandleFunc("GET /v1/models", r.listModels)
	mux.HandleFunc("GET /v1/models/{model}", r.getModel)
	mux.HandleFunc("POST /openai/deployments/{model}/chat/completions", r.azure(wire.EndpointChat))
	mux.HandleFunc("POST /openai/deployments/{model}/completions", r.azure(wire.EndpointCompletions))
	mux.HandleFunc("POST /openai/deployments/{model}/embeddings", r.azure(wire.EndpointEmbeddings))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !r.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"not ready"}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
			Message: "Unknown request URL. Sluice serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models and the Azure /openai/deployments/{model}/... paths."})
	})
	return mux
}

// authenticate finds the caller's key from the bearer token or api-key.
func (r *Router) authenticate(t *table, req *http.Request) (*state.ResolvedKey, *apiError) {
	key := req.Header.Get("Api-Key")
	if key == "" {
		auth := req.Header.Get("Authorization")
		if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			key = strings.TrimSpace(auth[7:])
		}
	}
	if key == "" {
		return nil, errMissingKey
	}
	k, ok := t.snap.Authenticate(key)
	if !ok {
		return nil, errUnknownKey
	}
	if k.Disabled || k.Expired(r.cfg.Now()) {
		return nil, errExpiredKey
	}
	return k, nil
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// authed loads the table and authenticates the caller, answering the
// error itself when either fails.
func (r *Router) authed(w http.ResponseWriter, req *http.Request) (*table, *state.ResolvedKey, bool) {
	t := r.loadTable(req.Context())
	if t == nil {
		writeError(w, errNotReady)
		return nil, nil, false
	}
	k, aerr := r.authenticate(t, req)
	if aerr != nil {
		writeError(w, aerr)
		return nil, nil, false
	}
	return t, k, true
}

func (r *Router) listModels(w http.ResponseWriter, req *http.Request) {
	t, k, ok := r.authed(w, req)
	if !ok {
		return
	}
	out := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: []modelObject{}}
	for _, m := range t.snap.Config.Models {
		if k.Allows(m.Name) {
			out.Data = append(out.Data, modelObject{ID: m.Name, Object: "model", OwnedBy: "sluice"})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (r *Router) getModel(w http.ResponseWriter, req *http.Request) {
	t, k, ok := r.authed(w, req)
	if !ok {
		return
	}
	name := req.PathValue("model")
	if _, ok := t.routes[name]; !ok || !k.Allows(name) {
		writeError(w, errModelNotFound(name))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(modelObject{ID: name, Object: "model", OwnedBy: "sluice"})
}

// Close releases pooled upstream connections and closes the response
// cache (a request still running then neither reads nor stores). It is
// idempotent.
func (r *Router) Close() {
	if t, ok := r.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if rc := r.cache.Load(); rc != nil {
		rc.close()
	}
}

// InFlight returns the API requests being served now.
func (r *Router) InFlight() int64 { return r.inflight.Load() }
