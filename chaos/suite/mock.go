package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
)

// MockConfig configures the mockllm process.
type MockConfig struct {
	// Bin is the path of the mockllm binary. Required.
	Bin string
	// Dir holds its config file and log. Required.
	Dir string
	// Regions are served each on its Listen address (set it: the suite
	// picks free ports so it knows them without reading the log).
	Regions []mock.RegionConfig
	// Seed seeds every region's random source.
	Seed int64
}

// Mock is a running mockllm process and a client of its control API.
type Mock struct {
	cfg     MockConfig
	LogPath string
	http    *http.Client
	cmd     *exec.Cmd
	exited  chan struct{}
	addrs   map[string]string // region -> listen address
}

// StartMock writes the config file and starts mockllm; it returns once
// every region answers GET /mock/stats.
func StartMock(ctx context.Context, cfg MockConfig) (*Mock, error) {
	if cfg.Bin == "" || cfg.Dir == "" || len(cfg.Regions) == 0 {
		return nil, errors.New("mock config: Bin, Dir and Regions are required")
	}
	m := &Mock{cfg: cfg, LogPath: filepath.Join(cfg.Dir, "mockllm.log"),
		http: &http.Client{Timeout: 10 * time.Second}, addrs: map[string]string{}}
	for _, r := range cfg.Regions {
		m.addrs[r.Name] = r.Listen
	}
	doc, err := json.Marshal(struct {
		Regions []mock.RegionConfig `json:"regions"`
	}{cfg.Regions})
	if err != nil {
		return nil, fmt.Errorf("mock config: %w", err)
	}
	// JSON is YAML: mockllm reads it as its config file.
	path := filepath.Join(cfg.Dir, "mockllm.yaml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		return nil, fmt.Errorf("mock config: %w", err)
	}
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("mock log: %w", err)
	}
	m.cmd = exec.Command(cfg.Bin, "-config", path, "-seed", fmt.Sprint(cfg.Seed))
	m.cmd.Env = HermeticEnv()
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = childAttr()
	if err := m.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start mockllm: %w", err)
	}
	m.exited = make(chan struct{})
	go func() { // owned by the process: ends when it is reaped
		defer close(m.exited)
		_ = m.cmd.Wait()
		_ = logf.Close()
	}()
	err = Poll(ctx, 20*time.Second, 50*time.Millisecond, func() error {
		select {
		case <-m.exited:
			return fmt.Errorf("mockllm exited: %s", Tail(m.LogPath, 10))
		default:
		}
		for name := range m.addrs {
			if _, err := m.Stats(ctx, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("mockllm not serving: %w", err)
	}
	return m, nil
}

// Addr returns the listen address of a region.
func (m *Mock) Addr(region string) string { return m.addrs[region] }

// Close kills the process and waits for it. It is idempotent.
func (m *Mock) Close() error {
	if m.cmd == nil || m.cmd.Process == nil {
		return nil
	}
	select {
	case <-m.exited:
		return nil
	default:
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.exited
	return nil
}

func (m *Mock) call(ctx context.Context, method, region, path string, in, out any) error {
	addr, ok := m.addrs[region]
	if !ok {
		return fmt.Errorf("mock: unknown region %q", region)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("mock %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return fmt.Errorf("mock %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.http.Do(req)
	if err != nil {
		return fmt.Errorf("mock %s %s: %w", region, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("mock %s %s %s: %d %s", region, method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("mock %s %s: decode: %w", region, path, err)
	}
	return nil
}

// Stats returns a region's own counts (GET /mock/stats).
func (m *Mock) Stats(ctx context.Context, region string) (mock.Stats, error) {
	var s mock.Stats
	err := m.call(ctx, http.MethodGet, region, "/mock/stats", nil, &s)
	return s, err
}

// SetFaults replaces the faults of one deployment ("*" for all) of a
// region (POST /mock/faults).
func (m *Mock) SetFaults(ctx context.Context, region, deployment string, f mock.Faults) error {
	return m.call(ctx, http.MethodPost, region, "/mock/faults", mock.FaultRule{Deployment: deployment, Faults: f}, nil)
}

// ClearFaults removes every fault of a region (DELETE /mock/faults).
func (m *Mock) ClearFaults(ctx context.Context, region string) error {
	return m.call(ctx, http.MethodDelete, region, "/mock/faults", nil, nil)
}

// Lookup returns what a region delivered for each request id (POST
// /mock/lookup), in chunks so no call grows too large.
func (m *Mock) Lookup(ctx context.Context, region string, ids []string) (map[string][]mock.Usage, error) {
	found := map[string][]mock.Usage{}
	const chunk = 5000
	for i := 0; i < len(ids); i += chunk {
		var resp mock.LookupResponse
		if err := m.call(ctx, http.MethodPost, region, "/mock/lookup", mock.LookupRequest{IDs: ids[i:min(i+chunk, len(ids))]}, &resp); err != nil {
			return nil, err
		}
		for id, us := range resp.Found {
			found[id] = append(found[id], us...)
		}
	}
	return found, nil
}
