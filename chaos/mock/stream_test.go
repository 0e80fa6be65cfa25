package mock

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseEvents splits a text/event-stream body into its data payloads,
// checking the framing.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		t.Fatalf("stream does not end with a blank line: %q", body[max(0, len(body)-40):])
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	expectBlank := false
	for sc.Scan() {
		line := sc.Text()
		if expectBlank {
			if line != "" {
				t.Fatalf("event not followed by a blank line: %q", line)
			}
			expectBlank = false
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected line %q", line)
		}
		out = append(out, data)
		expectBlank = true
	}
	return out
}

func TestRawChatStream(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			cfg := testConfig(d)
			cfg.Deployments[0].Latency.TokenInterval = Duration(time.Millisecond)
			cfg.Deployments[0].Completion.MeanTokens = 8
			_, srv := startRegion(t, cfg)
			body := chatBody(t, map[string]any{"stream": true, "n": 2, "stream_options": map[string]any{"include_usage": true}})
			start := time.Now()
			resp, b := post(t, srv, apiPath(srv, d, "gpt-4o-mini", "chat/completions"), body, nil)
			elapsed := time.Since(start)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			events := sseEvents(t, b)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("last event %q", events[len(events)-1])
			}
			events = events[:len(events)-1]
			type chunk struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				Choices []struct {
					Index        int             `json:"index"`
					Delta        map[string]any  `json:"delta"`
					FinishReason *string         `json:"finish_reason"`
					Filters      map[string]any  `json:"content_filter_results"`
					Logprobs     json.RawMessage `json:"logprobs"`
				} `json:"choices"`
				Usage  json.RawMessage   `json:"usage"`
				Prompt []json.RawMessage `json:"prompt_filter_results"`
			}
			var chunks []chunk
			for _, e := range events {
				var c chunk
				if err := json.Unmarshal([]byte(e), &c); err != nil {
					t.Fatalf("chunk %s: %v", e, err)
				}
				if c.Usage == nil {
					t.Errorf("chunk without usage: %s", e)
				}
				chunks = append(chunks, c)
			}
			if d == DialectAzure {
				first := chunks[0]
				if len(first.Choices) != 0 || len(first.Prompt) != 1 || string(first.Usage) != "null" {
					t.Errorf("azure prelude %s", events[0])
				}
				chunks = chunks[1:]
			}
			last := chunks[len(chunks)-1]
			var usage struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				TotalTokens      int `json:"total_tokens"`
			}
			if len(last.Choices) != 0 || json.Unmarshal(last.Usage, &usage) != nil || usage.TotalTokens == 0 {
				t.Fatalf("usage chunk %s", last.Usage)
			}
			contents := map[int]int{}
			roles, finals := 0, 0
			for _, c := range chunks[:len(chunks)-1] {
				if string(c.Usage) != "null" || len(c.Choices) != 1 || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion.chunk" {
					t.Fatalf("chunk %+v", c)
				}
				ch := c.Choices[0]
				switch {
				case ch.Delta["role"] == "assistant":
					roles++
					if ch.Delta["content"] != "" {
						t.Errorf("role chunk content %v", ch.Delta)
					}
				case ch.FinishReason != nil:
					finals++
					if len(ch.Delta) != 0 {
						t.Errorf("final delta %v", ch.Delta)
					}
				default:
					if s, _ := ch.Delta["content"].(string); s == "" {
						t.Errorf("empty content chunk %v", ch.Delta)
					}
					contents[ch.Index]++
					if (d == DialectAzure) != (len(ch.Filters) > 0) {
						t.Errorf("content filters %v", ch.Filters)
					}
				}
			}
			if roles != 2 || finals != 2 || contents[0]+contents[1] != usage.CompletionTokens || contents[1] == 0 {
				t.Errorf("roles %d finals %d contents %v usage %+v", roles, finals, contents, usage)
			}
			if min := time.Duration(usage.CompletionTokens-2) * time.Millisecond; elapsed < min {
				t.Errorf("token_interval not applied: %v < %v", elapsed, min)
			}
		})
	}
}

func TestStreamWithoutUsage(t *testing.T) {
	_, srv := startRegion(t, testConfig(DialectOpenAI))
	resp, b := post(t, srv, srv.URL+"/v1/chat/completions", chatBody(t, map[string]any{"stream": true}), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	for _, e := range sseEvents(t, b) {
		if strings.Contains(e, `"usage"`) {
			t.Fatalf("usage key without include_usage: %s", e)
		}
	}
}

func TestOpenAIRateLimitHeaders(t *testing.T) {
	clk := newFakeClock(epoch.Add(300 * time.Millisecond))
	cfg := testConfig(DialectOpenAI)
	cfg.Now = clk.Now
	cfg.Deployments[0].RPM = 600
	cfg.Deployments[0].TPM = 60000
	_, srv := startRegion(t, cfg)
	resp, b := post(t, srv, srv.URL+"/v1/chat/completions", chatBody(t, map[string]any{"max_tokens": 10}), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	want := map[string]string{
		"x-ratelimit-limit-requests":     "10",
		"x-ratelimit-remaining-requests": "9",
		"x-ratelimit-reset-requests":     "700ms",
		"x-ratelimit-limit-tokens":       "10000",
		"x-ratelimit-reset-tokens":       "9.7s",
	}
	for h, v := range want {
		if got := resp.Header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	if resp.Header.Get("x-request-id") == "" || resp.Header.Get("openai-processing-ms") == "" {
		t.Errorf("headers %v", resp.Header)
	}
}
