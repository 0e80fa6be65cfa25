package mock

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

func TestFaultsHTTPErrors(t *testing.T) {
	tests := []struct {
		name       string
		rule       map[string]any
		status     int
		code       string
		retryAfter string
		kind       string
	}{
		{"500", map[string]any{"deployment": "gpt-4o-mini", "error_500": 1}, 500, "InternalServerError", "", FaultError500},
		{"503", map[string]any{"deployment": "*", "error_503": 1.0, "retry_after_503": "2s"}, 503, "ServiceUnavailable", "2", FaultError503},
		{"force 429", map[string]any{"deployment": "gpt-4o-mini", "force_429_for": "30s"}, 429, "429", "30", FaultForce429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(epoch)
			cfg := testConfig(DialectAzure)
			cfg.Now = clk.Now
			r, srv := startRegion(t, cfg)
			var fr FaultsResponse
			if code := control(t, srv, http.MethodPost, "/mock/faults", tt.rule, &fr); code != http.StatusOK || len(fr.Faults) != 1 {
				t.Fatalf("set faults: %d %+v", code, fr)
			}
			url := apiPath(srv, DialectAzure, "gpt-4o-mini", "chat/completions")
			resp, b := post(t, srv, url, chatBody(t, nil), nil)
			if resp.StatusCode != tt.status || !bytes.Contains(b, []byte(`"code":"`+tt.code+`"`)) {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
			if got := resp.Header.Get("retry-after"); got != tt.retryAfter {
				t.Errorf("retry-after %q, want %q", got, tt.retryAfter)
			}
			if resp.Header.Get("apim-request-id") == "" {
				t.Error("no apim-request-id")
			}
			st := r.Stats().Deployments["gpt-4o-mini"]
			if st.ErrorsInjected[tt.kind] != 1 || st.Requests != 1 {
				t.Errorf("stats %+v", st)
			}

			if tt.kind == FaultForce429 {
				// The storm counts down to a fixed instant, then ends.
				clk.Set(epoch.Add(10*time.Second + 200*time.Millisecond))
				resp, _ = post(t, srv, url, chatBody(t, nil), nil)
				if resp.StatusCode != 429 || resp.Header.Get("retry-after") != "20" || resp.Header.Get("x-ms-retry-after-ms") != "19800" {
					t.Errorf("storm countdown: %d %v", resp.StatusCode, resp.Header)
				}
				if fr.Faults[0].Force429UntilMS != epoch.Add(30*time.Second).UnixMilli() {
					t.Errorf("force_429_until_ms %d", fr.Faults[0].Force429UntilMS)
				}
				clk.Set(epoch.Add(30 * time.Second))
				if resp, b := post(t, srv, url, chatBody(t, nil), nil); resp.StatusCode != 200 {
					t.Errorf("after storm: %d %s", resp.StatusCode, b)
				}
				if st := r.Stats().Deployments["gpt-4o-mini"]; st.Rejected429 != 0 || len(st.RejectedArrivalsNS) != 2 || st.Accepted != 1 {
					t.Errorf("storm stats %+v", st)
				}
			}

			if code := control(t, srv, http.MethodDelete, "/mock/faults", nil, &fr); code != http.StatusOK || len(fr.Faults) != 0 {
				t.Fatalf("clear faults: %d %+v", code, fr)
			}
			if resp, b := post(t, srv, url, chatBody(t, nil), nil); resp.StatusCode != 200 {
				t.Errorf("after clear: %d %s", resp.StatusCode, b)
			}
		})
	}
}

func TestFaultsConnection(t *testing.T) {
	for _, tt := range []struct {
		name string
		rule map[string]any
		kind string
	}{
		{"reset", map[string]any{"deployment": "gpt-4o-mini", "reset": 1}, FaultReset},
		{"down", map[string]any{"deployment": "*", "down": true}, FaultDown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, srv := startRegion(t, testConfig(DialectOpenAI))
			if code := control(t, srv, http.MethodPost, "/mock/faults", tt.rule, nil); code != http.StatusOK {
				t.Fatalf("set faults: %d", code)
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", bytes.NewReader(chatBody(t, nil)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testKey)
			resp, err := srv.Client().Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("want a connection error, got %d", resp.StatusCode)
			}
			st := r.Stats().Deployments["gpt-4o-mini"]
			if st.ErrorsInjected[tt.kind] < 1 || st.Accepted != 0 || st.ChargedTokens != 0 {
				t.Errorf("stats %+v", st)
			}
			eventually(t, "in_flight back to 0", func() bool { return r.Stats().Deployments["gpt-4o-mini"].InFlight == 0 })
		})
	}
}

