package router_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluicehq/sluice/cluster/state"
)

const otherKey = "sk-sluice-test-other"

// cacheEnv is the harness with the response cache enabled for team-a and a
// second tenant, team-b, served by the same policy.
func cacheEnv(t testing.TB, edit func(*stateConfig)) *env {
	return newEnv(t, envOpts{editCfg: func(c *stateConfig) {
		c.Policies[0].Cache.Enabled = true
		c.Tenants = append(c.Tenants, state.Tenant{Name: "team-b"})
		c.Keys = append(c.Keys, state.Key{ID: "other", Hash: state.HashKey(otherKey), Tenant: "team-b"})
		if edit != nil {
			edit(c)
		}
	}})
}

// upstreamRequests is every chat request the mock regions received.
func (e *env) upstreamRequests() int64 {
	var n int64
	for name := range e.regions {
		n += e.stats(name).Requests
	}
	return n
}

// postH sends a raw request with extra headers and returns status, the
// X-Sluice-Cache header and the body.
func (e *env) postH(path, key, body string, hdr ...string) (int, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Sluice-Cache"), string(b)
}

func cachedParams() openai.ChatCompletionNewParams {
	p := chatParams(16)
	p.Temperature = openai.Float(0)
	return p
}

const cachedChat = `{"model":"gpt-4o-mini","temperature":0,"max_tokens":16,"messages":[{"role":"user","content":"Say hello to the team."}]}`

func TestCacheChatHit(t *testing.T) {
	e := cacheEnv(t, nil)
	c := e.client()
	ctx := context.Background()
	var r1, r2 *http.Response
	first, err := c.Chat.Completions.New(ctx, cachedParams(), option.WithResponseInto(&r1))
	if err != nil {
		t.Fatal(err)
	}
	if got := r1.Header.Get("X-Sluice-Cache"); got != "miss" {
		t.Fatalf("first request: cache %q, want miss", got)
	}
	before := e.upstreamRequests()
	second, err := c.Chat.Completions.New(ctx, cachedParams(), option.WithResponseInto(&r2))
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.Header.Get("X-Sluice-Cache"); got != "hit" {
		t.Fatalf("second request: cache %q, want hit", got)
	}
	if n := e.upstreamRequests(); n != before {
		t.Fatalf("a hit called upstream: %d requests, was %d", n, before)
	}
	if second.Choices[0].Message.Content != first.Choices[0].Message.Content || second.Usage.TotalTokens != first.Usage.TotalTokens {
		t.Fatalf("hit differs: %+v vs %+v", second, first)
	}
	waitFor(t, 2*time.Second, "two records", func() bool { return len(e.recordsSnapshot()) == 2 })
	recs := e.recordsSnapshot()
	if recs[0].Cached || !recs[1].Cached || recs[1].Attempts != 0 || recs[1].CompletionTokens != first.Usage.CompletionTokens {
		t.Fatalf("records %+v", recs)
	}
	m := e.metricsText()
	for _, want := range []string{
		`sluice_cache_requests_total{model="gpt-4o-mini",result="hit"} 1`,
		`sluice_cache_requests_total{model="gpt-4o-mini",result="miss"} 1`,
		fmt.Sprintf(`sluice_cache_saved_tokens_total{model="gpt-4o-mini"} %d`, first.Usage.PromptTokens+first.Usage.CompletionTokens),
	} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %s:\n%s", want, m)
		}
	}
}

