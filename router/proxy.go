package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/quota"
	"github.com/sluicehq/sluice/router/wire"
)

// call is one client request on its way through the router.
type call struct {
	r       *Router
	tab     *table
	w       http.ResponseWriter
	req     *http.Request
	ep      wire.Endpoint
	id      string
	key     *state.ResolvedKey
	policy  *state.Policy
	body    []byte
	parsed  wire.Request
	prompt  int64
	cost    int64
	start   time.Time
	tickets [2]quota.Ticket
	rec     Record

	usage     wire.Usage
	haveUsage bool
	committed bool // response headers sent to the client
	cache     cacheState
	trace     traceContext // W3C trace context (log.go)

	batch     bool  // batch priority (priority.go)
	waitUntil int64 // batch: wait for budget until then (unix ns)
	queued    bool  // batch: holds a place in the node's batch queue
}

func (r *Router) openAI(ep wire.Endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) { r.serve(w, req, ep, "") }
}

func (r *Router) azure(ep wire.Endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) { r.serve(w, req, ep, req.PathValue("model")) }
}

// serve runs one API request: authenticate, parse, admit, route, record.
func (r *Router) serve(w http.ResponseWriter, req *http.Request, ep wire.Endpoint, pathModel string) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	c := &call{r: r, w: w, req: req, ep: ep, start: r.cfg.Now()}
	c.id = requestID(req.Header.Get("X-Request-Id"))
	c.trace = newTraceContext(req.Header)
	w.Header().Set("X-Request-Id", c.id)
	c.rec = Record{RequestID: c.id, Time: c.start, Endpoint: ep.String()}
	status := c.run(pathModel)
	c.finish(status)
}

// run returns the status answered (499 when the client went away first).
func (c *call) run(pathModel string) int {
	r := c.r
	c.tab = r.loadTable(c.req.Context())
	if c.tab == nil {
		return c.fail(errNotReady)
	}
	k, aerr := r.authenticate(c.tab, c.req)
	if aerr != nil {
		return c.fail(aerr)
	}
	c.key = k
	c.policy = k.Tenant.Policy
	c.rec.Tenant, c.rec.KeyID, c.rec.Class = k.Tenant.Name, k.ID, string(k.Tenant.Class)
	c.classify()

	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.req.Body, r.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return c.fail(errTooLarge)
		}
		return c.fail(errBadRequest("", "could not read the request body"))
	}
	c.body = body
	c.parsed, err = wire.Parse(c.ep, body, wire.ParseOptions{ModelOptional: pathModel != ""})
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			return c.fail(&apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: we.Param, Code: we.Code, Message: we.Message})
		}
		return c.fail(errBadRequest("", err.Error()))
	}
	model := c.parsed.Model
	if pathModel != "" {
		model = pathModel
	}
	c.rec.Model, c.rec.Stream = model, c.parsed.Stream
	rt, ok := c.tab.routes[model]
	if !ok {
		return c.fail(errModelNotFound(model))
	}
	if !k.Allows(model) {
		return c.fail(errModelNotAllowed(model))
	}
	if (rt.model.Kind == state.ModelEmbedding) != (c.ep == wire.EndpointEmbeddings) {
		return c.fail(errBadRequest("model", fmt.Sprintf("The model `%s` does not serve %s requests.", model, c.ep)))
	}

	c.prompt = r.est.PromptTokens(rt.model.Encoding, c.ep, body, &c.parsed)
	c.cost = c.prompt
	if c.ep != wire.EndpointEmbeddings {
		out := rt.model.DefaultMaxTokens
		if c.parsed.HasMaxTokens {
			out = c.parsed.MaxTokens
		}
		// Providers charge max_tokens for each of n choices.
		c.cost += out * max(c.parsed.Choices, 1)
	}
	if aerr := c.admitSubjects(); aerr != nil {
		return c.fail(aerr)
	}
	if c.policy.Cache.Enabled {
		if status, hit := c.cacheLookup(); hit {
			return status
		}
	}

	ctx, cancel := context.WithTimeout(c.req.Context(), c.policy.Timeouts.Total.D())
	defer cancel()
	r.budget.request(r.cfg.Now().UnixNano())
	return c.route(ctx, rt)
}

