package router

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/router/wire"
)

// The response cache is exact-match and opt-in per policy. It lives beside
// the request path, not in it: a request whose tenant has no cache policy
// never canonicalises its body, hashes it or touches the cache. A hit is
// answered after admission (the tenant is charged as usual) and before
// routing, so it never reaches a deployment or its budget.

// Header names of the cache's per-request controls and its answer.
const (
	hdrCache    = "X-Sluice-Cache"     // request: no-store; response: hit, miss or bypass
	hdrCacheTTL = "X-Sluice-Cache-Ttl" // request: seconds, caps the policy's TTL
)

// cacheEntryOverhead is charged per entry on top of its bytes: the entry
// struct, its strings' headers and ristretto's own item.
const cacheEntryOverhead = 256

// cacheEntry is one cached answer. It is immutable once stored.
type cacheEntry struct {
	// body is the complete non-stream answer, served as application/json.
	body []byte
	// streamable says content, finish, model and created describe a single
	// choice chat answer that can be replayed as an SSE stream.
	streamable bool
	content    string
	finish     string
	model      string
	created    int64
	usage      wire.Usage
	stored     int64 // unix nanoseconds, router clock
}

func (e *cacheEntry) cost() int64 {
	return int64(len(e.body)+len(e.content)+len(e.finish)+len(e.model)) + cacheEntryOverhead
}

// respCache is the router's one response cache.
//
// Close may run while late requests still use the cache, and ristretto's
// Close is not safe beside its Get, Set or Wait (they may send on a channel
// Close has closed, or wait for a goroutine Close has stopped). No lock is
// taken per use: c is swapped to nil by close, so a use that starts
// afterwards sees a closed cache at once, and users counts the uses that
// may still hold the old pointer; close waits for them (the last one closes
// drained) before it closes ristretto. A use costs two atomic adds and two
// loads (BenchmarkRespCacheGet: no slower than the RWMutex it replaces).
type respCache struct {
	c       atomic.Pointer[ristretto.Cache[string, *cacheEntry]] // nil once closed
	users   atomic.Int64                                         // uses in progress, see acquire
	closing atomic.Bool                                          // close has swapped c out
	drained chan struct{}                                        // closed when users reaches 0 after closing
	drain   sync.Once
	done    sync.Once // close runs once

	maxCost int64 // the byte budget, router.Config.CacheBytes
	stats   cacheStats
}

// cacheStats counts what happened to the entries offered to the cache, for
// /metrics (writeCache). The callbacks run on ristretto's own goroutine.
type cacheStats struct {
	// entries is the number of values ristretto holds: +1 for every
	// accepted Set, -1 for every value leaving (evicted, expired, refused
	// by the admission policy, replaced by a later Set of its key).
	entries         atomic.Int64
	evictedCapacity atomic.Uint64 // removed to make room
	evictedExpired  atomic.Uint64 // removed when its TTL passed
	refusedPolicy   atomic.Uint64 // not admitted by TinyLFU, costs more than the whole cache, or a racing store of a key being added
	refusedDropped  atomic.Uint64 // ristretto's set buffer was full
	refusedTooLarge atomic.Uint64 // the answer is larger than the policy's max_entry_bytes
}

func newRespCache(maxCost int64) (*respCache, error) {
	rc := &respCache{drained: make(chan struct{}), maxCost: maxCost}
	// Ristretto wants about ten counters per entry it may hold; entries are
	// assumed to be a few KiB.
	counters := min(max(maxCost/4096*10, 10_000), 10_000_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, *cacheEntry]{
		NumCounters:        counters,
		MaxCost:            maxCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            rc.onEvict,
		OnReject:           func(*ristretto.Item[*cacheEntry]) { rc.stats.refusedPolicy.Add(1) },
		OnExit:             rc.onExit,
	})
	if err != nil {
		return nil, fmt.Errorf("response cache: %w", err)
	}
	rc.c.Store(c)
	return rc, nil
}

// onEvict counts an entry removed by ristretto: expired when its TTL had
// passed, else to make room. Close empties the cache through the same
// callback; those are not evictions.
func (rc *respCache) onEvict(it *ristretto.Item[*cacheEntry]) {
	switch {
	case rc.closing.Load():
	case !it.Expiration.IsZero() && !it.Expiration.After(time.Now()):
		rc.stats.evictedExpired.Add(1)
	default:
		rc.stats.evictedCapacity.Add(1)
	}
}