// streamContent reads a stream with the SDK and returns its content and
// the number of usage chunks.
func streamContent(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams, opts ...option.RequestOption) (string, int, openai.ChatCompletionAccumulator) {
	t.Helper()
	s := c.Chat.Completions.NewStreaming(context.Background(), p, opts...)
	var acc openai.ChatCompletionAccumulator
	var content strings.Builder
	usage := 0
	for s.Next() {
		ch := s.Current()
		acc.AddChunk(ch)
		if len(ch.Choices) > 0 {
			content.WriteString(ch.Choices[0].Delta.Content)
		}
		if ch.Usage.TotalTokens > 0 {
			usage++
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return content.String(), usage, acc
}

func TestCacheStreamHit(t *testing.T) {
	e := cacheEnv(t, nil)
	c := e.client()
	var r1, r2, r3 *http.Response
	first, _, _ := streamContent(t, c, cachedParams(), option.WithResponseInto(&r1))
	if first == "" || r1.Header.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("first stream: %q, cache %q", first, r1.Header.Get("X-Sluice-Cache"))
	}
	before := e.upstreamRequests()
	for _, usage := range []bool{false, true} {
		p := cachedParams()
		if usage {
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		}
		got, chunks, acc := streamContent(t, c, p, option.WithResponseInto(&r2))
		if r2.Header.Get("X-Sluice-Cache") != "hit" || got != first {
			t.Fatalf("replay (usage %v): cache %q, content %q want %q", usage, r2.Header.Get("X-Sluice-Cache"), got, first)
		}
		if want := map[bool]int{false: 0, true: 1}[usage]; chunks != want {
			t.Fatalf("replay (usage %v): %d usage chunks", usage, chunks)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].FinishReason == "" {
			t.Fatalf("replay (usage %v): accumulated %+v", usage, acc.ChatCompletion)
		}
	}
	// The stream's answer also serves the same request without stream.
	out, err := c.Chat.Completions.New(context.Background(), cachedParams(), option.WithResponseInto(&r3))
	if err != nil || r3.Header.Get("X-Sluice-Cache") != "hit" || out.Choices[0].Message.Content != first || out.Usage.CompletionTokens == 0 {
		t.Fatalf("non-stream after stream: %v %q %+v", err, r3.Header.Get("X-Sluice-Cache"), out)
	}
	if n := e.upstreamRequests(); n != before {
		t.Fatalf("a hit called upstream: %d requests, was %d", n, before)
	}
}

func TestCacheKeyCanonical(t *testing.T) {
	e := cacheEnv(t, nil)
	if st, res, _ := e.postH("/v1/chat/completions", demoKey, cachedChat); st != 200 || res != "miss" {
		t.Fatalf("first: %d %q", st, res)
	}
	before := e.upstreamRequests()
	reordered := "{\n  \"messages\": [ {\"content\": \"Say hello to the team.\", \"role\": \"user\"} ],\n" +
		"  \"user\": \"someone\", \"max_tokens\": 16, \"temperature\": 0, \"model\": \"gpt-4o-mini\"\n}"
	if st, res, _ := e.postH("/v1/chat/completions", demoKey, reordered); st != 200 || res != "hit" {
		t.Fatalf("reordered: %d %q", st, res)
	}
	// Another tenant never sees team-a's answers.
	if st, res, _ := e.postH("/v1/chat/completions", otherKey, cachedChat); st != 200 || res != "miss" {
		t.Fatalf("other tenant: %d %q", st, res)
	}
	// A different request misses.
	changed := strings.Replace(cachedChat, `"max_tokens":16`, `"max_tokens":17`, 1)
	if st, res, _ := e.postH("/v1/chat/completions", demoKey, changed); st != 200 || res != "miss" {
		t.Fatalf("changed: %d %q", st, res)
	}
	if n := e.upstreamRequests(); n != before+2 {
		t.Fatalf("upstream requests %d, want %d", n, before+2)
	}
}

func TestCacheBypass(t *testing.T) {
	e := cacheEnv(t, nil)
	if _, res, _ := e.postH("/v1/chat/completions", demoKey, cachedChat, "X-Sluice-Cache", "no-store"); res != "bypass" {
		t.Fatalf("no-store: %q", res)
	}
	// no-store did not write: the next request misses, then stores.
	if _, res, _ := e.postH("/v1/chat/completions", demoKey, cachedChat); res != "miss" {
		t.Fatalf("after no-store: %q", res)
	}
	before := e.upstreamRequests()
	for _, cc := range []string{"no-cache", "max-age=0, no-store"} {
		if _, res, _ := e.postH("/v1/chat/completions", demoKey, cachedChat, "Cache-Control", cc); res != "bypass" {
			t.Fatalf("Cache-Control %s: %q", cc, res)
		}
	}
	if n := e.upstreamRequests(); n != before+2 {
		t.Fatalf("bypasses called upstream %d times, want 2", n-before)
	}
	if _, res, _ := e.postH("/v1/chat/completions", demoKey, cachedChat); res != "hit" {
		t.Fatalf("entry lost: %q", res)
	}
	// A request that is not meant to be repeatable does not qualify.
	warm := strings.Replace(cachedChat, `"temperature":0`, `"temperature":0.7`, 1)
	before = e.upstreamRequests()
	for range 2 {
		if _, res, _ := e.postH("/v1/chat/completions", demoKey, warm); res != "bypass" {
			t.Fatalf("temperature 0.7: %q", res)
		}
	}
	if n := e.upstreamRequests(); n != before+2 {
		t.Fatalf("temperature 0.7 called upstream %d times, want 2", n-before)
	}
	// A seed qualifies whatever the temperature.
	seeded := strings.Replace(warm, `"temperature":0.7`, `"temperature":0.7,"seed":42`, 1)
	e.postH("/v1/chat/completions", demoKey, seeded)
	if _, res, _ := e.postH("/v1/chat/completions", demoKey, seeded); res != "hit" {
		t.Fatalf("seeded: %q", res)
	}
}

func TestCacheTenantWithoutCache(t *testing.T) {
	e := newEnv(t, envOpts{})
	if _, res, _ := e.postH("/v1/chat/completions", demoKey, cachedChat); res != "" {
		t.Fatalf("cache header %q without a cache policy", res)
	}
	if e.router.CacheCost() != 0 || strings.Contains(e.metricsText(), "sluice_cache_") {
		t.Fatal("cache used without a cache policy")
	}
}

func TestCacheTTL(t *testing.T) {
	e := cacheEnv(t, nil)
	if _, res, _ := e.postH("/v1/chat/completions", demoKey, cachedChat, "X-Sluice-Cache-Ttl", "1"); res != "miss" {
		t.Fatalf("first: %q", res)
	}
	stored := time.Now()
	var last string
	waitFor(t, 5*time.Second, "the entry to expire", func() bool {
		_, last, _ = e.postH("/v1/chat/completions", demoKey, cachedChat, "X-Sluice-Cache-Ttl", "1")
		if last == "hit" && time.Since(stored) > 2*time.Second {
			t.Fatalf("hit %v after storing with a 1s TTL", time.Since(stored))
		}
		return last == "miss"
	})
	if time.Since(stored) < time.Second-100*time.Millisecond {
		t.Fatalf("expired after %v, before its TTL", time.Since(stored))
	}
}

// upstreamAll is every request any mock deployment received, chat and
// embeddings.
func (e *env) upstreamAll() int64 {
	var n int64
	for _, reg := range e.regions {
		for _, d := range reg.Stats().Deployments {
			n += d.Requests
		}
	}
	return n
}

// metricValue returns the value of one series in the router's /metrics
// text, or -1 when the series is absent.
func (e *env) metricValue(series string) float64 {
	for line := range strings.Lines(e.metricsText()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatalf("series %s: %v", series, err)
			}
			return f
		}
	}
	return -1
}

