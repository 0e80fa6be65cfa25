package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Target is what a run sends: one URL, a pre-built body and headers.
type Target struct {
	Name    string
	URL     string
	Body    []byte
	Headers http.Header
	// Stream reads the answer as SSE and measures time to first byte.
	Stream bool
}

// Run is one open-loop run at a fixed rate.
type Run struct {
	Rate     int           // requests per second
	Duration time.Duration // how long to offer load
	Timeout  time.Duration // per request; default 10s
	Client   *http.Client  // default: a pooled client
}

// Result summarises a run. Latencies are from the intended send time.
type Result struct {
	Target      string        `json:"target"`
	OfferedRate int           `json:"offered_rps"`
	Achieved    float64       `json:"achieved_rps"`
	Sent        int           `json:"sent"`
	Statuses    map[int]int   `json:"statuses"`
	Errors      int           `json:"errors"`
	Latency     Quantiles     `json:"latency"`
	TTFB        Quantiles     `json:"ttfb"`
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// Quantiles of a latency distribution.
type Quantiles struct {
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

func quantiles(s []time.Duration) Quantiles {
	if len(s) == 0 {
		return Quantiles{}
	}
	slices.Sort(s)
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(min(i, len(s)-1), 0)]
	}
	return Quantiles{P50: q(.5), P90: q(.9), P99: q(.99), P999: q(.999), Max: s[len(s)-1]}
}

// NewClient returns a client pooled for high request rates to one host.
func NewClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 30 * time.Second,
	}}
}

// Do runs the load against t and blocks until every request finished.
func (r Run) Do(ctx context.Context, t Target) Result {
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Second
	}
	client := r.Client
	if client == nil {
		client = NewClient()
		defer client.CloseIdleConnections()
	}
	res := Result{Target: t.Name, OfferedRate: r.Rate, Statuses: map[int]int{}}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		lat   = make([]time.Duration, 0, int(float64(r.Rate)*r.Duration.Seconds())+1)
		ttfbs = make([]time.Duration, 0, cap(lat))
	)
	interval := time.Second / time.Duration(r.Rate)
	start := time.Now()
	n := int(r.Duration / interval)
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				n = i
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(due time.Time) {
			defer wg.Done()
			status, ttfb, err := r.one(ctx, client, t)
			done := time.Since(due)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors++
				return
			}
			res.Statuses[status]++
			lat = append(lat, done)
			if ttfb > 0 {
				ttfbs = append(ttfbs, ttfb)
			}
		}(due)
		res.Sent++
	}
	sentIn := time.Since(start)
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Achieved = float64(res.Sent) / sentIn.Seconds()
	res.Latency = quantiles(lat)
	res.TTFB = quantiles(ttfbs)
	return res
}

func (r Run) one(ctx context.Context, client *http.Client, t Target) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return 0, 0, err
	}
	for k, v := range t.Headers {
		req.Header[k] = v
	}
	sent := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var ttfb time.Duration
	if t.Stream {
		var b [1]byte
		if _, err := io.ReadFull(resp.Body, b[:]); err == nil {
			ttfb = time.Since(sent)
		}
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, 0, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, ttfb, nil
}
