package mock

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestWindowAllowance(t *testing.T) {
	tests := []struct {
		perMinute int64
		window    time.Duration
		want      int64
	}{
		{0, time.Second, 0},
		{60, time.Second, 1},
		{59, time.Second, 1},
		{1, time.Second, 1},
		{120, time.Second, 2},
		{1000, 10 * time.Second, 166},
		{600, 10 * time.Second, 100},
		{90, time.Minute, 90},
		{1 << 62, time.Hour, 1<<63 - 1},
	}
	for _, tt := range tests {
		if got := windowAllowance(tt.perMinute, tt.window); got != tt.want {
			t.Errorf("windowAllowance(%d, %v) = %d, want %d", tt.perMinute, tt.window, got, tt.want)
		}
	}
}

func TestWindowStartAlignedToEpoch(t *testing.T) {
	at := time.Unix(1000, 500e6)
	if got := windowStart(at, 7*time.Second); got.Unix() != 994 {
		t.Errorf("7s window start = %v", got.Unix())
	}
	if got := windowStart(at, time.Second); !got.Equal(time.Unix(1000, 0)) {
		t.Errorf("1s window start = %v", got)
	}
}

func TestRPM429RetryAfter(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			clk := newFakeClock(epoch.Add(250 * time.Millisecond))
			cfg := testConfig(d)
			cfg.Now = clk.Now
			cfg.Deployments[0].RPM = 120 // 2 per 1s window
			r, srv := startRegion(t, cfg)
			url := apiPath(srv, d, "gpt-4o-mini", "chat/completions")
			body := chatBody(t, map[string]any{"max_tokens": 5})

			for i, want := range []string{"1", "0"} {
				resp, b := post(t, srv, url, body, nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
				}
				if got := resp.Header.Get("x-ratelimit-remaining-requests"); got != want {
					t.Errorf("request %d: remaining requests %q, want %q", i, got, want)
				}
				if d == DialectOpenAI && resp.Header.Get("x-ratelimit-limit-requests") != "2" {
					t.Errorf("limit header %q", resp.Header.Get("x-ratelimit-limit-requests"))
				}
			}
			resp, b := post(t, srv, url, body, nil)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("third request: %d %s", resp.StatusCode, b)
			}
			for h, want := range map[string]string{"retry-after": "1", "retry-after-ms": "750", "x-ms-retry-after-ms": "750"} {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			var e apiErrorBody
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatal(err)
			}
			if d == DialectAzure {
				if *e.Error.Code != "429" || !strings.Contains(e.Error.Message, "ChatCompletions_Create") ||
					!strings.Contains(e.Error.Message, testAPIVersion) || !strings.Contains(e.Error.Message, "retry after 1 seconds") {
					t.Errorf("azure 429 body %s", b)
				}
			} else if *e.Error.Code != "rate_limit_exceeded" || *e.Error.Type != "requests" {
				t.Errorf("openai 429 body %s", b)
			}

			clk.Set(epoch.Add(1100 * time.Millisecond))
			if resp, b := post(t, srv, url, body, nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("next window: %d %s", resp.StatusCode, b)
			}

			st := r.Stats().Deployments["gpt-4o-mini"]
			if st.Requests != 4 || st.Accepted != 3 || st.Rejected429 != 1 {
				t.Errorf("counts %+v", st)
			}
			if len(st.RejectedArrivalsNS) != 1 || st.RejectedArrivalsNS[0] != epoch.Add(250*time.Millisecond).UnixNano() {
				t.Errorf("rejected arrivals %v", st.RejectedArrivalsNS)
			}
			if len(st.AcceptedArrivalsNS) != 3 || st.AcceptedArrivalsNS[2] != epoch.Add(1100*time.Millisecond).UnixNano() {
				t.Errorf("accepted arrivals %v", st.AcceptedArrivalsNS)
			}
			w := st.RPMWindows
			if w.SizeMS != 1000 || w.MaxRequests != 2 || len(w.Windows) != 2 ||
				w.Windows[0] != (WindowCount{StartMS: epoch.UnixMilli(), Requests: 2, Tokens: w.Windows[0].Tokens}) ||
				w.Windows[1].StartMS != epoch.UnixMilli()+1000 || w.Windows[1].Requests != 1 {
				t.Errorf("rpm windows %+v", w)
			}
		})
	}
}

