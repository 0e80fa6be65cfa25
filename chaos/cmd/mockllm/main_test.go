package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"eastus": "127.0.0.1:9101", "swedencentral": "127.0.0.1:9102"}
	if len(cfg.Regions) != 2 {
		t.Fatalf("regions %d", len(cfg.Regions))
	}
	for _, rc := range cfg.Regions {
		if want[rc.Name] != rc.Listen || rc.Dialect != mock.DialectAzure {
			t.Errorf("region %s on %s (%s)", rc.Name, rc.Listen, rc.Dialect)
		}
		var names []string
		for _, d := range rc.Deployments {
			names = append(names, d.Name+"/"+string(d.Kind))
		}
		if strings.Join(names, ",") != "gpt-4o-mini/chat,text-embedding-3-small/embedding" {
			t.Errorf("deployments %v", names)
		}
		r, err := mock.NewRegion(rc)
		if err != nil {
			t.Fatalf("region %s: %v", rc.Name, err)
		}
		_ = r.Close()
	}
	if k := cfg.Regions[0]; k.APIKeyEnv != "MOCK_EASTUS_KEY" || k.APIKey != "mock-eastus-key" {
		t.Errorf("eastus key config %q %q", k.APIKeyEnv, k.APIKey)
	}
	if k := cfg.Regions[1]; k.APIKeyEnv != "MOCK_SWEDENCENTRAL_KEY" || k.APIKey != "mock-swedencentral-key" {
		t.Errorf("swedencentral key config %q %q", k.APIKeyEnv, k.APIKey)
	}
}

func TestParseConfig(t *testing.T) {
	good := `
regions:
  - name: westeurope
    listen: 127.0.0.1:0
    dialect: openai
    api_key: k
    seed: 42
    faults:
      "*": {error_500: 0.1, stall_for: 2s}
    deployments:
      - name: gpt-4o
        tpm: 30000
        rpm: 180
        rpm_window: 2s
        latency: {ttfb_median: 250ms, ttfb_p99: 1s, token_interval: 10ms}
        completion: {mean_tokens: 32}
`
	cfg, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	rc := cfg.Regions[0]
	d := rc.Deployments[0]
	if rc.Dialect != mock.DialectOpenAI || rc.Seed != 42 || d.RPMWindow.D() != 2*time.Second ||
		d.Latency.TTFBMedian.D() != 250*time.Millisecond || d.Completion.MeanTokens != 32 ||
		rc.Faults["*"].StallFor.D() != 2*time.Second {
		t.Errorf("parsed %+v", rc)
	}

	bad := []struct {
		name, yaml, want string
	}{
		{"unknown field", "regions:\n- name: a\n  listen: x:1\n  colour: red\n", "colour"},
		{"no regions", "regions: []\n", "regions"},
		{"no listen", "regions:\n- name: a\n", "regions[0].listen"},
		{"duplicate name", "regions:\n- {name: a, listen: 'x:1'}\n- {name: a, listen: 'x:2'}\n", "regions[1].name"},
		{"duplicate listen", "regions:\n- {name: a, listen: 'x:1'}\n- {name: b, listen: 'x:1'}\n", "regions[1].listen"},
		{"bad duration", "regions:\n- name: a\n  listen: x:1\n  deployments: [{name: d, rpm_window: fast}]\n", "duration"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseConfig([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestRunPrintConfig(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-print-config", "-seed", "9"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(out.Bytes())
	if err != nil {
		t.Fatalf("printed config does not parse: %v\n%s", err, out.String())
	}
	want := DefaultConfig()
	for i := range want.Regions {
		want.Regions[i].Seed = 9
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("printed config differs:\n%s", out.String())
	}

	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("regions:\n- {name: a, listen: '127.0.0.1:0', api_key: k, deployments: [{name: d}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"-config", path, "-print-config"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "name: a") {
		t.Errorf("printed %s", out.String())
	}
	for _, args := range [][]string{{"-nope"}, {"-log-level", "loud"}, {"-config", filepath.Join(t.TempDir(), "missing.yaml")}, {"extra"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run %v: no error", args)
		}
	}
}

func TestServe(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
regions:
  - name: one
    listen: 127.0.0.1:0
    api_key: key-one
    deployments: [{name: chat}]
  - name: two
    listen: 127.0.0.1:0
    dialect: openai
    api_key: key-two
    faults: {chat: {stall: 1}}
    deployments: [{name: chat}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan map[string]string, 1)
	done := make(chan error, 1)
	go func() {
		got := map[string]string{}
		done <- Serve(ctx, cfg, logger, func(region, addr string) {
			got[region] = addr
			if len(got) == 2 {
				addrs <- got
			}
		})
	}()
	var a map[string]string
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()

	body := []byte(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":5}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+a["one"]+"/openai/deployments/chat/chat/completions?api-version=2024-10-21", bytes.NewReader(body))
	req.Header.Set("api-key", "key-one")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-ms-region") != "one" {
		t.Fatalf("region one: %d %v", resp.StatusCode, resp.Header)
	}

	// A request stalled in region two is released by the shutdown.
	stalled := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a["two"]+"/v1/chat/completions", bytes.NewReader([]byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)))
		req.Header.Set("Authorization", "Bearer key-two")
		resp, err := client.Do(req)
		if err != nil {
			stalled <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		stalled <- resp.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var st mock.Stats
		resp, err := client.Get("http://" + a["two"] + "/mock/stats")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if st.Deployments["chat"].InFlight == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request never stalled")
		}
		<-tick.C
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop")
	}
	if code := <-stalled; code != http.StatusServiceUnavailable {
		t.Errorf("stalled request: %d", code)
	}
	l := logs.String()
	if strings.Contains(l, "key-one") || strings.Contains(l, "key-two") {
		t.Errorf("API key logged:\n%s", l)
	}
	if !strings.Contains(l, "serving region") || !strings.Contains(l, "stopped") {
		t.Errorf("logs:\n%s", l)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