func TestFaultStreamCut(t *testing.T) {
	r, srv := startRegion(t, testConfig(DialectAzure))
	if err := r.SetFaults("gpt-4o-mini", Faults{StreamCut: 1}); err != nil {
		t.Fatal(err)
	}
	client := clientFor(srv, DialectAzure)
	for i := range 5 {
		stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("cut me")},
		})
		for stream.Next() {
		}
		if stream.Err() == nil {
			t.Fatalf("stream %d: no error after a cut", i)
		}
	}
	eventually(t, "stream cuts counted", func() bool {
		st := r.Stats().Deployments["gpt-4o-mini"]
		return st.ErrorsInjected[FaultStreamCut] == 5 && st.InFlight == 0
	})
	if st := r.Stats().Deployments["gpt-4o-mini"]; st.Completed != 0 || st.CompletionTokens != 0 || st.Accepted != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultStallCanceledByClient(t *testing.T) {
	r, srv := startRegion(t, testConfig(DialectOpenAI))
	if code := control(t, srv, http.MethodPost, "/mock/faults", map[string]any{"deployment": "gpt-4o-mini", "stall": 1}, nil); code != 200 {
		t.Fatalf("set faults: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	client := openaiClient(srv, testKey)
	go func() {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("wait")},
		})
		done <- err
	}()
	eventually(t, "request stalled", func() bool {
		st := r.Stats().Deployments["gpt-4o-mini"]
		return st.InFlight == 1 && st.ErrorsInjected[FaultStall] == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("client error %v", err)
	}
	eventually(t, "stall canceled", func() bool {
		st := r.Stats().Deployments["gpt-4o-mini"]
		return st.Canceled == 1 && st.InFlight == 0
	})
	if st := r.Stats().Deployments["gpt-4o-mini"]; st.Completed != 0 || st.Accepted != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultStallFor(t *testing.T) {
	r, srv := startRegion(t, testConfig(DialectOpenAI))
	if err := r.SetFaults(AllDeployments, Faults{Stall: 1, StallFor: Duration(20 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, b := post(t, srv, srv.URL+"/v1/chat/completions", chatBody(t, nil), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Errorf("stall_for not applied: %v", el)
	}
	if st := r.Stats().Deployments["gpt-4o-mini"]; st.ErrorsInjected[FaultStall] != 1 || st.Completed != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestStallReleasedByClose(t *testing.T) {
	r, srv := startRegion(t, testConfig(DialectAzure))
	if err := r.SetFaults("gpt-4o-mini", Faults{Stall: 1}); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, apiPath(srv, DialectAzure, "gpt-4o-mini", "chat/completions"), bytes.NewReader(chatBody(t, nil)))
		req.Header.Set("api-key", testKey)
		resp, err := srv.Client().Do(req)
		if err != nil {
			done <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	eventually(t, "request stalled", func() bool { return r.Stats().Deployments["gpt-4o-mini"].InFlight == 1 })
	_ = r.Close()
	if code := <-done; code != http.StatusServiceUnavailable {
		t.Errorf("after Close: %d", code)
	}
}

func TestFaultsControlValidation(t *testing.T) {
	_, srv := startRegion(t, testConfig(DialectAzure))
	tests := []struct {
		name string
		body any
		want int
	}{
		{"probability above 1", map[string]any{"deployment": "*", "error_500": 2}, 400},
		{"unknown field", map[string]any{"deployment": "*", "explode": true}, 400},
		{"no deployment", map[string]any{"error_500": 0.5}, 400},
		{"unknown deployment", map[string]any{"deployment": "nope", "error_500": 0.5}, 404},
		{"bad duration", map[string]any{"deployment": "*", "stall_for": "soon"}, 400},
		{"ok", map[string]any{"deployment": "text-embedding-3-small", "extra_latency": "1ms", "error_503": 0.25}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := control(t, srv, http.MethodPost, "/mock/faults", tt.body, nil); code != tt.want {
				t.Errorf("status %d, want %d", code, tt.want)
			}
		})
	}
	var fr FaultsResponse
	control(t, srv, http.MethodGet, "/mock/faults", nil, &fr)
	if len(fr.Faults) != 1 || fr.Faults[0].Deployment != "text-embedding-3-small" || fr.Faults[0].Error503 != 0.25 ||
		fr.Faults[0].ExtraLatency != Duration(time.Millisecond) {
		t.Errorf("faults %+v", fr)
	}
	if code := control(t, srv, http.MethodPut, "/mock/faults", nil, nil); code != 405 {
		t.Errorf("PUT: %d", code)
	}
	if code := control(t, srv, http.MethodGet, "/mock/nope", nil, nil); code != 404 {
		t.Errorf("unknown control path: %d", code)
	}
}

func TestMergeFaults(t *testing.T) {
	until := epoch.Add(time.Minute)
	own := faultState{Faults: Faults{Error500: 0.5}}
	all := faultState{Faults: Faults{Error500: 0.1, Error503: 0.2, Down: true}, force429Until: until}
	m := mergeFaults(own, all)
	if m.Error500 != 0.5 || m.Error503 != 0.2 || !m.Down || !m.force429Until.Equal(until) {
		t.Errorf("merged %+v", m)
	}
}

func TestDeterministicPerSeed(t *testing.T) {
	answers := func(seed int64) []string {
		cfg := testConfig(DialectOpenAI)
		cfg.Seed = seed
		cfg.Faults = map[string]Faults{"*": {Error500: 0.3}}
		_, srv := startRegion(t, cfg)
		var out []string
		for range 8 {
			resp, b := post(t, srv, srv.URL+"/v1/chat/completions", chatBody(t, nil), nil)
			b = regexp.MustCompile(`"created":\d+`).ReplaceAll(b, nil)
			out = append(out, resp.Status+string(b)+resp.Header.Get("x-request-id"))
		}
		return out
	}
	a, b, c := answers(7), answers(7), answers(8)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, answer %d differs:\n%s\n%s", i, a[i], b[i])
		}
	}
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Error("different seeds gave the same answers")
	}
}