// admitSubjects applies the tenant's and the key's own limits.
func (c *call) admitSubjects() *apiError {
	now := c.r.cfg.Now().UnixNano()
	soft := c.policy.LimitMode == state.LimitSoft
	subjects := [2]*quota.Subject{c.tab.tenants[c.key.Tenant.Name], c.tab.keys[c.key.ID]}
	for i, s := range subjects {
		if s == nil {
			continue
		}
		tk, wait, err := s.Admit(now, c.cost, soft)
		if err != nil && !soft {
			for j := range i {
				c.tickets[j].Done(now, 0)
			}
			c.tickets = [2]quota.Ticket{}
			who := "tenant"
			if i == 1 {
				who = "key"
			}
			return &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: "rate_limit_exceeded", RetryAfter: wait,
				Message: fmt.Sprintf("This %s's limit is reached: %v.", who, err)}
		}
		if err != nil {
			c.rec.LimitExceeded = err.Error()
			c.w.Header().Set("X-Sluice-Limit-Exceeded", err.Error())
			c.r.metrics.softLimit(c.key.Tenant.Name)
		}
		c.tickets[i] = tk
	}
	return nil
}

// outcome classifies one upstream attempt.
type outcome int

const (
	outOK        outcome = iota // answered (success or a relayed client error)
	outThrottled                // 429/503 with a wait: cool and fail over
	outFailed                   // connection error, 5xx, bad credentials: retry
	outTimeout                  // first byte did not come in time: retry
	outBroken                   // failed after bytes reached the client: stop
	outGone                     // the client went away: stop
)

// route tries the model's pool, then its fallbacks, then the static
// answer; a batch request that found no budget waits and tries again.
func (c *call) route(ctx context.Context, rt *route) int {
	defer func() {
		if c.queued {
			c.r.batchWaiting.Add(-1)
		}
	}()
	for {
		if status := c.routeOnce(ctx, rt); status != retryRoute {
			return status
		}
	}
}

// retryRoute is routeOnce's answer when a batch request waited for budget
// and should try again.
const retryRoute = -1

func (c *call) routeOnce(ctx context.Context, rt *route) int {
	r := c.r
	chain := []*route{rt}
	for i := 0; i < len(chain); i++ {
		for _, fb := range chain[i].fallbacks {
			if !containsRoute(chain, fb) {
				chain = append(chain, fb)
			}
		}
	}
	var (
		minWait  time.Duration // shortest budget or cooling wait seen
		lastOut  outcome
		sawLimit bool
		tooLarge bool
		retries  int
	)
	for _, cur := range chain {
		var tried uint64
		for attempt := 0; attempt < c.policy.Retry.MaxAttempts; {
			now := r.cfg.Now().UnixNano()
			tg, idx, res, wait, err := c.pick(cur, tried, now)
			if tg == nil && tried != 0 && err == nil {
				// Every deployment was tried once: a transient failure may
				// pass on a second try of one still healthy.
				tg, idx, res, wait, err = c.pick(cur, 0, now)
			}
			if wait > 0 && (minWait == 0 || wait < minWait) {
				minWait = wait
			}
			if tg == nil {
				if errors.Is(err, quota.ErrTooLarge) {
					tooLarge = true
				} else if err != nil {
					sawLimit = true
				}
				break
			}
			if c.rec.Attempts > 0 {
				if !r.budget.tryRetry(now, c.policy.Retry.BudgetRatio) {
					tg.budget.Cancel(res)
					r.metrics.retryDenied()
					return c.giveUp(ctx, rt, lastOut, minWait, sawLimit, tooLarge)
				}
				retries++
				if lastOut != outThrottled {
					if !sleepCtx(ctx, backoff(&c.policy.Retry, retries)) {
						tg.budget.Cancel(res)
						break
					}
				}
			}
			// A paced share may schedule the charge a moment ahead: the
			// provider must see it no earlier (see quota.Pace).
			if d := res.Delay(r.cfg.Now().UnixNano()); d > 0 {
				r.metrics.paceWait(tg.dep.Name, d)
				if !sleepCtx(ctx, d) {
					tg.budget.Cancel(res)
					tg.health.release()
					break
				}
			}
			res = tg.budget.Sent(res, r.cfg.Now().UnixNano())
			tried |= 1 << (idx % 64)
			attempt++
			c.rec.Attempts++
			lastOut = c.attempt(ctx, tg, res)
			switch lastOut {
			case outOK:
				return c.rec.Status
			case outBroken, outGone:
				return c.rec.Status
			}
			if ctx.Err() != nil {
				return c.giveUp(ctx, rt, lastOut, minWait, sawLimit, tooLarge)
			}
			if lastOut == outThrottled {
				if w := time.Duration(tg.health.coolingUntil.Load() - r.cfg.Now().UnixNano()); w > 0 && (minWait == 0 || w < minWait) {
					minWait = w
				}
			}
		}
	}
	if sawLimit && c.rec.Attempts == 0 && c.waitForBudget(ctx, minWait) {
		return retryRoute
	}
	return c.giveUp(ctx, rt, lastOut, minWait, sawLimit, tooLarge)
}

