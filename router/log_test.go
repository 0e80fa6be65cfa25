package router_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/router"
)

// traceUpstream is an OpenAI-style upstream that records the headers of
// every call and fails the first failFirst calls with a 500.
type traceUpstream struct {
	mu        sync.Mutex
	headers   []http.Header
	failFirst int
}

func (u *traceUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	u.mu.Lock()
	u.headers = append(u.headers, r.Header.Clone())
	n := len(u.headers)
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if n <= u.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":{"message":"boom"}}`))
		return
	}
	_, _ = w.Write([]byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}`))
}

func (u *traceUpstream) calls() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...)
}

const traceProviderKey = "sk-upstream-trace-secret-91d2"

// newTraceRouter serves one OpenAI deployment in front of up, logging JSON
// into logs.
func newTraceRouter(t *testing.T, up http.Handler, logs io.Writer) *httptest.Server {
	t.Helper()
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	t.Setenv("TRACE_TEST_KEY", traceProviderKey)
	cfg := state.Config{
		Providers:   []state.Provider{{Name: "oai", Kind: state.KindOpenAI, Endpoint: upSrv.URL, APIKey: "env:TRACE_TEST_KEY"}},
		Deployments: []state.Deployment{{Name: "oai-west", Provider: "oai", Region: "westus", Upstream: "gpt-4o-mini"}},
		Models:      []state.Model{{Name: "gpt-4o-mini", Deployments: []string{"oai-west"}}},
		Tenants:     []state.Tenant{{Name: "team-a"}},
		Keys:        []state.Key{{ID: "demo", Hash: state.HashKey(demoKey), Tenant: "team-a"}},
		Policies:    []state.Policy{{Name: "default", Retry: fastRetries().Retry}},
	}
	snap, err := state.Build(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := router.New(router.Config{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	r.Update(snap)
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(func() { srv.Close(); r.Close() })
	return srv
}

// TestRequestIDAndTraceparent: the request id and the W3C trace context
// reach the upstream on every attempt, each attempt as a new span of the
// client's trace (or of a new trace when the client's is absent or
// malformed), and the request id comes back to the client.
func TestRequestIDAndTraceparent(t *testing.T) {
	const (
		clientTrace = "0af7651916cd43dd8448eb211c80319c"
		clientSpan  = "b7ad6b7169203331"
		clientTP    = "00-" + clientTrace + "-" + clientSpan + "-01"
	)
	tests := []struct {
		name        string
		reqID       string // sent as X-Request-Id ("" sends none)
		traceparent string
		tracestate  string
		keepID      bool
		keepTrace   bool
	}{
		{name: "client ids are continued", reqID: "client-req-42", traceparent: clientTP, tracestate: "vendor=abc", keepID: true, keepTrace: true},
		{name: "no ids: both generated", keepID: false, keepTrace: false},
		{name: "malformed ids are replaced", reqID: "bad id\twith spaces", traceparent: strings.ToUpper(clientTP), tracestate: "vendor=abc"},
		{name: "overlong request id is replaced", reqID: strings.Repeat("x", 200), traceparent: "00-" + clientTrace + "-0000000000000000-01"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := &traceUpstream{failFirst: 1}
			srv := newTraceRouter(t, up, io.Discard)
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(chatBody(false, 8)))
			req.Header.Set("Authorization", "Bearer "+demoKey)
			if tc.reqID != "" {
				req.Header.Set("X-Request-Id", tc.reqID)
			}
			if tc.traceparent != "" {
				req.Header.Set("Traceparent", tc.traceparent)
			}
			if tc.tracestate != "" {
				req.Header.Set("Tracestate", tc.tracestate)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			gotID := resp.Header.Get("X-Request-Id")
			if tc.keepID && gotID != tc.reqID {
				t.Fatalf("request id %q, want the client's %q", gotID, tc.reqID)
			}
			if !tc.keepID && (gotID == "" || gotID == tc.reqID || !strings.HasPrefix(gotID, "req_")) {
				t.Fatalf("request id %q, want a generated one", gotID)
			}
			calls := up.calls()
			if len(calls) != 2 {
				t.Fatalf("upstream saw %d attempts, want 2 (one failure, one retry)", len(calls))
			}
			var traceID string
			spans := map[string]bool{}
			for i, h := range calls {
				if h.Get("X-Request-Id") != gotID {
					t.Fatalf("attempt %d carried request id %q, want %q", i+1, h.Get("X-Request-Id"), gotID)
				}
				tp := h.Get("Traceparent")
				parts := strings.Split(tp, "-")
				if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || parts[3] != "01" {
					t.Fatalf("attempt %d traceparent %q", i+1, tp)
				}
				if i == 0 {
					traceID = parts[1]
				} else if parts[1] != traceID {
					t.Fatalf("attempts are in different traces: %s and %s", traceID, parts[1])
				}
				if spans[parts[2]] || parts[2] == clientSpan || parts[2] == strings.Repeat("0", 16) {
					t.Fatalf("attempt %d reuses span id %s", i+1, parts[2])
				}
				spans[parts[2]] = true
				wantState := ""
				if tc.keepTrace {
					wantState = tc.tracestate
				}
				if got := h.Get("Tracestate"); got != wantState {
					t.Fatalf("attempt %d tracestate %q, want %q", i+1, got, wantState)
				}
			}
			if (traceID == clientTrace) != tc.keepTrace {
				t.Fatalf("trace id %s, client's %s, continued want %v", traceID, clientTrace, tc.keepTrace)
			}
		})
	}
}

// TestRequestLogLine: one info line per finished request with its
// identity, routing, outcome, tokens, attempts and latency, and nothing
// secret: no provider key, no virtual key, no prompt text.
func TestRequestLogLine(t *testing.T) {
	logs := &syncBuffer{}
	up := &traceUpstream{failFirst: 1}
	srv := newTraceRouter(t, up, logs)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(chatBody(false, 8)))
	req.Header.Set("Authorization", "Bearer "+demoKey)
	req.Header.Set("X-Request-Id", "log-line-req-1")
	req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// The line is written once the handler returns, which may be just
	// after the client has its answer.
	var line map[string]any
	waitFor(t, 5*time.Second, "the request log line", func() bool {
		line = nil
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" {
				if line != nil {
					t.Fatal("more than one request line for one request")
				}
				line = m
			}
		}
		return line != nil
	})
	want := map[string]any{
		"level": "INFO", "request_id": "log-line-req-1", "trace_id": "0af7651916cd43dd8448eb211c80319c",
		"tenant": "team-a", "key_id": "demo", "model": "gpt-4o-mini", "deployment": "oai-west", "region": "westus",
		"status": float64(200), "prompt_tokens": float64(11), "completion_tokens": float64(3), "attempts": float64(2),
		"endpoint": "chat", "stream": false,
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, line[k], line[k], v)
		}
	}
	if ms, ok := line["latency_ms"].(float64); !ok || ms <= 0 {
		t.Errorf("latency_ms = %v", line["latency_ms"])
	}
	all := logs.String()
	for _, secret := range []string{traceProviderKey, demoKey, "Say hello to the team", "You are terse"} {
		if strings.Contains(all, secret) {
			t.Errorf("the logs contain %q", secret)
		}
	}
	// Each attempt's span is logged at debug, so a provider's record of
	// one attempt can be matched.
	if n := strings.Count(all, `"msg":"upstream attempt"`); n != 2 {
		t.Errorf("%d attempt lines, want 2", n)
	}
}
