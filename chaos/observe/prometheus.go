package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoPrometheus is returned by FindPrometheus when no binary is found.
var ErrNoPrometheus = errors.New("no prometheus binary on PATH (Debian: apt-get install prometheus)")

// FindPrometheus returns the path of the prometheus binary: $PROMETHEUS
// when set, else "prometheus" looked up on PATH.
func FindPrometheus() (string, error) {
	if p := os.Getenv("PROMETHEUS"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoPrometheus, err)
	}
	return p, nil
}

// Config configures a Prometheus server run for a test.
type Config struct {
	// Binary is the prometheus executable. Default: FindPrometheus.
	Binary string
	// Dir holds the generated prometheus.yml and the TSDB. Required; a
	// test passes t.TempDir().
	Dir string
	// Targets are host:port addresses whose /metrics is scraped, as job
	// "sluice". Required.
	Targets []string
	// ScrapeInterval is the scrape and rule evaluation interval. Default 1s.
	ScrapeInterval time.Duration
	// StartTimeout bounds the wait for the server to be ready. Default 30s.
	StartTimeout time.Duration
	// Output receives the server's own log. Default: discarded.
	Output io.Writer
}

// Prometheus is a running Prometheus server, a child process of this one.
type Prometheus struct {
	addr   string
	cmd    *exec.Cmd
	done   chan struct{} // closed once the process has exited
	err    error         // the process's exit status; read after done
	client *http.Client
}

// StartPrometheus writes a configuration scraping cfg.Targets, starts the
// server on a free loopback port and waits until it is ready. On error no
// process is left running.
func StartPrometheus(ctx context.Context, cfg Config) (*Prometheus, error) {
	if cfg.Dir == "" || len(cfg.Targets) == 0 {
		return nil, errors.New("observe: Config.Dir and Config.Targets are required")
	}
	if cfg.Binary == "" {
		b, err := FindPrometheus()
		if err != nil {
			return nil, err
		}
		cfg.Binary = b
	}
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	confPath := filepath.Join(cfg.Dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(scrapeConfig(cfg.ScrapeInterval, cfg.Targets)), 0o600); err != nil {
		return nil, fmt.Errorf("write prometheus config: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Binary,
		"--config.file="+confPath,
		"--storage.tsdb.path="+filepath.Join(cfg.Dir, "data"),
		"--web.listen-address="+addr,
		"--storage.tsdb.retention.time=1h",
	)
	cmd.Stdout, cmd.Stderr = cfg.Output, cfg.Output
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	p := &Prometheus{addr: addr, cmd: cmd, done: make(chan struct{}), client: &http.Client{Timeout: 10 * time.Second}}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
	}()
	if err := p.waitReady(ctx, cfg.StartTimeout); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// scrapeConfig is a minimal prometheus.yml: one job, static targets.
func scrapeConfig(interval time.Duration, targets []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		interval, interval, interval)
	b.WriteString("scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets:\n")
	for _, t := range targets {
		fmt.Fprintf(&b, "          - %q\n", t)
	}
	return b.String()
}

// freeAddr returns a loopback address with a port the kernel just chose.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port for prometheus: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("pick a port for prometheus: %w", err)
	}
	return addr, nil
}

// waitReady polls /-/ready until it answers 200, the process exits, or
// the timeout passes.
func (p *Prometheus) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/-/ready", nil)
		if resp, err := p.client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("prometheus exited before it was ready: %w", p.err)
		case <-ctx.Done():
			return fmt.Errorf("prometheus not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Addr is the server's host:port.
func (p *Prometheus) Addr() string { return p.addr }

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and waits
// for it to exit. It is safe to call more than once.
func (p *Prometheus) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Sample is one element of an instant query's result.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// APIError is an error answered by Prometheus's HTTP API, such as a
// PromQL syntax error.
type APIError struct {
	Type, Message string
}

func (e *APIError) Error() string { return "prometheus: " + e.Type + ": " + e.Message }

// Query runs an instant PromQL query now and returns its samples; a
// scalar result is one sample without labels.
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Sample, error) {
	u := "http://" + p.addr + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query request: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode query answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if body.Status != "success" {
		return nil, &APIError{Type: body.ErrorType, Message: body.Error}
	}
	switch body.Data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &vec); err != nil {
			return nil, fmt.Errorf("decode vector: %w", err)
		}
		out := make([]Sample, 0, len(vec))
		for _, s := range vec {
			v, err := sampleValue(s.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Labels: s.Metric, Value: v})
		}
		return out, nil
	case "scalar":
		var sc [2]any
		if err := json.Unmarshal(body.Data.Result, &sc); err != nil {
			return nil, fmt.Errorf("decode scalar: %w", err)
		}
		v, err := sampleValue(sc)
		if err != nil {
			return nil, err
		}
		return []Sample{{Value: v}}, nil
	}
	return nil, fmt.Errorf("unexpected result type %q", body.Data.ResultType)
}

// sampleValue decodes Prometheus's [timestamp, "value"] pair.
func sampleValue(v [2]any) (float64, error) {
	s, ok := v[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v[1])
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("sample value %q: %w", s, err)
	}
	return f, nil
}

// HasData reports whether samples hold at least one number (not NaN): a
// panel over them would draw something.
func HasData(samples []Sample) bool {
	for _, s := range samples {
		if !math.IsNaN(s.Value) {
			return true
		}
	}
	return false
}
