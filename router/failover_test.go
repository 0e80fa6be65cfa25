package router_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/router"
)

func fastRetries() state.Policy {
	return state.Policy{Retry: state.RetryPolicy{MaxAttempts: 3, BaseInterval: state.Duration(time.Millisecond), MaxInterval: state.Duration(5 * time.Millisecond)}}
}

func setFaults(t *testing.T, r *mock.Region, f mock.Faults) {
	t.Helper()
	if err := r.SetFaults("gpt-4o-mini", f); err != nil {
		t.Fatal(err)
	}
}

func TestFailoverOnServerErrors(t *testing.T) {
	e := newEnv(t, envOpts{policy: fastRetries(), health: router.HealthConfig{FailureThreshold: 3, OpenFor: time.Minute}})
	setFaults(t, e.regions["eastus"], mock.Faults{Error500: 1})
	c := e.client()
	for i := 0; i < 20; i++ {
		var resp *http.Response
		if _, err := c.Chat.Completions.New(context.Background(), chatParams(8), option.WithResponseInto(&resp)); err != nil {
			t.Fatalf("request %d failed although swedencentral is healthy: %v", i, err)
		}
		if d := resp.Header.Get("X-Sluice-Deployment"); d != "swedencentral-chat" {
			t.Fatalf("served by %q", d)
		}
	}
	// Failing eastus is avoided: at most the failures that open its circuit.
	if east := e.stats("eastus").Requests; east < 1 || east > 3 {
		t.Fatalf("eastus got %d requests", east)
	}
	if !strings.Contains(e.metricsText(), `sluice_upstream_attempts_total{deployment="eastus-chat",outcome="error_500"}`) {
		t.Fatal("upstream errors not counted in metrics")
	}
}

// TestCircuitOpensAndRecovers: consecutive failures open the circuit, an
// open circuit sends nothing upstream, and a half-open probe closes it once
// the deployment answers again.
func TestCircuitOpensAndRecovers(t *testing.T) {
	e := newEnv(t, envOpts{regionsNo: 1, policy: fastRetries(), health: router.HealthConfig{FailureThreshold: 3, OpenFor: 300 * time.Millisecond}})
	setFaults(t, e.regions["eastus"], mock.Faults{Error500: 1})
	for i := 0; i < 10; i++ {
		if code, _, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8)); code != http.StatusServiceUnavailable {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	if got := e.stats("eastus").Requests; got != 3 {
		t.Fatalf("eastus got %d requests; the circuit should open after 3 failures and send nothing more", got)
	}
	e.regions["eastus"].ClearFaults()
	c := e.client()
	waitFor(t, 10*time.Second, "the circuit to close", func() bool {
		_, err := c.Chat.Completions.New(context.Background(), chatParams(8))
		return err == nil
	})
	for i := 0; i < 5; i++ {
		if _, err := c.Chat.Completions.New(context.Background(), chatParams(8)); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
}

// TestThrottleCoolsDeployment: a 429 with retry-after cools the deployment
// until then; the request and its successors go to the other region, and
// the provider's own log shows no request before the retry-after.
func TestThrottleCoolsDeployment(t *testing.T) {
	// A short latency decay so that the idle region is probed again soon
	// after its cooling ends, even under sequential load.
	e := newEnv(t, envOpts{policy: fastRetries(), health: router.HealthConfig{Decay: 200 * time.Millisecond}})
	const storm = 1500 * time.Millisecond
	set := time.Now()
	setFaults(t, e.regions["eastus"], mock.Faults{Force429For: mock.Duration(storm)})
	stormEnd := set.Add(storm).UnixNano()
	c := e.client()
	waitFor(t, 10*time.Second, "a request to meet the storm", func() bool {
		if _, err := c.Chat.Completions.New(context.Background(), chatParams(8)); err != nil {
			t.Fatalf("request failed instead of failing over: %v", err)
		}
		return len(e.stats("eastus").RejectedArrivalsNS) > 0
	})
	for time.Now().UnixNano() < stormEnd+int64(200*time.Millisecond) {
		if _, err := c.Chat.Completions.New(context.Background(), chatParams(8)); err != nil {
			t.Fatalf("request during cooling failed: %v", err)
		}
	}
	st := e.stats("eastus")
	if len(st.RejectedArrivalsNS) != 1 {
		t.Fatalf("eastus rejected %d requests; cooling should stop after the first 429", len(st.RejectedArrivalsNS))
	}
	first := st.RejectedArrivalsNS[0]
	for _, at := range st.AcceptedArrivalsNS {
		if at > first && at < stormEnd-int64(5*time.Millisecond) {
			t.Fatalf("eastus got a request %v before its retry-after ended", time.Duration(stormEnd-at))
		}
	}
	waitFor(t, 5*time.Second, "eastus to serve after cooling", func() bool {
		var resp *http.Response
		_, err := c.Chat.Completions.New(context.Background(), chatParams(8), option.WithResponseInto(&resp))
		return err == nil && resp.Header.Get("X-Sluice-Deployment") == "eastus-chat"
	})
}

// TestRetryBudget: with every deployment failing, retries stay within the
// budget (20% of requests plus a small floor) instead of tripling load.
func TestRetryBudget(t *testing.T) {
	e := newEnv(t, envOpts{policy: fastRetries(), health: router.HealthConfig{FailureThreshold: 1 << 30}})
	for _, r := range e.regions {
		setFaults(t, r, mock.Faults{Error500: 1})
	}
	const n = 100
	for i := 0; i < n; i++ {
		if code, _, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8)); code != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", code, body)
		}
	}
	upstream := e.stats("eastus").Requests + e.stats("swedencentral").Requests
	t.Logf("%d requests made %d upstream attempts (no budget would be %d)", n, upstream, 3*n)
	if upstream < n || upstream > n+n/5+10+2 {
		t.Fatalf("%d upstream attempts for %d requests: retry budget not enforced", upstream, n)
	}
	if !strings.Contains(e.metricsText(), "sluice_retry_budget_exhausted_total") {
		t.Fatal("budget exhaustion not counted")
	}
}