func (rc *respCache) onExit(e *cacheEntry) {
	if e != nil {
		rc.stats.entries.Add(-1)
	}
}

// acquire returns the ristretto cache for one use, or nil once closed. A
// non-nil result must be given back with release. The count goes up
// before the pointer is read, so close, which swaps the pointer before it
// reads the count, never misses a use that got the old pointer.
func (rc *respCache) acquire() *ristretto.Cache[string, *cacheEntry] {
	rc.users.Add(1)
	c := rc.c.Load()
	if c == nil {
		rc.release()
	}
	return c
}

func (rc *respCache) release() {
	if rc.users.Add(-1) == 0 && rc.closing.Load() {
		rc.drain.Do(func() { close(rc.drained) })
	}
}

func (rc *respCache) get(key string) (*cacheEntry, bool) {
	c := rc.acquire()
	if c == nil {
		return nil, false
	}
	defer rc.release()
	return c.Get(key)
}

func (rc *respCache) set(key string, e *cacheEntry, ttl time.Duration) {
	c := rc.acquire()
	if c == nil {
		return
	}
	defer rc.release()
	// Counted before SetWithTTL: ristretto may refuse (and uncount) the
	// entry on its own goroutine before SetWithTTL returns.
	rc.stats.entries.Add(1)
	if !c.SetWithTTL(key, e, e.cost(), ttl) {
		rc.stats.entries.Add(-1)
		rc.stats.refusedDropped.Add(1)
		return
	}
	// Sets are applied asynchronously; wait so that the next identical
	// request (often the very next one) finds the entry. The relay stores
	// before the answer's last bytes go out (proxy.go), so a client that
	// repeats a request as soon as it has the answer hits; the answer
	// waits for it a few microseconds (BenchmarkRespCacheSetEvict).
	c.Wait()
}

// used returns the cost held now.
func (rc *respCache) used() int64 {
	c := rc.acquire()
	if c == nil {
		return 0
	}
	defer rc.release()
	return c.MaxCost() - c.RemainingCost()
}

// close closes the cache once the uses that started before it have ended;
// uses that start during or after it see a closed cache. It is idempotent.
func (rc *respCache) close() {
	rc.done.Do(func() {
		c := rc.c.Swap(nil)
		rc.closing.Store(true)
		if rc.users.Load() != 0 {
			<-rc.drained
		}
		c.Close()
	})
}

// CacheCost returns the bytes (as charged) the response cache holds now,
// 0 when no cache exists.
func (r *Router) CacheCost() int64 {
	if rc := r.cache.Load(); rc != nil {
		return rc.used()
	}
	return 0
}

// cacheState is a call's dealings with the cache.
type cacheState struct {
	key   string        // "" when the request does not use the cache
	ttl   time.Duration // the policy's TTL, capped by the request
	store bool          // a miss: store the answer if it qualifies
	acc   streamAcc
}

// streamAcc accumulates a chat stream's single choice for the cache.
type streamAcc struct {
	bad     bool // a chunk the replay could not reproduce (tools, n>1), or too long
	large   bool // the content alone passed max_entry_bytes
	content strings.Builder
	finish  string
	model   string
	created int64
}

// cacheLookup runs before routing when the tenant's policy enables the
// cache. It answers a hit itself and reports true; otherwise it prepares
// the call to store its answer.
func (c *call) cacheLookup() (int, bool) {
	r := c.r
	rc := r.cache.Load()
	if rc == nil || !c.cacheQualifies() {
		c.cacheResult("bypass")
		return 0, false
	}
	e, ok := rc.get(c.cache.key)
	if ok && time.Duration(r.cfg.Now().UnixNano()-e.stored) <= c.cache.ttl && (!c.parsed.Stream || e.streamable) {
		c.cacheResult("hit")
		return c.cacheServe(e), true
	}
	c.cacheResult("miss")
	c.cache.store = c.cache.ttl > 0
	return 0, false
}

func (c *call) cacheResult(result string) {
	c.w.Header().Set(hdrCache, result)
	c.r.metrics.cacheRequest(c.rec.Model, result)
}

