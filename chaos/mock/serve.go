package mock

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"
)

// serves reports whether a deployment of kind serves operation op.
func serves(kind, op Kind) bool {
	if kind == KindEmbedding {
		return op == KindEmbedding
	}
	return op == KindChat || op == KindCompletion
}

// serveOp validates the body for a routed request and processes it.
func (c *call) serveOp(body []byte) {
	d := c.dep
	if !serves(d.cfg.Kind, c.op) {
		d.badRequest(c.req.Header)
		c.writeError(c.errOperation(d, c.op))
		return
	}
	p, err := parseRequest(c.op, body)
	if err == nil && c.op == KindEmbedding {
		err = checkDimensions(p, d.cfg.EmbeddingDims)
	}
	if err != nil {
		d.badRequest(c.req.Header)
		re, ok := asRequestError(err)
		if !ok {
			c.writeError(apiError{status: http.StatusInternalServerError, typ: "server_error", message: err.Error()})
			return
		}
		c.writeError(errRequest(re))
		return
	}
	c.begin()
	defer c.endFlight()
	c.process(p)
}

// draws are a request's uniform draws for its fault decisions, taken up
// front so every request consumes its random source the same way.
type draws struct {
	reset, e500, e503, stall, cut float64
}

// process runs faults, quota, latency and the answer of a valid request.
func (c *call) process(p *parsedRequest) {
	d := c.dep
	u := draws{c.rng.Float64(), c.rng.Float64(), c.rng.Float64(), c.rng.Float64(), c.rng.Float64()}
	f := c.r.effectiveFaults(d.cfg.Name)
	if f.Down {
		d.inject(FaultDown)
		c.abortConn(true)
		return
	}
	if u.reset < f.Reset {
		d.inject(FaultReset)
		c.abortConn(true)
		return
	}
	if now := c.r.now(); now.Before(f.force429Until) {
		d.storm(now)
		c.writeError(c.errRateLimited(f.force429Until.Sub(now), "requests"))
		return
	}
	_, adm := d.admit(c.r.now, p.cost(d.cfg.DefaultMaxTokens))
	c.setRateHeaders(adm)
	if !adm.ok {
		c.writeError(c.errRateLimited(adm.retryAfter, adm.limitedBy))
		return
	}
	if u.e500 < f.Error500 {
		d.inject(FaultError500)
		c.writeError(c.err500())
		return
	}
	if u.e503 < f.Error503 {
		d.inject(FaultError503)
		c.writeError(c.err503(f.RetryAfter503.D()))
		return
	}
	if u.stall < f.Stall {
		d.inject(FaultStall)
		hold := time.Duration(-1)
		if f.StallFor > 0 {
			hold = f.StallFor.D()
		}
		if !c.pause(hold) {
			return
		}
	}
	if !c.pause(ttfb(c.rng, d.cfg.Latency) + f.ExtraLatency.D()) {
		return
	}
	if c.op == KindEmbedding {
		c.answerEmbeddings(p)
		return
	}
	c.answerText(p, u.cut < f.StreamCut)
}

// pause waits before the answer starts. It counts a client that went away
// as canceled and answers 503 when the region closes.
func (c *call) pause(d time.Duration) bool {
	err := c.r.wait(c.req.Context(), d)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errRegionClosed):
		c.writeError(c.err503(0))
	default:
		c.canceled()
	}
	return false
}

func (c *call) canceled() {
	c.dep.update(func(s *DeploymentStats) { s.Canceled++ })
}

// setRateHeaders reports the current windows: remaining requests and
// tokens, plus (OpenAI dialect) limits and resets.
func (c *call) setRateHeaders(a admission) {
	h := c.w.Header()
	if a.remainingReq >= 0 {
		h.Set("x-ratelimit-remaining-requests", strconv.FormatInt(a.remainingReq, 10))
	}
	if a.remainingTok >= 0 {
		h.Set("x-ratelimit-remaining-tokens", strconv.FormatInt(a.remainingTok, 10))
	}
	if c.azure() {
		return
	}
	if a.limitReq > 0 {
		h.Set("x-ratelimit-limit-requests", strconv.FormatInt(a.limitReq, 10))
		h.Set("x-ratelimit-reset-requests", a.resetReq.Round(time.Millisecond).String())
	}
	if a.limitTok > 0 {
		h.Set("x-ratelimit-limit-tokens", strconv.FormatInt(a.limitTok, 10))
		h.Set("x-ratelimit-reset-tokens", a.resetTok.Round(time.Millisecond).String())
	}
}

// abortConn drops the connection without (more of) an answer: with reset,
// as a TCP RST (SO_LINGER 0); otherwise with a plain close. Where the
// connection cannot be hijacked (HTTP/2) the handler is aborted instead.
func (c *call) abortConn(reset bool) {
	c.endFlight()
	conn, _, err := http.NewResponseController(c.w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if reset {
		raw := conn
		if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
			raw = nc.NetConn()
		}
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	_ = conn.Close()
}