func containsRoute(rs []*route, x *route) bool {
	for _, r := range rs {
		if r == x {
			return true
		}
	}
	return false
}

// giveUp answers when no deployment produced an answer.
func (c *call) giveUp(ctx context.Context, rt *route, last outcome, wait time.Duration, sawLimit, tooLarge bool) int {
	if c.req.Context().Err() != nil {
		c.rec.Status = 499
		return 499
	}
	if ctx.Err() != nil {
		return c.fail(errTimeout())
	}
	for _, m := range append([]*route{rt}, rt.fallbacks...) {
		if m.model.StaticResponse != "" {
			return c.static(m.model.StaticResponse)
		}
	}
	switch {
	case c.rec.Attempts == 0 && tooLarge && !sawLimit:
		return c.fail(errBadRequest("max_tokens", "The request (prompt plus max_tokens) is larger than any deployment of this model accepts in one window; lower max_tokens."))
	case c.rec.Attempts == 0 && sawLimit, last == outThrottled:
		return c.fail(errCapacity(wait))
	case last == outTimeout:
		return c.fail(errTimeout())
	}
	return c.fail(errUnavailable("No deployment of this model could answer the request.", wait))
}

// pick chooses a deployment of the pool by power of two choices over
// peak-EWMA latency times in-flight requests, skipping deployments that are
// cooling, circuit-open, broken or already tried, and reserves its budget.
// A deployment out of budget is skipped for the next choice.
func (c *call) pick(rt *route, tried uint64, now int64) (*target, int, quota.Reservation, time.Duration, error) {
	skip := tried
	var minWait time.Duration
	var lastErr error
	for {
		n := 0
		for i, tg := range rt.pool {
			if skip&(1<<(i%64)) == 0 && tg.broken == nil && tg.health.available(now) {
				n++
			}
		}
		if n == 0 {
			return nil, 0, quota.Reservation{}, minWait, lastErr
		}
		a := randN(n)
		b := a
		if n > 1 {
			b = (a + 1 + randN(n-1)) % n
		}
		var ia, ib int
		k := 0
		for i, tg := range rt.pool {
			if skip&(1<<(i%64)) == 0 && tg.broken == nil && tg.health.available(now) {
				if k == a {
					ia = i
				}
				if k == b {
					ib = i
				}
				k++
			}
		}
		best := ia
		if c.costOf(rt.pool[ib], now) < c.costOf(rt.pool[ia], now) {
			best = ib
		}
		tg := rt.pool[best]
		res, wait, err := tg.budget.ReserveClass(now, c.cost, c.batch)
		if err == nil {
			if tg.health.acquire(now) {
				return tg, best, res, 0, nil
			}
			tg.budget.Cancel(res)
		} else {
			lastErr = err
			c.r.metrics.budgetRefused(tg.dep.Name)
			if wait > 0 && (minWait == 0 || wait < minWait) {
				minWait = wait
			}
		}
		skip |= 1 << (best % 64)
	}
}

