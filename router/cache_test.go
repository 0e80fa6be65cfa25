package router_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestCacheBounded floods the cache with distinct ~30 KB embedding answers
// (~10 KB requests): the cost held never exceeds CacheBytes.
func TestCacheBounded(t *testing.T) {
	const limit = 1 << 20
	e := newEnv(t, envOpts{cacheBytes: limit, editCfg: func(c *stateConfig) {
		c.Policies[0].Cache = state.CachePolicy{Enabled: true, AnyRequest: true}
	}})
	filler := strings.Repeat("lorem ipsum dolor sit amet ", 370)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stored int
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body := fmt.Sprintf(`{"model":"text-embedding-3-small","input":"%d %s"}`, i, filler)
				st, res, out := e.postH("/v1/embeddings", demoKey, body)
				if st != 200 || res != "miss" {
					t.Errorf("request %d: %d %q", i, st, res)
					return
				}
				mu.Lock()
				stored += len(out)
				mu.Unlock()
				if c := e.router.CacheCost(); c > limit {
					t.Errorf("cache holds %d > %d", c, limit)
				}
			}
		}()
	}
	for i := range 300 {
		work <- i
	}
	close(work)
	wg.Wait()
	c := e.router.CacheCost()
	if c > limit || c == 0 {
		t.Fatalf("cache holds %d, limit %d", c, limit)
	}
	if stored <= 2*limit {
		t.Fatalf("the flood stored only %d bytes", stored)
	}
	t.Logf("answers %d bytes in all, cache holds %d", stored, c)
}

// benchHandler runs one chat request body through the router's handler.
func benchHandler(b *testing.B, e *env, body string, want string) {
	h := e.router.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+demoKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 || w.Header().Get("X-Sluice-Cache") != want {
			b.Fatalf("status %d cache %q", w.Code, w.Header().Get("X-Sluice-Cache"))
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	e := cacheEnv(b, nil)
	e.post("/v1/chat/completions", demoKey, cachedChat)
	benchHandler(b, e, cachedChat, "hit")
}

func BenchmarkUpstreamCall(b *testing.B) {
	e := newEnv(b, envOpts{})
	benchHandler(b, e, cachedChat, "")
}