func TestTPMChargeAndRejection(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			clk := newFakeClock(epoch.Add(2500 * time.Millisecond))
			cfg := testConfig(d)
			cfg.Now = clk.Now
			cfg.Deployments[0].TPM = 600 // 100 tokens per 10s window
			r, srv := startRegion(t, cfg)
			url := apiPath(srv, d, "gpt-4o-mini", "chat/completions")
			body := chatBody(t, map[string]any{"max_tokens": 50})
			prompt, err := PromptTokens(KindChat, body)
			if err != nil {
				t.Fatal(err)
			}
			cost := int64(prompt + 50)
			if c, err := Cost(KindChat, body, DefaultMaxTokens); err != nil || c != cost {
				t.Fatalf("Cost = %d, %v; want %d", c, err, cost)
			}

			resp, b := post(t, srv, url, body, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("first: %d %s", resp.StatusCode, b)
			}
			if got, want := resp.Header.Get("x-ratelimit-remaining-tokens"), fmt.Sprint(100-cost); got != want {
				t.Errorf("remaining tokens %s, want %s", got, want)
			}
			if st := r.Stats().Deployments["gpt-4o-mini"]; st.ChargedTokens != cost || st.TPMWindows.MaxTokens != cost {
				t.Errorf("charged %d (window max %d), want %d", st.ChargedTokens, st.TPMWindows.MaxTokens, cost)
			}

			resp, b = post(t, srv, url, body, nil)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("second: %d %s", resp.StatusCode, b)
			}
			if resp.Header.Get("retry-after") != "8" || resp.Header.Get("retry-after-ms") != "7500" {
				t.Errorf("retry headers %v", resp.Header)
			}
			if d == DialectAzure && !strings.Contains(string(b), "token rate limit") {
				t.Errorf("body %s", b)
			}
			if d == DialectOpenAI && !strings.Contains(string(b), `"type":"tokens"`) {
				t.Errorf("body %s", b)
			}
			st := r.Stats().Deployments["gpt-4o-mini"]
			if st.ChargedTokens != cost || st.Rejected429 != 1 {
				t.Errorf("rejection was charged: %+v", st)
			}
		})
	}
}

func TestChargeOnArrival(t *testing.T) {
	tests := []struct {
		name string
		op   Kind
		dep  string
		body string
		max  int // expected output charge per answer
		n    int
	}{
		{"max_tokens", KindChat, "gpt-4o-mini", `{"messages":[{"role":"user","content":"hello"}],"max_tokens":50}`, 50, 1},
		{"max_completion_tokens wins", KindChat, "gpt-4o-mini", `{"messages":[{"role":"user","content":"hello"}],"max_tokens":50,"max_completion_tokens":30}`, 30, 1},
		{"default", KindChat, "gpt-4o-mini", `{"messages":[{"role":"user","content":"hello"}]}`, 200, 1},
		{"n choices", KindChat, "gpt-4o-mini", `{"messages":[{"role":"user","content":"hello"}],"max_tokens":10,"n":3}`, 10, 3},
		{"completions", KindCompletion, "gpt-4o-mini", `{"prompt":"Once upon a time","max_tokens":7}`, 7, 1},
		{"completions prompts", KindCompletion, "gpt-4o-mini", `{"prompt":["a b","c d e"],"max_tokens":7}`, 7, 2},
		{"embeddings", KindEmbedding, "text-embedding-3-small", `{"input":["hello world","x"]}`, 0, 0},
	}
	ops := map[Kind]string{KindChat: "chat/completions", KindCompletion: "completions", KindEmbedding: "embeddings"}
	cfg := testConfig(DialectAzure)
	cfg.Deployments[0].DefaultMaxTokens = 200
	r, srv := startRegion(t, cfg)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.Stats().Deployments[tt.dep]
			prompt, err := PromptTokens(tt.op, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			want := int64(prompt + tt.max*tt.n)
			if c, err := Cost(tt.op, []byte(tt.body), 200); err != nil || c != want {
				t.Errorf("Cost = %d, %v; want %d", c, err, want)
			}
			resp, b := post(t, srv, apiPath(srv, DialectAzure, tt.dep, ops[tt.op]), []byte(tt.body), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			after := r.Stats().Deployments[tt.dep]
			if got := after.ChargedTokens - before.ChargedTokens; got != want {
				t.Errorf("charged %d, want %d", got, want)
			}
			if got := after.PromptTokens - before.PromptTokens; got != int64(prompt) {
				t.Errorf("reported prompt tokens %d, want %d", got, prompt)
			}
			var u struct {
				Choices []json.RawMessage `json:"choices"`
			}
			if err := json.Unmarshal(b, &u); err != nil {
				t.Fatal(err)
			}
			if tt.n > 0 && len(u.Choices) != tt.n {
				t.Errorf("%d choices, want %d", len(u.Choices), tt.n)
			}
		})
	}
}