// azurePath is the Azure chat path of the harness' chat model.
const azurePath = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"

// postAzure sends body to path with the api-key header, as Azure clients
// do, and returns status, the X-Sluice-Cache header and the body.
func (e *env) postAzure(path, key, body string) (int, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Sluice-Cache"), string(b)
}

// sseChunks parses a raw SSE body into its chat chunks, checking that it
// ends with [DONE] and that every other event is a chat.completion.chunk
// of one id.
func sseChunks(t *testing.T, body string) []openai.ChatCompletionChunk {
	t.Helper()
	var data []string
	for line := range strings.Lines(body) {
		if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
			data = append(data, d)
		}
	}
	if len(data) < 2 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", data)
	}
	var out []openai.ChatCompletionChunk
	for _, d := range data[:len(data)-1] {
		var ch openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(d), &ch); err != nil {
			t.Fatalf("event %q: %v", d, err)
		}
		if ch.ID == "" && len(ch.Choices) == 0 && strings.Contains(d, `"prompt_filter_results"`) {
			continue // Azure's prompt filter event, sent before the answer
		}
		if ch.Object != "chat.completion.chunk" || ch.ID == "" || ch.ID != cmp.Or(firstID(out), ch.ID) {
			t.Fatalf("event %q: object %q id %q", d, ch.Object, ch.ID)
		}
		out = append(out, ch)
	}
	return out
}