// TestNoRetryAfterFirstStreamedByte: a stream cut after its first chunk
// reached the client ends with an error event and is not retried.
func TestNoRetryAfterFirstStreamedByte(t *testing.T) {
	e := newEnv(t, envOpts{policy: fastRetries()})
	for _, r := range e.regions {
		setFaults(t, r, mock.Faults{StreamCut: 1})
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/chat/completions", strings.NewReader(chatBody(true, 64)))
	req.Header.Set("Authorization", "Bearer "+demoKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
		}
	}
	if len(events) < 2 || events[len(events)-1] == "[DONE]" || !strings.Contains(events[len(events)-1], "stream_interrupted") {
		t.Fatalf("want chunks then an error event, got %q", events)
	}
	if got := e.stats("eastus").Requests + e.stats("swedencentral").Requests; got != 1 {
		t.Fatalf("%d upstream requests: a started stream was retried", got)
	}
	waitFor(t, 2*time.Second, "the usage record", func() bool { return len(e.recordsSnapshot()) == 1 })
	if rec := e.recordsSnapshot()[0]; !rec.Estimated || rec.Attempts != 1 {
		t.Fatalf("record %+v", rec)
	}
}

// TestFallbacksThenStatic: a model whose pool fails falls back to the next
// model, then to its static response, else 503 in OpenAI's error shape.
func TestFallbacksThenStatic(t *testing.T) {
	e := newEnv(t, envOpts{policy: fastRetries(), editCfg: func(c *state.Config) {
		c.Models = append(c.Models,
			state.Model{Name: "east-first", Deployments: []string{"eastus-chat"}, Fallbacks: []string{"gpt-4o-mini"}},
			state.Model{Name: "east-static", Deployments: []string{"eastus-chat"}, StaticResponse: "Busy, try later."},
			state.Model{Name: "east-only", Deployments: []string{"eastus-chat"}},
		)
	}})
	setFaults(t, e.regions["eastus"], mock.Faults{Down: true})
	c := e.client()
	var resp *http.Response
	p := chatParams(8)
	p.Model = "east-first"
	if _, err := c.Chat.Completions.New(context.Background(), p, option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	if d := resp.Header.Get("X-Sluice-Deployment"); d != "swedencentral-chat" {
		t.Fatalf("fallback served by %q", d)
	}
	p.Model = "east-static"
	out, err := c.Chat.Completions.New(context.Background(), p)
	if err != nil || out.Choices[0].Message.Content != "Busy, try later." {
		t.Fatalf("static: %v %+v", err, out)
	}
	s := c.Chat.Completions.NewStreaming(context.Background(), p)
	var text string
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			text += ch.Choices[0].Delta.Content
		}
	}
	if s.Err() != nil || text != "Busy, try later." {
		t.Fatalf("static stream: %v %q", s.Err(), text)
	}
	p.Model = "east-only"
	_, err = c.Chat.Completions.New(context.Background(), p)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.Code != "no_deployment_available" {
		t.Fatalf("want a 503 OpenAI error, got %v", err)
	}
}

// TestClientDisconnectCancelsUpstream: a client that goes away cancels the
// upstream call; the provider sees the cancellation.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	e := newEnv(t, envOpts{regionsNo: 1})
	setFaults(t, e.regions["eastus"], mock.Faults{Stall: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		c := e.client()
		_, err := c.Chat.Completions.New(ctx, chatParams(8))
		done <- err
	}()
	waitFor(t, 5*time.Second, "the request to reach the provider", func() bool { return e.stats("eastus").InFlight == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v", err)
	}
	waitFor(t, 5*time.Second, "the provider to see the cancel", func() bool { return e.stats("eastus").Canceled == 1 })
	waitFor(t, 5*time.Second, "the usage record", func() bool { return len(e.recordsSnapshot()) == 1 })
	if rec := e.recordsSnapshot()[0]; rec.Status != 499 {
		t.Fatalf("record status %d, want 499", rec.Status)
	}
}

// TestFirstByteTimeout: a deployment that stalls past the first-byte
// timeout is abandoned for the other; when all stall the client gets 504.
func TestFirstByteTimeout(t *testing.T) {
	pol := fastRetries()
	pol.Timeouts = state.TimeoutPolicy{FirstByte: state.Duration(200 * time.Millisecond), Total: state.Duration(2 * time.Second)}
	e := newEnv(t, envOpts{policy: pol})
	setFaults(t, e.regions["eastus"], mock.Faults{Stall: 1})
	for i := 0; i < 3; i++ {
		if code, h, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8)); code != 200 || h.Get("X-Sluice-Deployment") != "swedencentral-chat" {
			t.Fatalf("with one region stalling: %d %s", code, body)
		}
	}
	setFaults(t, e.regions["swedencentral"], mock.Faults{Stall: 1})
	code, _, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8))
	if code != http.StatusGatewayTimeout || !strings.Contains(body, `"timeout"`) {
		t.Fatalf("all stalling: %d %s", code, body)
	}
}