// cacheQualifies checks the request's cache controls and body and, when it
// may use the cache, sets its key and TTL.
func (c *call) cacheQualifies() bool {
	h := c.req.Header
	if strings.EqualFold(strings.TrimSpace(h.Get(hdrCache)), "no-store") {
		return false
	}
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			if d == "no-cache" || d == "no-store" {
				return false
			}
		}
	}
	if c.parsed.Stream && c.ep != wire.EndpointChat {
		return false // only chat streams are replayed
	}
	pol := &c.policy.Cache
	ttl := pol.TTL.D()
	if v := h.Get(hdrCacheTTL); v != "" {
		s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || s < 0 {
			return false
		}
		if d := time.Duration(s) * time.Second; d < ttl {
			ttl = d
		}
	}
	canon, ok := canonicalBody(c.body, pol.AnyRequest)
	if !ok {
		return false
	}
	sum := sha256.New()
	for _, s := range [...]string{c.key.Tenant.Name, c.rec.Model, c.ep.String()} {
		sum.Write([]byte(s))
		sum.Write([]byte{0})
	}
	sum.Write(canon)
	c.cache.key = string(sum.Sum(nil))
	c.cache.ttl = ttl
	return true
}

// canonicalBody re-encodes a request body so that key order and
// whitespace do not matter, without the fields that do not change the
// answer (stream, stream_options, user). Unless anyRequest, it reports
// false for a request whose answer is not meant to be repeatable: one with
// neither temperature 0 nor a seed.
func canonicalBody(body []byte, anyRequest bool) ([]byte, bool) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	if !anyRequest {
		temp, _ := m["temperature"].(json.Number)
		f, err := temp.Float64()
		zero := err == nil && f == 0
		if !zero && m["seed"] == nil {
			return nil, false
		}
	}
	delete(m, "stream")
	delete(m, "stream_options")
	delete(m, "user")
	b, err := json.Marshal(m)
	return b, err == nil
}

// cacheServe answers a hit.
func (c *call) cacheServe(e *cacheEntry) int {
	c.rec.Cached = true
	c.rec.Deployment = "cache"
	c.usage, c.haveUsage = e.usage, true
	c.r.metrics.cacheSaved(c.rec.Model, e.usage.PromptTokens+e.usage.CompletionTokens)
	h := c.w.Header()
	if c.parsed.Stream {
		var u *wire.Usage
		if c.parsed.IncludeUsage {
			u = &e.usage
		}
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		c.w.WriteHeader(http.StatusOK)
		c.committed = true
		for _, ev := range answerStream("chatcmpl-"+c.id, e.created, e.model, e.content, e.finish, u) {
			_ = wire.WriteEvent(c.w, ev)
		}
		_ = http.NewResponseController(c.w).Flush()
	} else {
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(e.body)))
		c.w.WriteHeader(http.StatusOK)
		c.committed = true
		_, _ = c.w.Write(e.body)
	}
	c.rec.Status = http.StatusOK
	return http.StatusOK
}

// cachePutBody stores a complete 200 answer.
func (c *call) cachePutBody(body []byte) {
	if !c.cache.store {
		return
	}
	if int64(len(body)) > c.policy.Cache.MaxEntryBytes {
		c.cacheTooLarge()
		return
	}
	e := &cacheEntry{body: bytes.Clone(body), usage: c.usage, stored: c.r.cfg.Now().UnixNano()}
	if c.ep == wire.EndpointChat {
		res := gjson.ParseBytes(e.body)
		ch := res.Get("choices").Array()
		if len(ch) == 1 {
			msg := ch[0].Get("message")
			content := msg.Get("content")
			if content.Type == gjson.String && !msg.Get("tool_calls").Exists() && !msg.Get("function_call").Exists() {
				e.streamable = true
				e.content = content.String()
				e.finish = ch[0].Get("finish_reason").String()
				e.model = res.Get("model").String()
				e.created = res.Get("created").Int()
			}
		}
	}
	c.cachePut(e)
}