func firstID(chunks []openai.ChatCompletionChunk) string {
	if len(chunks) == 0 {
		return ""
	}
	return chunks[0].ID
}

// TestCacheAzure runs the cache through the Azure paths: the official SDK
// with its Azure option, and raw requests with the api-key header.
func TestCacheAzure(t *testing.T) {
	t.Run("sdk", func(t *testing.T) {
		e := cacheEnv(t, nil)
		c := e.azureClient()
		var r1, r2 *http.Response
		first, err := c.Chat.Completions.New(context.Background(), cachedParams(), option.WithResponseInto(&r1))
		if err != nil || r1.Header.Get("X-Sluice-Cache") != "miss" {
			t.Fatalf("first: %v, cache %q", err, r1.Header.Get("X-Sluice-Cache"))
		}
		before := e.upstreamRequests()
		second, err := c.Chat.Completions.New(context.Background(), cachedParams(), option.WithResponseInto(&r2))
		if err != nil || r2.Header.Get("X-Sluice-Cache") != "hit" {
			t.Fatalf("second: %v, cache %q", err, r2.Header.Get("X-Sluice-Cache"))
		}
		if second.Choices[0].Message.Content != first.Choices[0].Message.Content || second.Usage.TotalTokens != first.Usage.TotalTokens {
			t.Fatalf("hit differs: %+v vs %+v", second, first)
		}
		// A stream of another question: stored once complete, then
		// replayed to the SDK with and without a usage chunk.
		p := cachedParams()
		p.Messages = append(p.Messages, openai.UserMessage("And to the other team."))
		var rs *http.Response
		streamed, _, _ := streamContent(t, c, p, option.WithResponseInto(&rs))
		if streamed == "" || rs.Header.Get("X-Sluice-Cache") != "miss" {
			t.Fatalf("first stream: %q, cache %q", streamed, rs.Header.Get("X-Sluice-Cache"))
		}
		for _, usage := range []bool{false, true} {
			q := p
			if usage {
				q.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			got, chunks, acc := streamContent(t, c, q, option.WithResponseInto(&rs))
			if rs.Header.Get("X-Sluice-Cache") != "hit" || got != streamed {
				t.Fatalf("replay (usage %v): cache %q, content %q want %q", usage, rs.Header.Get("X-Sluice-Cache"), got, streamed)
			}
			if want := map[bool]int{false: 0, true: 1}[usage]; chunks != want || len(acc.Choices) != 1 || acc.Choices[0].FinishReason == "" {
				t.Fatalf("replay (usage %v): %d usage chunks, accumulated %+v", usage, chunks, acc.ChatCompletion)
			}
		}
		if n := e.upstreamRequests(); n != before+1 {
			t.Fatalf("upstream requests %d, want %d (one stream miss)", n, before+1)
		}
		waitFor(t, 2*time.Second, "five records", func() bool { return len(e.recordsSnapshot()) == 5 })
		// Two misses (one plain, one stream) and three hits; a stream's
		// record is written when it ends, so the order may vary.
		cached := 0
		for i, rec := range e.recordsSnapshot() {
			if rec.Model != "gpt-4o-mini" {
				t.Fatalf("record %d: %+v", i, rec)
			}
			if rec.Cached {
				cached++
			}
		}
		if cached != 3 {
			t.Fatalf("%d of 5 records cached, want 3: %+v", cached, e.recordsSnapshot())
		}
	})
	t.Run("raw api-key", func(t *testing.T) {
		e := cacheEnv(t, nil)
		body := `{"messages":[{"role":"user","content":"Say hello to the team."}],"temperature":0,"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}`
		st, res, first := e.postAzure(azurePath, demoKey, body)
		if st != 200 || res != "miss" {
			t.Fatalf("first: %d %q %s", st, res, first)
		}
		before := e.upstreamRequests()
		st, res, second := e.postAzure(azurePath, demoKey, body)
		if st != 200 || res != "hit" {
			t.Fatalf("second: %d %q %s", st, res, second)
		}
		if e.upstreamRequests() != before {
			t.Fatal("the hit called upstream")
		}
		text := func(chunks []openai.ChatCompletionChunk) (string, int64) {
			var b strings.Builder
			var usage int64
			for _, ch := range chunks {
				for _, c := range ch.Choices {
					b.WriteString(c.Delta.Content)
				}
				usage += ch.Usage.TotalTokens
			}
			return b.String(), usage
		}
		want, wantUsage := text(sseChunks(t, first))
		got, gotUsage := text(sseChunks(t, second))
		if got != want || gotUsage != wantUsage || gotUsage == 0 {
			t.Fatalf("replay %q (usage %d), upstream stream %q (usage %d)", got, gotUsage, want, wantUsage)
		}
		// The non-stream form of the same question is served from the
		// stream's entry.
		st, res, whole := e.postAzure(azurePath, demoKey, strings.Replace(body, `"stream":true,"stream_options":{"include_usage":true}`, `"stream":false`, 1))
		var out openai.ChatCompletion
		if err := json.Unmarshal([]byte(whole), &out); err != nil || st != 200 || res != "hit" || out.Choices[0].Message.Content != want {
			t.Fatalf("non-stream: %d %q %v %s", st, res, err, whole)
		}
		// A wrong api-key is refused before the cache.
		if st, res, _ := e.postAzure(azurePath, "sk-sluice-unknown", body); st != 401 || res != "" {
			t.Fatalf("unknown key: %d %q", st, res)
		}
	})
}

// TestCacheMaxEntryBytes: an answer larger than the policy's
// max_entry_bytes is not stored, so the same request reaches the provider
// again; the mock's counters show it.
func TestCacheMaxEntryBytes(t *testing.T) {
	embed := `{"model":"text-embedding-3-small","input":"a large answer"}`
	streamChat := strings.Replace(cachedChat, `"max_tokens":16`, `"max_tokens":16,"stream":true`, 1)
	for _, tc := range []struct {
		name     string
		maxEntry int64
		path     string
		body     string
		azure    bool
		hit      bool // the second request is a hit
	}{
		{"chat", 128, "/v1/chat/completions", cachedChat, false, false},
		{"chat stream", 128, "/v1/chat/completions", streamChat, false, false},
		{"azure chat", 128, azurePath, `{"messages":[{"role":"user","content":"Hi"}],"temperature":0}`, true, false},
		{"embeddings", 16 << 10, "/v1/embeddings", embed, false, false},
		// The same requests fit under the default 1 MiB.
		{"chat fits", 0, "/v1/chat/completions", cachedChat, false, true},
		{"embeddings fit", 0, "/v1/embeddings", embed, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := cacheEnv(t, func(c *stateConfig) {
				c.Policies[0].Cache.MaxEntryBytes = tc.maxEntry
				c.Policies[0].Cache.AnyRequest = true // embeddings have no temperature
			})
			post := func() (string, string) {
				var st int
				var res, out string
				if tc.azure {
					st, res, out = e.postAzure(tc.path, demoKey, tc.body)
				} else {
					st, res, out = e.postH(tc.path, demoKey, tc.body)
				}
				if st != 200 {
					t.Fatalf("status %d: %s", st, out)
				}
				return res, out
			}
			before := e.upstreamAll()
			res1, out := post()
			res2, _ := post()
			calls := e.upstreamAll() - before
			tooLarge := e.metricValue(`sluice_cache_refused_total{reason="too_large"}`)
			t.Logf("answer %d bytes, max_entry_bytes %d: %s then %s, %d upstream calls", len(out), tc.maxEntry, res1, res2, calls)
			if tc.hit {
				if res1 != "miss" || res2 != "hit" || calls != 1 || tooLarge != 0 {
					t.Fatalf("want miss then hit with one upstream call and nothing refused, got %s, %s, %d calls, %v refused", res1, res2, calls, tooLarge)
				}
				return
			}
			if int64(len(out)) <= tc.maxEntry && !strings.Contains(tc.body, `"stream":true`) {
				t.Fatalf("the answer (%d bytes) is not larger than %d: the case proves nothing", len(out), tc.maxEntry)
			}
			if res1 != "miss" || res2 != "miss" || calls != 2 || tooLarge != 2 {
				t.Fatalf("want two misses reaching upstream and two too_large refusals, got %s, %s, %d calls, %v refused", res1, res2, calls, tooLarge)
			}
			if e.router.CacheCost() != 0 || e.metricValue("sluice_cache_entries") != 0 {
				t.Fatalf("cache holds %d bytes", e.router.CacheCost())
			}
		})
	}
}