// attempt makes one upstream call and relays its answer if it is final.
func (c *call) attempt(ctx context.Context, tg *target, res quota.Reservation) outcome {
	r := c.r
	tg.health.inflight.Add(1)
	defer tg.health.inflight.Add(-1)
	c.rec.Deployment, c.rec.Region = tg.dep.Name, tg.region

	forceUsage := c.parsed.Stream && c.ep != wire.EndpointEmbeddings
	body, err := wire.Rewrite(c.body, tg.dep.Upstream, tg.setModel, forceUsage)
	if err != nil {
		tg.budget.Cancel(res)
		tg.health.release()
		c.fail(errBadRequest("", err.Error()))
		return outOK
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	up, _ := http.NewRequestWithContext(actx, http.MethodPost, tg.urls[c.ep], bytes.NewReader(body))
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Accept", "application/json, text/event-stream")
	up.Header.Set("User-Agent", "sluice")
	up.Header.Set("X-Request-Id", c.id)
	c.traceAttempt(up.Header, tg)
	if tg.authHeader != "" {
		up.Header.Set(tg.authHeader, string(tg.authValue))
	}

	sent := r.cfg.Now()
	fbTimer := time.AfterFunc(c.policy.Timeouts.FirstByte.D(), func() { cancel(errFirstByteTimeout) })
	resp, err := r.client.Do(up)
	fbTimer.Stop()
	if err != nil {
		return c.upstreamError(actx, tg, res, err, sent)
	}
	defer resp.Body.Close()
	now := r.cfg.Now()
	tg.health.observe(now.UnixNano(), now.Sub(sent))
	r.metrics.upstreamLatency(tg.dep.Name, now.Sub(sent))

	switch {
	case resp.StatusCode == http.StatusTooManyRequests ||
		(resp.StatusCode == http.StatusServiceUnavailable && retryAfter(resp.Header) > 0):
		wait := retryAfter(resp.Header)
		if wait <= 0 {
			wait = time.Second
		}
		tg.health.cool(now.Add(wait).UnixNano())
		c.throttled(tg, now.Add(wait), resp.StatusCode == http.StatusTooManyRequests)
		tg.health.release()
		if resp.StatusCode == http.StatusTooManyRequests {
			// The provider refused on arrival and did not charge the request.
			tg.budget.Cancel(res)
			r.metrics.upstream429(tg.dep.Name)
		}
		r.metrics.upstream(tg.dep.Name, "throttled")
		drain(resp.Body)
		return outThrottled
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusUnauthorized ||
		resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound:
		// A server failure, or our credentials or deployment name are
		// wrong: the deployment is unhealthy, another may answer. The body
		// is not relayed: it describes the provider account, not the client.
		tg.health.failure(now.UnixNano())
		r.metrics.upstream(tg.dep.Name, "error_"+strconv.Itoa(resp.StatusCode))
		drain(resp.Body)
		return outFailed
	case resp.StatusCode >= 400:
		// The provider rejected the request itself: relay its answer.
		tg.health.success()
		r.metrics.upstream(tg.dep.Name, "client_error")
		return c.relayBody(tg, res, resp)
	}
	// The provider's own count of what remains corrects the cluster's
	// (see quota.Allocator's drift correction).
	if rr, rt := remainingHeader(resp.Header, "X-Ratelimit-Remaining-Requests"), remainingHeader(resp.Header, "X-Ratelimit-Remaining-Tokens"); rr >= 0 || rt >= 0 {
		tg.budget.ObserveRemaining(now.UnixNano(), rr, rt)
	}
	if c.parsed.Stream && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return c.relayStream(actx, tg, res, resp, sent)
	}
	return c.relayBody(tg, res, resp)
}

var errFirstByteTimeout = errors.New("upstream first byte timeout")

// upstreamError classifies a failed round trip.
func (c *call) upstreamError(actx context.Context, tg *target, res quota.Reservation, err error, sent time.Time) outcome {
	r := c.r
	now := r.cfg.Now().UnixNano()
	if c.req.Context().Err() != nil {
		// A client cancel is not an upstream failure.
		tg.health.release()
		c.rec.Status = 499
		return outGone
	}
	if errors.Is(context.Cause(actx), errFirstByteTimeout) {
		tg.health.failure(now)
		tg.health.observe(now, time.Duration(now-sent.UnixNano()))
		r.metrics.upstream(tg.dep.Name, "timeout")
		return outTimeout
	}
	if actx.Err() != nil {
		tg.health.release()
		return outTimeout
	}
	tg.health.failure(now)
	r.metrics.upstream(tg.dep.Name, "connect_error")
	r.cfg.Logger.Debug("upstream call failed", "request_id", c.id, "deployment", tg.dep.Name, "err", err)
	return outFailed
}

