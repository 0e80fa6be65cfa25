package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
)

// Request identity and trace context.
//
// Every API request carries a request id and a W3C trace context
// (https://www.w3.org/TR/trace-context/). The request id is the client's
// X-Request-Id when it is sane (see requestID), otherwise a generated one;
// it is answered in the response header, sent upstream and logged. The
// trace context is the client's traceparent when it is well formed,
// otherwise a new trace; every upstream attempt is a new span of that trace
// (same trace id, a new parent id), so a provider's logs of two retries of
// one request are told apart and still joined to the client's trace.

// maxRequestIDLen bounds an accepted client request id.
const maxRequestIDLen = 128

// requestID returns the client's request id if it is sane: 1 to
// maxRequestIDLen characters from a conservative set (letters, digits and
// - _ . : / + = @). Anything else (empty, too long, spaces, control or
// non-ASCII characters, which could forge log lines or headers) is
// replaced by a generated id.
func requestID(client string) string {
	if validRequestID(client) {
		return client
	}
	return newRequestID()
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

// traceContext is the W3C trace context of one request: the trace it
// belongs to and the sampled flag, plus the client's tracestate, which is
// passed on untouched when the client's traceparent was valid.
type traceContext struct {
	traceID [16]byte
	// parent is the span id the client sent (zero when the trace is ours).
	parent [8]byte
	flags  byte
	state  string
}

// Limits of the trace context headers.
const (
	traceparentLen = 55 // version 00: 2+1+32+1+16+1+2
	// maxTracestateLen bounds the tracestate passed on: the specification
	// asks vendors to propagate at least 512 characters and lets longer
	// values be dropped.
	maxTracestateLen = 512
	// flagSampled is the only trace flag this version defines.
	flagSampled = 0x01
)

// newTraceContext continues the client's trace when its traceparent is
// valid and starts a new, sampled one otherwise. Several traceparent
// headers make the value invalid, as the specification requires.
func newTraceContext(h http.Header) traceContext {
	if vs := h.Values("Traceparent"); len(vs) == 1 {
		if tc, ok := parseTraceparent(vs[0]); ok {
			if ts := h.Values("Tracestate"); len(ts) > 0 {
				tc.state = joinTracestate(ts)
			}
			return tc
		}
	}
	var tc traceContext
	for isZero(tc.traceID[:]) {
		_, _ = rand.Read(tc.traceID[:]) // crypto/rand.Read never fails (it crashes instead)
	}
	tc.flags = flagSampled
	return tc
}

// parseTraceparent parses a traceparent header value:
//
//	version "-" trace-id "-" parent-id "-" trace-flags
//
// with lowercase hex fields of 2, 32, 16 and 2 characters. Version ff is
// invalid, and so are an all-zero trace or parent id. Version 00 must be
// exactly 55 characters; a later version may append fields after a '-',
// which are ignored (the first four keep their meaning).
func parseTraceparent(s string) (traceContext, bool) {
	var tc traceContext
	if len(s) < traceparentLen {
		return tc, false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tc, false
	}
	var version [1]byte
	if !decodeLowerHex(version[:], s[0:2]) || version[0] == 0xff {
		return tc, false
	}
	if version[0] == 0 {
		if len(s) != traceparentLen {
			return tc, false
		}
	} else if len(s) > traceparentLen && s[traceparentLen] != '-' {
		return tc, false
	}
	var flags [1]byte
	if !decodeLowerHex(tc.traceID[:], s[3:35]) || !decodeLowerHex(tc.parent[:], s[36:52]) ||
		!decodeLowerHex(flags[:], s[53:55]) {
		return tc, false
	}
	if isZero(tc.traceID[:]) || isZero(tc.parent[:]) {
		return tc, false
	}
	// Only the sampled flag is defined by version 00; other bits are not
	// passed on.
	tc.flags = flags[0] & flagSampled
	return tc, true
}

// decodeLowerHex decodes exactly 2*len(dst) lowercase hex digits; the
// specification forbids uppercase.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := lowerHexVal(s[2*i])
		lo, ok2 := lowerHexVal(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// joinTracestate joins several tracestate headers as one list, as the
// specification allows, and drops the whole value when it is too long or
// holds a control character (it is opaque to us, but must not break a
// header or a log line).
func joinTracestate(vs []string) string {
	n := len(vs) - 1
	for _, v := range vs {
		n += len(v)
	}
	if n > maxTracestateLen {
		return ""
	}
	b := make([]byte, 0, n)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return string(b)
}

// TraceID returns the trace id in hex.
func (tc *traceContext) TraceID() string { return hex.EncodeToString(tc.traceID[:]) }

// traceparent formats a version 00 traceparent for a span of the trace.
func (tc *traceContext) traceparent(span [8]byte) string {
	var b [traceparentLen]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tc.traceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], span[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{tc.flags})
	return string(b[:])
}

// newSpanID returns a random, non-zero span id.
func newSpanID() [8]byte {
	var id [8]byte
	for isZero(id[:]) {
		v := mrand.Uint64()
		for i := range id {
			id[i] = byte(v >> (8 * i))
		}
	}
	return id
}

// traceAttempt sets the trace headers of one upstream attempt: a new span
// of the request's trace, and the client's tracestate if any. The span id
// is logged at debug, so a provider's record of one attempt can be found.
func (c *call) traceAttempt(h http.Header, tg *target) {
	span := newSpanID()
	h.Set("Traceparent", c.trace.traceparent(span))
	if c.trace.state != "" {
		h.Set("Tracestate", c.trace.state)
	}
	if l := c.r.cfg.Logger; l.Enabled(c.req.Context(), slog.LevelDebug) {
		l.LogAttrs(c.req.Context(), slog.LevelDebug, "upstream attempt",
			slog.String("request_id", c.id), slog.String("trace_id", c.trace.TraceID()),
			slog.String("span_id", hex.EncodeToString(span[:])), slog.String("deployment", tg.dep.Name),
			slog.Int("attempt", c.rec.Attempts))
	}
}

// logFinished writes the one log line of a finished request, at info:
// identity, routing, outcome, tokens, attempts and latency. It never logs
// a secret (keys appear by id), a header value other than the request and
// trace ids, or any prompt or completion text.
func (c *call) logFinished(status int) {
	l := c.r.cfg.Logger
	ctx := c.req.Context()
	if !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := [...]slog.Attr{
		slog.String("request_id", c.id),
		slog.String("trace_id", c.trace.TraceID()),
		slog.String("endpoint", c.rec.Endpoint),
		slog.String("tenant", c.rec.Tenant),
		slog.String("key_id", c.rec.KeyID),
		slog.String("model", c.rec.Model),
		slog.String("deployment", c.rec.Deployment),
		slog.String("region", c.rec.Region),
		slog.Int("status", status),
		slog.Bool("stream", c.rec.Stream),
		slog.Bool("cached", c.rec.Cached),
		slog.Int64("prompt_tokens", c.rec.PromptTokens),
		slog.Int64("completion_tokens", c.rec.CompletionTokens),
		slog.Int("attempts", c.rec.Attempts),
		slog.Float64("latency_ms", float64(c.rec.Latency.Microseconds())/1000),
	}
	// The client may be gone (499); the line is still wanted.
	l.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "request", attrs[:]...)
}