// TestCacheCloseRacesRequests closes the router while requests that read
// and store cache entries are running: nothing panics, requests after the
// close are still answered (without the cache), the cache ends empty, and
// TestMain's goleak finds none of ristretto's goroutines left.
func TestCacheCloseRacesRequests(t *testing.T) {
	e := newEnv(t, envOpts{regionsNo: 1, editCfg: func(c *stateConfig) {
		c.Policies[0].Cache = state.CachePolicy{Enabled: true, AnyRequest: true}
	}})
	h := e.router.Handler()
	var done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Every other request repeats an earlier one (a hit while
				// the cache is open), the others are new (a store).
				n := i
				if i%2 == 1 {
					n = i - 1
				}
				body := fmt.Sprintf(`{"model":"text-embedding-3-small","input":"w%d r%d"}`, w, n)
				req := httptest.NewRequest(http.MethodPost, "/v1/embeddings", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+demoKey)
				rw := httptest.NewRecorder()
				h.ServeHTTP(rw, req)
				if rw.Code != 200 {
					t.Errorf("status %d: %s", rw.Code, rw.Body)
					return
				}
				done.Add(1)
			}
		}()
	}
	waitFor(t, 10*time.Second, "requests before the close", func() bool { return done.Load() >= 60 })
	e.router.Close()
	closedAt := done.Load()
	waitFor(t, 10*time.Second, "requests after the close", func() bool { return done.Load() >= closedAt+60 })
	close(stop)
	wg.Wait()
	if c := e.router.CacheCost(); c != 0 {
		t.Fatalf("closed cache holds %d", c)
	}
	if n := e.metricValue("sluice_cache_entries"); n != 0 {
		t.Fatalf("closed cache counts %v entries", n)
	}
	if _, res, _ := e.postH("/v1/embeddings", demoKey, `{"model":"text-embedding-3-small","input":"w0 r0"}`); res != "miss" {
		t.Fatalf("after close: %q, want miss (nothing is read or stored)", res)
	}
	t.Logf("%d requests, %d of them after the close", done.Load(), done.Load()-closedAt)
}