// relayBody reads a whole upstream answer, learns its usage and relays it.
// Nothing reaches the client until the body is complete, so a connection cut
// mid-body is retried like any other failure.
func (c *call) relayBody(tg *target, res quota.Reservation, resp *http.Response) outcome {
	r := c.r
	buf := getBuffer()
	defer putBuffer(buf)
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, r.cfg.MaxResponseBytes+1))
	if err != nil || int64(buf.Len()) > r.cfg.MaxResponseBytes {
		if c.req.Context().Err() != nil {
			c.rec.Status = 499
			return outGone
		}
		tg.health.failure(r.cfg.Now().UnixNano())
		r.metrics.upstream(tg.dep.Name, "body_error")
		return outFailed
	}
	if resp.StatusCode < 300 {
		tg.health.success()
		r.metrics.upstream(tg.dep.Name, "ok")
		if u, ok := wire.BodyUsage(buf.Bytes()); ok {
			c.usage, c.haveUsage = u, true
		}
	}
	c.settleDeployment(tg, res)
	c.writeHeaders(resp, tg)
	c.w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	c.w.WriteHeader(resp.StatusCode)
	c.committed = true
	c.rec.Status = resp.StatusCode
	if resp.StatusCode == http.StatusOK {
		// Stored before the answer goes out, so that a client's next
		// identical request finds it (cache.go).
		c.cachePutBody(buf.Bytes())
	}
	_, _ = c.w.Write(buf.Bytes())
	return outOK
}

// relayStream relays an SSE answer event by event. The client's headers go
// out with the first event, so a stream that fails before producing one is
// still retried; after it, a failure ends the client's stream with an error
// event and is never retried.
func (c *call) relayStream(actx context.Context, tg *target, res quota.Reservation, resp *http.Response, sent time.Time) outcome {
	r := c.r
	rc := http.NewResponseController(c.w)
	er := wire.NewEventReader(resp.Body)
	var chunks int64
	unflushed := false // written to the client since the last flush
	for {
		data, err := er.Next()
		if err != nil {
			if c.req.Context().Err() != nil {
				c.rec.Status = 499
				c.settleStream(tg, res, chunks)
				tg.health.release()
				return outGone
			}
			failure := err != io.EOF || !c.committed
			if failure {
				tg.health.failure(r.cfg.Now().UnixNano())
				r.metrics.upstream(tg.dep.Name, "stream_broken")
			}
			if !c.committed {
				return outFailed
			}
			if err != io.EOF || !c.haveUsage {
				// Ended without [DONE]: tell the client the stream is incomplete.
				_ = wire.WriteEvent(c.w, []byte(`{"error":{"message":"The upstream stream ended before it completed.","type":"server_error","param":null,"code":"stream_interrupted"}}`))
				_ = rc.Flush()
				c.rec.Status = http.StatusBadGateway
			}
			c.settleStream(tg, res, chunks)
			return outBroken
		}
		if !c.committed {
			now := r.cfg.Now()
			tg.health.observe(now.UnixNano(), now.Sub(sent))
			tg.health.success()
			r.metrics.upstream(tg.dep.Name, "ok")
			c.writeHeaders(resp, tg)
			c.w.Header().Del("Content-Length")
			c.w.WriteHeader(http.StatusOK)
			c.committed = true
			c.rec.Status = http.StatusOK
		}
		if wire.IsDone(data) {
			c.settleStream(tg, res, chunks)
			c.cachePutStream() // before [DONE] reaches the client, as above
			if werr := wire.WriteEvent(c.w, data); werr == nil {
				_ = rc.Flush()
			}
			return outOK
		}
		u, usageOnly, hasUsage := wire.ChunkUsage(data)
		if hasUsage {
			c.usage, c.haveUsage = u, true
		}
		if !usageOnly || c.parsed.IncludeUsage {
			if !usageOnly {
				chunks++
				c.cacheChunk(data)
			}
			if werr := wire.WriteEvent(c.w, data); werr != nil {
				c.rec.Status = 499
				c.settleStream(tg, res, chunks)
				return outGone
			}
			unflushed = true
		}
		// Chunks that arrived together are flushed together; none waits
		// for more input unflushed.
		if unflushed && !er.Buffered() {
			if werr := rc.Flush(); werr != nil {
				c.rec.Status = 499
				c.settleStream(tg, res, chunks)
				return outGone
			}
			unflushed = false
		}
	}
}