func TestStatsWindows(t *testing.T) {
	clk := newFakeClock(epoch)
	cfg := testConfig(DialectOpenAI)
	cfg.Now = clk.Now
	r, srv := startRegion(t, cfg)
	url := apiPath(srv, DialectOpenAI, "gpt-4o-mini", "chat/completions")
	body := chatBody(t, map[string]any{"max_tokens": 10})
	cost, err := Cost(KindChat, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{0, 500 * time.Millisecond, 1200 * time.Millisecond, 61 * time.Second} {
		clk.Set(epoch.Add(at))
		if resp, b := post(t, srv, url, body, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	st := r.Stats().Deployments["gpt-4o-mini"]
	check := func(name string, h WindowHistory, size int64, reqs []int64, maxReqs int64) {
		t.Helper()
		if h.SizeMS != size || len(h.Windows) != len(reqs) || h.MaxRequests != maxReqs || h.MaxTokens != maxReqs*cost {
			t.Fatalf("%s: %+v", name, h)
		}
		for i, w := range h.Windows {
			if w.Requests != reqs[i] || w.Tokens != reqs[i]*cost || w.StartMS%size != 0 {
				t.Errorf("%s window %d: %+v", name, i, w)
			}
		}
	}
	check("rpm", st.RPMWindows, 1000, []int64{2, 1, 1}, 2)
	check("tpm", st.TPMWindows, 10000, []int64{3, 1}, 3)
	check("minute", st.MinuteWindows, 60000, []int64{3, 1}, 3)

	// Fifteen minutes later the old windows are gone; the maxima stay.
	clk.Set(epoch.Add(17 * time.Minute))
	if resp, b := post(t, srv, url, body, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	st = r.Stats().Deployments["gpt-4o-mini"]
	if len(st.RPMWindows.Windows) != 1 || st.RPMWindows.MaxRequests != 2 || len(st.MinuteWindows.Windows) != 1 {
		t.Errorf("after retention: %+v", st.RPMWindows)
	}

	// Reset zeroes everything.
	if code := control(t, srv, http.MethodPost, "/mock/reset", nil, nil); code != http.StatusNoContent {
		t.Fatalf("reset: %d", code)
	}
	st = r.Stats().Deployments["gpt-4o-mini"]
	if st.Requests != 0 || st.ChargedTokens != 0 || len(st.RPMWindows.Windows) != 0 || st.RPMWindows.MaxRequests != 0 || len(st.AcceptedArrivalsNS) != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

func TestArrivalRing(t *testing.T) {
	var r ring
	for i := range arrivalRingSize + 5 {
		r.add(int64(i))
	}
	got := r.snapshot()
	if len(got) != arrivalRingSize || got[0] != 5 || got[len(got)-1] != arrivalRingSize+4 {
		t.Errorf("ring: len %d first %d last %d", len(got), got[0], got[len(got)-1])
	}
}