// TestCacheMetrics checks the scrape-time series: bytes and entries
// follow what is stored, and a TTL expiry counts as an eviction.
func TestCacheMetrics(t *testing.T) {
	e := cacheEnv(t, nil)
	if v := e.metricValue("sluice_cache_entries"); v != 0 {
		t.Fatalf("entries %v before any request", v)
	}
	for i := range 3 {
		body := strings.Replace(cachedChat, `"max_tokens":16`, fmt.Sprintf(`"max_tokens":%d`, 10+i), 1)
		if _, res, _ := e.postH("/v1/chat/completions", demoKey, body, "X-Sluice-Cache-Ttl", "1"); res != "miss" {
			t.Fatalf("request %d: %q", i, res)
		}
	}
	if v := e.metricValue("sluice_cache_entries"); v != 3 {
		t.Fatalf("entries %v, want 3", v)
	}
	if b := e.metricValue("sluice_cache_bytes"); b != float64(e.router.CacheCost()) || b < 3*256 {
		t.Fatalf("bytes %v, cost %d", b, e.router.CacheCost())
	}
	if m := e.metricValue("sluice_cache_max_bytes"); m != 256<<20 {
		t.Fatalf("max bytes %v", m)
	}
	// ristretto sweeps expired entries in 5 s buckets.
	waitFor(t, 15*time.Second, "the expired entries to be swept", func() bool {
		return e.metricValue(`sluice_cache_evictions_total{reason="expired"}`) == 3
	})
	if e.metricValue("sluice_cache_entries") != 0 || e.metricValue("sluice_cache_bytes") != 0 ||
		e.metricValue(`sluice_cache_evictions_total{reason="capacity"}`) != 0 {
		t.Fatalf("after expiry:\n%s", e.metricsText())
	}
}