// settleStream settles a stream with its reported usage, or with an
// estimate (one token per content chunk) when the upstream reported none.
func (c *call) settleStream(tg *target, res quota.Reservation, chunks int64) {
	if !c.haveUsage {
		c.usage = wire.Usage{PromptTokens: c.prompt, CompletionTokens: chunks, TotalTokens: c.prompt + chunks}
		c.rec.Estimated = true
		c.haveUsage = true
	}
	c.settleDeployment(tg, res)
}

func (c *call) settleDeployment(tg *target, res quota.Reservation) {
	used := res.Tokens()
	if c.haveUsage {
		used = c.usage.PromptTokens + c.usage.CompletionTokens
	}
	tg.budget.Settle(res, used)
}

// hop-by-hop and upstream-specific headers not passed to the client.
var skipHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Set-Cookie": true, "X-Request-Id": true, "Apim-Request-Id": true, "Retry-After": true,
	"Retry-After-Ms": true, "X-Ms-Retry-After-Ms": true, "Date": true, "Server": true,
}

func (c *call) writeHeaders(resp *http.Response, tg *target) {
	c.r.metrics.firstByte(c.rec.Model, c.parsed.Stream, c.r.cfg.Now().Sub(c.start))
	h := c.w.Header()
	for k, vs := range resp.Header {
		if skipHeaders[k] || strings.HasPrefix(k, "X-Ratelimit-") {
			continue
		}
		h[k] = vs
	}
	h.Set("X-Sluice-Deployment", tg.dep.Name)
}

// static answers the model's configured static response.
func (c *call) static(text string) int {
	c.rec.Deployment = "static"
	h := c.w.Header()
	h.Set("X-Sluice-Deployment", "static")
	id := "chatcmpl-" + c.id
	created := c.start.Unix()
	if c.parsed.Stream && c.ep == wire.EndpointChat {
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		c.w.WriteHeader(http.StatusOK)
		c.committed = true
		for _, ev := range staticStream(id, created, c.rec.Model, text, c.parsed.IncludeUsage) {
			_ = wire.WriteEvent(c.w, ev)
		}
		_ = http.NewResponseController(c.w).Flush()
	} else {
		h.Set("Content-Type", "application/json")
		c.w.WriteHeader(http.StatusOK)
		c.committed = true
		_, _ = c.w.Write(staticBody(c.ep, id, created, c.rec.Model, text))
	}
	c.rec.Status = http.StatusOK
	c.usage, c.haveUsage = wire.Usage{}, true
	return http.StatusOK
}

// fail answers an error unless a response is already under way.
func (c *call) fail(e *apiError) int {
	c.rec.Status = e.Status
	if !c.committed {
		writeError(c.w, e)
		c.committed = true
	}
	return e.Status
}

// finish settles tenant limits, records usage and logs the request.
func (c *call) finish(status int) {
	r := c.r
	end := r.cfg.Now()
	c.rec.Status = status
	c.rec.Latency = end.Sub(c.start)
	if c.haveUsage {
		c.rec.PromptTokens, c.rec.CompletionTokens = c.usage.PromptTokens, c.usage.CompletionTokens
	}
	used := c.rec.PromptTokens + c.rec.CompletionTokens
	for _, t := range c.tickets {
		t.Done(end.UnixNano(), used)
	}
	r.metrics.request(&c.rec)
	if c.key != nil && r.cfg.Sink != nil {
		rec := c.rec
		r.cfg.Sink.Record(&rec)
	}
	c.logFinished(status)
}

// retryAfter reads the provider's wait: retry-after-ms, x-ms-retry-after-ms,
// then retry-after in seconds (or an HTTP date).
func retryAfter(h http.Header) time.Duration {
	for _, k := range [...]string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if v := h.Get(k); v != "" {
			if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
				return time.Duration(ms * float64(time.Millisecond))
			}
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			return time.Duration(s * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			return time.Until(t)
		}
	}
	return 0
}

func drain(r io.Reader) { _, _ = io.CopyN(io.Discard, r, 64<<10) }

// sleepCtx waits d unless ctx ends first; it reports whether it waited.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// remainingHeader parses an x-ratelimit-remaining-* value (a non-negative
// integer); -1 when it is absent or malformed.
func remainingHeader(h http.Header, key string) int64 {
	vs := h[key]
	if len(vs) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(vs[0]), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}
