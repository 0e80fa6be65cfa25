package router

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseTraceparent(t *testing.T) {
	const tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	tests := []struct {
		name      string
		in        string
		ok        bool
		wantFlags byte
	}{
		{"sampled", "00-" + tid + "-" + pid + "-01", true, 1},
		{"not sampled", "00-" + tid + "-" + pid + "-00", true, 0},
		{"unknown flags are dropped", "00-" + tid + "-" + pid + "-ff", true, 1},
		{"later version with more fields", "01-" + tid + "-" + pid + "-01-extra", true, 1},
		{"later version, same length", "cc-" + tid + "-" + pid + "-00", true, 0},
		{"version 00 with trailing data", "00-" + tid + "-" + pid + "-01-extra", false, 0},
		{"later version, junk after flags", "01-" + tid + "-" + pid + "-01x", false, 0},
		{"version ff", "ff-" + tid + "-" + pid + "-01", false, 0},
		{"uppercase trace id", "00-" + strings.ToUpper(tid) + "-" + pid + "-01", false, 0},
		{"uppercase version", "0A-" + tid + "-" + pid + "-01", false, 0},
		{"zero trace id", "00-" + strings.Repeat("0", 32) + "-" + pid + "-01", false, 0},
		{"zero parent id", "00-" + tid + "-" + strings.Repeat("0", 16) + "-01", false, 0},
		{"short trace id", "00-" + tid[:31] + "-" + pid + "-01", false, 0},
		{"wrong separator", "00_" + tid + "-" + pid + "-01", false, 0},
		{"non-hex", "00-" + tid[:31] + "g-" + pid + "-01", false, 0},
		{"empty", "", false, 0},
		{"spaces", " 00-" + tid + "-" + pid + "-01", false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseTraceparent(tc.in)
			if ok != tc.ok {
				t.Fatalf("parseTraceparent(%q) ok = %v, want %v", tc.in, ok, tc.ok)
			}
			if !ok {
				return
			}
			if got.TraceID() != tid || got.flags != tc.wantFlags {
				t.Fatalf("parsed %s flags %x", got.TraceID(), got.flags)
			}
			if out := got.traceparent(got.parent); out != "00-"+tid+"-"+pid+"-0"+string("01"[tc.wantFlags]) {
				t.Fatalf("formatted back as %q", out)
			}
		})
	}
}

func TestNewTraceContext(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name      string
		header    http.Header
		continued bool
		state     string
	}{
		{"none", http.Header{}, false, ""},
		{"valid", http.Header{"Traceparent": {valid}, "Tracestate": {"congo=t61rcWkgMzE"}}, true, "congo=t61rcWkgMzE"},
		{"several tracestate headers join", http.Header{"Traceparent": {valid}, "Tracestate": {"a=1", "b=2"}}, true, "a=1,b=2"},
		{"tracestate too long is dropped", http.Header{"Traceparent": {valid}, "Tracestate": {"a=" + strings.Repeat("x", 600)}}, true, ""},
		{"tracestate with a control character is dropped", http.Header{"Traceparent": {valid}, "Tracestate": {"a=1\x01"}}, true, ""},
		{"invalid traceparent drops tracestate", http.Header{"Traceparent": {strings.ToUpper(valid)}, "Tracestate": {"a=1"}}, false, ""},
		{"two traceparents are invalid", http.Header{"Traceparent": {valid, valid}}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := newTraceContext(tc.header)
			if continued := got.TraceID() == "4bf92f3577b34da6a3ce929d0e0e4736"; continued != tc.continued {
				t.Fatalf("trace %s continued = %v, want %v", got.TraceID(), continued, tc.continued)
			}
			if got.state != tc.state {
				t.Fatalf("tracestate %q, want %q", got.state, tc.state)
			}
			if !tc.continued && got.flags != flagSampled {
				t.Fatalf("a new trace has flags %x", got.flags)
			}
			span := newSpanID()
			if _, ok := parseTraceparent(got.traceparent(span)); !ok {
				t.Fatalf("an attempt's traceparent %q does not parse", got.traceparent(span))
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		in   string
		kept bool
	}{
		{"abc-123", true},
		{"9f1c2b1e-4d6a-4b8e-9a55-0d5e2c6b7a10", true},
		{"req_01HZX:trace/1+2=3@svc.local", true},
		{strings.Repeat("a", maxRequestIDLen), true},
		{strings.Repeat("a", maxRequestIDLen+1), false},
		{"", false},
		{"has space", false},
		{"new\nline", false},
		{`quote"d`, false},
		{"ünïcode", false},
		{"semi;colon", false},
	}
	for _, tc := range tests {
		got := requestID(tc.in)
		if (got == tc.in) != tc.kept {
			t.Errorf("requestID(%q) = %q, kept want %v", tc.in, got, tc.kept)
		}
		if !validRequestID(got) {
			t.Errorf("requestID(%q) returned an invalid id %q", tc.in, got)
		}
	}
}

// FuzzParseTraceparent: the parser never panics, accepts only what it can
// format back, and what it accepts keeps its ids through a round trip.
func FuzzParseTraceparent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		"", "00", "00-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tc, ok := parseTraceparent(s)
		if !ok {
			return
		}
		if isZero(tc.traceID[:]) || isZero(tc.parent[:]) || tc.flags&^flagSampled != 0 {
			t.Fatalf("accepted %q with trace %x parent %x flags %x", s, tc.traceID, tc.parent, tc.flags)
		}
		if len(s) < traceparentLen || strings.HasPrefix(s, "ff") || (strings.HasPrefix(s, "00") && len(s) != traceparentLen) {
			t.Fatalf("accepted %q", s)
		}
		out := tc.traceparent(tc.parent)
		back, ok := parseTraceparent(out)
		if !ok || back.traceID != tc.traceID || back.parent != tc.parent || back.flags != tc.flags {
			t.Fatalf("%q formatted as %q does not parse back the same", s, out)
		}
		if out[3:52] != s[3:52] {
			t.Fatalf("ids changed: %q -> %q", s, out)
		}
	})
}

// BenchmarkTraceContext is the request path's cost of trace propagation:
// parse the client's traceparent, then format one attempt's header.
func BenchmarkTraceContext(b *testing.B) {
	h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "X-Request-Id": {"9f1c2b1e-4d6a-4b8e-9a55-0d5e2c6b7a10"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = requestID(h.Get("X-Request-Id"))
		tc := newTraceContext(h)
		_ = tc.traceparent(newSpanID())
	}
}