// rssBytes is the process' resident set from /proc/self/statm, 0 where
// there is none.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// liveHeap collects garbage and returns the bytes of live heap objects.
func liveHeap() uint64 {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// TestCacheFloodMemory floods a 4 MiB cache with distinct ~20 KB answers
// (embeddings of 1536 floats), several times its budget, from four
// clients at once. The cost held never passes the budget; every answer
// offered is accounted for in the metrics (held, evicted, refused or
// dropped); and the live heap, measured after a GC, grows by about the
// budget, far less than what went through. About 0.5 s, 1.5 s under
// -race on an idle two-core machine; skipped under -short.
func TestCacheFloodMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the cache with ~25 MB of answers")
	}
	const (
		limit    = 4 << 20
		requests = 1200
		warmup   = 20
		// The bound on live heap growth: the budget twice over (an entry's
		// real size exceeds its charged cost a little: size classes, maps,
		// ristretto's counters) plus the run's other state (usage records,
		// the mock's history).
		bound = 2*limit + 4<<20
	)
	e := newEnv(t, envOpts{regionsNo: 1, cacheBytes: limit, editCfg: func(c *stateConfig) {
		c.Policies[0].Cache = state.CachePolicy{Enabled: true, AnyRequest: true}
	}})
	h := e.router.Handler()
	send := func(i int) int {
		body := fmt.Sprintf(`{"model":"text-embedding-3-small","input":"flood %d"}`, i)
		req := httptest.NewRequest(http.MethodPost, "/v1/embeddings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+demoKey)
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, req)
		if rw.Code != 200 || rw.Header().Get("X-Sluice-Cache") != "miss" {
			t.Errorf("request %d: %d %q", i, rw.Code, rw.Header().Get("X-Sluice-Cache"))
		}
		return rw.Body.Len()
	}
	// Warm up: connections, tokenizer tables, metric series.
	for i := range warmup {
		send(-1 - i)
	}
	heap0, rss0 := liveHeap(), rssBytes()
	var total, peakHeap atomic.Int64
	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			for i := range work {
				total.Add(int64(send(i)))
				if i%25 == 0 {
					rtmetrics.Read(s)
					if v := int64(s[0].Value.Uint64()); v > peakHeap.Load() {
						peakHeap.Store(v)
					}
				}
				if c := e.router.CacheCost(); c > limit {
					t.Errorf("cache holds %d > %d", c, limit)
				}
			}
		}()
	}
	start := time.Now()
	for i := range requests {
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	heap1, rss1 := liveHeap(), rssBytes()
	growth := int64(heap1) - int64(heap0)
	evicted := e.metricValue(`sluice_cache_evictions_total{reason="capacity"}`)
	refused := e.metricValue(`sluice_cache_refused_total{reason="admission"}`)
	dropped := e.metricValue(`sluice_cache_refused_total{reason="dropped"}`)
	entries := e.metricValue("sluice_cache_entries")
	held := e.router.CacheCost()
	t.Logf("%d answers, %.1f MiB in all (%.1f KB each) in %v; the %d MiB cache holds %.2f MiB in %v entries",
		requests, float64(total.Load())/(1<<20), float64(total.Load())/requests/1000, took.Round(time.Millisecond),
		limit>>20, float64(held)/(1<<20), entries)
	t.Logf("evicted %v, refused by admission %v, dropped %v", evicted, refused, dropped)
	t.Logf("live heap %.1f -> %.1f MiB (growth %.1f MiB, %.2fx the budget), heap objects peak %.1f MiB, RSS %.1f -> %.1f MiB",
		float64(heap0)/(1<<20), float64(heap1)/(1<<20), float64(growth)/(1<<20), float64(growth)/limit,
		float64(peakHeap.Load())/(1<<20), float64(rss0)/(1<<20), float64(rss1)/(1<<20))
	if total.Load() < 5*limit {
		t.Fatalf("the flood carried only %d bytes", total.Load())
	}
	if held > limit || held < limit/2 {
		t.Fatalf("cache holds %d of %d", held, limit)
	}
	// Every answer stored was a new key: it is held, was evicted, or was
	// never admitted.
	if got := entries + evicted + refused + dropped; got != requests+warmup || evicted+refused == 0 {
		t.Fatalf("entries %v + evicted %v + refused %v + dropped %v = %v, want %d", entries, evicted, refused, dropped, got, requests+warmup)
	}
	if avg := float64(held) / entries; avg < 15_000 || avg > 30_000 {
		t.Fatalf("%v entries for %d bytes: %v bytes each", entries, held, avg)
	}
	if growth > bound {
		t.Fatalf("live heap grew %d bytes, bound %d", growth, bound)
	}
}

