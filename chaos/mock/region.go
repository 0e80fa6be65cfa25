package mock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxBodyBytes is the request body limit; larger bodies get 413.
const MaxBodyBytes = 8 << 20

// Region is one mock provider endpoint hosting several deployments. It is an
// http.Handler; it owns no goroutines.
type Region struct {
	cfg    RegionConfig
	apiKey string
	now    func() time.Time
	deps   map[string]*deployment
	order  []string // deployment names in config order
	vocab  vocabulary

	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex // guards rng and faults
	rng    *rand.Rand
	faults map[string]faultState

	reqlog *requestLog
}

// NewRegion validates cfg (after applying defaults) and builds a Region.
func NewRegion(cfg RegionConfig) (*Region, error) {
	cfg.Deployments = slices.Clone(cfg.Deployments)
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("region %q: %w", cfg.Name, err)
	}
	if _, err := o200k(); err != nil {
		return nil, fmt.Errorf("region %q: %w", cfg.Name, err)
	}
	h := fnv.New64a()
	h.Write([]byte(cfg.Name))
	r := &Region{
		cfg:    cfg,
		apiKey: cfg.resolveAPIKey(),
		now:    cfg.Now,
		deps:   make(map[string]*deployment, len(cfg.Deployments)),
		vocab:  newVocabulary(),
		closed: make(chan struct{}),
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), h.Sum64())),
		faults: make(map[string]faultState),
		reqlog: newRequestLog(cfg.RequestLog),
	}
	for _, d := range cfg.Deployments {
		r.deps[d.Name] = newDeployment(d)
		r.order = append(r.order, d.Name)
	}
	for name, f := range cfg.Faults {
		if err := r.SetFaults(name, f); err != nil {
			return nil, fmt.Errorf("region %q: faults: %w", cfg.Name, err)
		}
	}
	return r, nil
}

// Name is the region's name.
func (r *Region) Name() string { return r.cfg.Name }

// Dialect is the wire format the region speaks.
func (r *Region) Dialect() Dialect { return r.cfg.Dialect }

// Config returns the region's configuration with defaults applied. The API
// key is redacted.
func (r *Region) Config() RegionConfig {
	c := r.cfg
	c.Deployments = slices.Clone(c.Deployments)
	if c.APIKey != "" {
		c.APIKey = "REDACTED"
	}
	c.Faults = nil
	return c
}

// Close releases requests held by stalls and latency and makes later
// stalls return at once. It is safe to call more than once. The Region
// keeps answering requests; close the http.Server to stop them.
func (r *Region) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	return nil
}

// Stats returns a snapshot of every deployment's statistics.
func (r *Region) Stats() Stats {
	s := Stats{Region: r.cfg.Name, Dialect: r.cfg.Dialect, Deployments: make(map[string]DeploymentStats, len(r.deps))}
	for name, d := range r.deps {
		s.Deployments[name] = d.snapshot()
	}
	return s
}

// Reset zeroes every deployment's statistics (in_flight stays live) and
// forgets the request log. Quota
// windows and faults are left alone.
func (r *Region) Reset() {
	for _, d := range r.deps {
		d.resetStats()
	}
	r.reqlog.clear()
}

// requestRand derives a request's private random source from the region's
// seeded source, so draws are deterministic per request order.
func (r *Region) requestRand() *rand.Rand {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rand.New(rand.NewPCG(r.rng.Uint64(), r.rng.Uint64()))
}

var (
	errRegionClosed = errors.New("region closed")
	errWaitCanceled = errors.New("client went away")
)

// wait sleeps for d, or forever when d < 0. It returns errWaitCanceled
// when ctx ends first and errRegionClosed when the region closes first.
func (r *Region) wait(ctx context.Context, d time.Duration) error {
	if d == 0 {
		return ctx.Err()
	}
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return nil
	case <-ctx.Done():
		return errWaitCanceled
	case <-r.closed:
		return errRegionClosed
	}
}

// lookup returns a deployment by name.
func (r *Region) lookup(name string) (*deployment, bool) {
	d, ok := r.deps[name]
	return d, ok
}

// ttfb samples the time to first byte of a deployment: lognormal fitted to
// the median and p99.
func ttfb(rng *rand.Rand, l LatencyConfig) time.Duration {
	norm := rng.NormFloat64()
	m := l.TTFBMedian.D()
	if m <= 0 {
		return 0
	}
	p := l.TTFBP99.D()
	if p <= m {
		return m
	}
	const z99 = 2.3263478740408408
	sigma := (math.Log(float64(p)) - math.Log(float64(m))) / z99
	return time.Duration(math.Exp(math.Log(float64(m)) + sigma*norm))
}

// newID returns prefix followed by n random alphanumerics.
func newID(rng *rand.Rand, prefix string, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	b.Grow(len(prefix) + n)
	b.WriteString(prefix)
	for range n {
		b.WriteByte(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}

// newUUID returns a random version 4 UUID string.
func newUUID(rng *rand.Rand) string {
	hi, lo := rng.Uint64(), rng.Uint64()
	hi = hi&^0xf000 | 0x4000
	lo = lo&^(0xc<<60) | 0x8<<60
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, (hi>>16)&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
}

// fingerprint is a stable system_fingerprint for a model.
func fingerprint(model string) string {
	h := fnv.New64a()
	h.Write([]byte(model))
	return fmt.Sprintf("fp_%010x", h.Sum64()&0xffffffffff)
}
