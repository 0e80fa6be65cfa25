package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Target is what a run sends: one URL (or several, taken in turn), a
// pre-built body and headers.
type Target struct {
	Name string
	URL  string
	// URLs, when set, replaces URL: request i goes to URLs[i%len(URLs)]
	// (round-robin over the nodes of a cluster).
	URLs    []string
	Body    []byte
	Headers http.Header
	// Stream reads the answer as SSE and measures time to first byte.
	Stream bool
}

// url returns the URL of the i-th request.
func (t Target) url(i int) string {
	if len(t.URLs) > 0 {
		return t.URLs[i%len(t.URLs)]
	}
	return t.URL
}

// Run is one open-loop run at a fixed rate.
type Run struct {
	Rate     int           // requests per second
	Duration time.Duration // how long to offer load
	Timeout  time.Duration // per request; default 10s
	Client   *http.Client  // default: a pooled client
}

// Result summarises a run. Open-loop latencies are from the intended send
// time; closed-loop ones from the actual send.
type Result struct {
	Target      string `json:"target"`
	OfferedRate int    `json:"offered_rps"`
	// Achieved is the rate requests were sent at (open loop) or completed
	// at (closed loop, where nothing is offered).
	Achieved float64     `json:"achieved_rps"`
	Sent     int         `json:"sent"`
	Statuses map[int]int `json:"statuses"`
	Errors   int         `json:"errors"`
	// Timeouts counts the errors that were the request timeout.
	Timeouts int           `json:"timeouts"`
	Latency  Quantiles     `json:"latency"`
	TTFB     Quantiles     `json:"ttfb"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	// Workers is the concurrency of a closed-loop run (0 for open loop).
	Workers int `json:"workers,omitempty"`

	// Raw samples and the time spent sending, kept for Merge.
	lat, ttfb []time.Duration
	window    time.Duration
}

// Merge combines results of one target measured in several slices (for
// example rounds interleaved with other targets, so that a disturbance of
// the machine hits every target alike): counts add up, quantiles are
// those of all the samples and the achieved rate is over all the slices'
// sending time. The target name, offered rate and workers are the first
// result's.
func Merge(rs ...Result) Result {
	if len(rs) == 0 {
		return Result{Statuses: map[int]int{}}
	}
	out := Result{Target: rs[0].Target, OfferedRate: rs[0].OfferedRate, Workers: rs[0].Workers, Statuses: map[int]int{}}
	for _, r := range rs {
		out.Sent += r.Sent
		out.Errors += r.Errors
		out.Timeouts += r.Timeouts
		out.Elapsed += r.Elapsed
		out.window += r.window
		for k, v := range r.Statuses {
			out.Statuses[k] += v
		}
		out.lat = append(out.lat, r.lat...)
		out.ttfb = append(out.ttfb, r.ttfb...)
	}
	if out.window > 0 {
		out.Achieved = float64(out.Sent) / out.window.Seconds()
	}
	out.Latency = quantiles(out.lat)
	out.TTFB = quantiles(out.ttfb)
	return out
}

// OK is the number of requests answered 200.
func (r Result) OK() int { return r.Statuses[http.StatusOK] }

// Failed counts transport errors and answers other than 200.
func (r Result) Failed() int { return r.Sent - r.OK() }

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
		DisableCompression: true,
	}}
}

// collector gathers outcomes from many goroutines.
type collector struct {
	mu    sync.Mutex
	res   *Result
	lat   []time.Duration
	ttfbs []time.Duration
}

func (c *collector) add(status int, lat, ttfb time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.res.Errors++
		if errors.Is(err, context.DeadlineExceeded) {
			c.res.Timeouts++
		}
		return
	}
	c.res.Statuses[status]++
	c.lat = append(c.lat, lat)
	if ttfb > 0 {
		c.ttfbs = append(c.ttfbs, ttfb)
	}
}

func (c *collector) finish() {
	c.res.Latency = quantiles(c.lat)
	c.res.TTFB = quantiles(c.ttfbs)
	c.res.lat, c.res.ttfb = c.lat, c.ttfbs
}

// Do runs the load against t and blocks until every request finished.
// When the generator falls behind its schedule it sends the late requests
// at once, so the offered rate holds and the delay shows in the latency.
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
	if r.Rate <= 0 || r.Duration <= 0 {
		return res
	}
	n := int(float64(r.Rate) * r.Duration.Seconds())
	prealloc := min(n, 1<<20)
	c := &collector{res: &res, lat: make([]time.Duration, 0, prealloc), ttfbs: make([]time.Duration, 0, prealloc)}
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(r.Rate)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
loop:
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			status, ttfb, err := r.one(ctx, client, t, i)
			c.add(status, time.Since(due), ttfb, err)
		}(i, due)
		res.Sent++
	}
	sentIn := time.Since(start)
	wg.Wait()
	res.Elapsed = time.Since(start)
	// The i-th request is due at i*interval, so n requests on schedule
	// take n intervals: count the last one's interval too.
	res.window = sentIn + interval
	res.Achieved = float64(res.Sent) / res.window.Seconds()
	c.finish()
	return res
}

// Closed is a closed-loop run: Workers goroutines each send a request as
// soon as their previous one finished, for Duration. It finds the
// target's maximum throughput at that concurrency.
type Closed struct {
	Workers  int           // concurrent requests; default 64
	Duration time.Duration // how long to send
	Timeout  time.Duration // per request; default 10s
	Client   *http.Client  // default: a pooled client
}

// Do runs the closed loop against t and blocks until every worker stopped.
func (r Closed) Do(ctx context.Context, t Target) Result {
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Second
	}
	if r.Workers <= 0 {
		r.Workers = 64
	}
	client := r.Client
	if client == nil {
		client = NewClient()
		defer client.CloseIdleConnections()
	}
	res := Result{Target: t.Name, Statuses: map[int]int{}, Workers: r.Workers}
	c := &collector{res: &res}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := time.AfterFunc(r.Duration, cancel)
	defer stop.Stop()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		sent atomic.Int64
	)
	start := time.Now()
	for range r.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				began := time.Now()
				status, ttfb, err := r.one(ctx, client, t, i)
				if err != nil && ctx.Err() != nil {
					return // cut off by the end of the run, not a failure
				}
				sent.Add(1)
				c.add(status, time.Since(began), ttfb, err)
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Sent = int(sent.Load())
	res.window = res.Elapsed
	res.Achieved = float64(res.Sent) / res.window.Seconds()
	c.finish()
	return res
}

func (r Run) one(ctx context.Context, client *http.Client, t Target, i int) (int, time.Duration, error) {
	return send(ctx, client, r.Timeout, t, i)
}

func (r Closed) one(ctx context.Context, client *http.Client, t Target, i int) (int, time.Duration, error) {
	return send(ctx, client, r.Timeout, t, i)
}

// send makes the i-th request of t, reads the whole answer and returns the
// status and, for streams, the time to the first byte of the body.
func send(ctx context.Context, client *http.Client, timeout time.Duration, t Target, i int) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url(i), bytes.NewReader(t.Body))
	if err != nil {
		return 0, 0, fmt.Errorf("new request: %w", err)
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