// cacheChunk feeds one stream chunk (not usage-only) to the accumulator.
func (c *call) cacheChunk(data []byte) {
	a := &c.cache.acc
	if !c.cache.store || a.bad {
		return
	}
	res := gjson.ParseBytes(data)
	if a.model == "" {
		a.model, a.created = res.Get("model").String(), res.Get("created").Int()
	}
	ch := res.Get("choices").Array()
	if len(ch) == 0 {
		return // Azure's prompt filter chunk
	}
	if len(ch) > 1 || ch[0].Get("index").Int() != 0 {
		a.bad = true
		return
	}
	delta := ch[0].Get("delta")
	if delta.Get("tool_calls").Exists() || delta.Get("function_call").Exists() {
		a.bad = true
		return
	}
	a.content.WriteString(delta.Get("content").String())
	if fr := ch[0].Get("finish_reason"); fr.Type == gjson.String {
		a.finish = fr.String()
	}
	if int64(a.content.Len()) > c.policy.Cache.MaxEntryBytes {
		a.bad, a.large = true, true
		a.content = strings.Builder{} // drop what was kept
	}
}

// cachePutStream stores a stream that completed with [DONE] and reported
// its usage, as a reconstructed chat.completion.
func (c *call) cachePutStream() {
	a := &c.cache.acc
	if c.cache.store && a.large {
		c.cacheTooLarge()
		return
	}
	if !c.cache.store || a.bad || a.finish == "" || !c.haveUsage || c.rec.Estimated {
		return
	}
	e := &cacheEntry{streamable: true, content: a.content.String(), finish: a.finish, model: a.model,
		created: a.created, usage: c.usage, stored: c.r.cfg.Now().UnixNano()}
	e.body = answerBody(c.ep, "chatcmpl-"+c.id, e.created, e.model, e.content, e.finish, e.usage)
	if int64(len(e.body)) > c.policy.Cache.MaxEntryBytes {
		c.cacheTooLarge()
		return
	}
	c.cachePut(e)
}

func (c *call) cachePut(e *cacheEntry) {
	if rc := c.r.cache.Load(); rc != nil {
		rc.set(c.cache.key, e, c.cache.ttl)
	}
}

// cacheTooLarge counts an answer not stored because it is larger than the
// policy's max_entry_bytes.
func (c *call) cacheTooLarge() {
	if rc := c.r.cache.Load(); rc != nil {
		rc.stats.refusedTooLarge.Add(1)
	}
}

// writeCache writes the response cache's series at scrape time; nothing
// before a policy has enabled the cache. The request path pays nothing for
// them beyond the counters in cacheStats.
//
//   - sluice_cache_bytes: cost held now (answers' bytes plus
//     cacheEntryOverhead each); sluice_cache_max_bytes: the budget,
//     router.Config.CacheBytes.
//   - sluice_cache_entries: answers held now (expired ones until
//     ristretto's sweep, every few seconds, removes them).
//   - sluice_cache_evictions_total{reason}: answers removed, "capacity" to
//     make room for another, "expired" when their TTL passed.
//   - sluice_cache_refused_total{reason}: answers not stored: "admission"
//     (ristretto's TinyLFU judged them less useful than what they would
//     evict), "dropped" (its set buffer was full under load), "too_large"
//     (larger than the policy's max_entry_bytes).
//
// sluice_cache_requests_total{model,result} and
// sluice_cache_saved_tokens_total{model} are counted per request
// (metrics.go).
func (m *routerMetrics) writeCache(w io.Writer) {
	rc := m.r.cache.Load()
	if rc == nil {
		return
	}
	st := &rc.stats
	metrics.WriteGaugeUint64(w, "sluice_cache_bytes", uint64(max(rc.used(), 0)))
	metrics.WriteGaugeUint64(w, "sluice_cache_max_bytes", uint64(rc.maxCost))
	metrics.WriteGaugeUint64(w, "sluice_cache_entries", uint64(max(st.entries.Load(), 0)))
	metrics.WriteMetadataIfNeeded(w, "sluice_cache_evictions_total", "counter")
	fmt.Fprintf(w, "sluice_cache_evictions_total{reason=\"capacity\"} %d\n", st.evictedCapacity.Load())
	fmt.Fprintf(w, "sluice_cache_evictions_total{reason=\"expired\"} %d\n", st.evictedExpired.Load())
	metrics.WriteMetadataIfNeeded(w, "sluice_cache_refused_total", "counter")
	fmt.Fprintf(w, "sluice_cache_refused_total{reason=\"admission\"} %d\n", st.refusedPolicy.Load())
	fmt.Fprintf(w, "sluice_cache_refused_total{reason=\"dropped\"} %d\n", st.refusedDropped.Load())
	fmt.Fprintf(w, "sluice_cache_refused_total{reason=\"too_large\"} %d\n", st.refusedTooLarge.Load())
}