// benchHandler runs one request body through the router's handler.
func benchHandler(b *testing.B, e *env, path, body string, want string) {
	h := e.router.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+demoKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 || w.Header().Get("X-Sluice-Cache") != want {
			b.Fatalf("status %d cache %q", w.Code, w.Header().Get("X-Sluice-Cache"))
		}
	}
}

// BenchmarkCacheHit answers from the cache; BenchmarkUpstreamCall sends
// the same request to the in-process mock provider (no cache policy), the
// least a hit saves. Both run the whole handler: auth, parse, estimate,
// admission, record.
func BenchmarkCacheHit(b *testing.B) {
	for _, tc := range cacheBenchCases {
		b.Run(tc.name, func(b *testing.B) {
			e := cacheEnv(b, func(c *stateConfig) { c.Policies[0].Cache.AnyRequest = true })
			e.post(tc.path, demoKey, tc.body)
			benchHandler(b, e, tc.path, tc.body, "hit")
		})
	}
}

func BenchmarkUpstreamCall(b *testing.B) {
	for _, tc := range cacheBenchCases {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, envOpts{})
			benchHandler(b, e, tc.path, tc.body, "")
		})
	}
}

var cacheBenchCases = []struct{ name, path, body string }{
	{"chat", "/v1/chat/completions", cachedChat},
	{"stream", "/v1/chat/completions", strings.Replace(cachedChat, `"max_tokens":16`, `"max_tokens":16,"stream":true`, 1)},
	{"embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"a benchmark"}`},
}
