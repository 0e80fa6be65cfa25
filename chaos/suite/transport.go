package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Attempt is one try of a request on one node.
type Attempt struct {
	ID     string    `json:"id"` // the X-Request-Id sent: <request>-a<n>
	Node   string    `json:"node"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Status int       `json:"status,omitempty"` // 0 when no response arrived
	Err    string    `json:"err,omitempty"`
	// Unknown: the connection broke after the request may have reached
	// the node (reset, EOF, no headers in time, a body cut short), so
	// whether it was served upstream is unknown to the client.
	Unknown bool `json:"unknown,omitempty"`
}

// Record is everything one client saw of one request.
type Record struct {
	ID       string        `json:"id"`
	Tenant   string        `json:"tenant"`
	Class    string        `json:"class"`
	Stream   bool          `json:"stream"`
	Start    time.Time     `json:"start"`
	End      time.Time     `json:"end"`
	Deadline time.Duration `json:"deadline_ns"`
	Status   int           `json:"status"`            // final HTTP status, 0 for none
	Kind     string        `json:"kind"`              // ok, refused, failed, hung
	Err      string        `json:"err,omitempty"`     // short error text
	Prompt   int64         `json:"prompt_tokens"`     // usage the SDK reported
	Complete int64         `json:"completion_tokens"` //
	Attempts []Attempt     `json:"attempts"`

	mu sync.Mutex
}

// Outcome kinds of a Record.
const (
	KindOK      = "ok"
	KindRefused = "refused" // a clean 429 or 503
	KindFailed  = "failed"  // another status or a connection error no node could take
	KindHung    = "hung"    // no answer by the deadline
)

type recordKey struct{}

// WithRecord returns ctx carrying rec, for the failover transport.
func WithRecord(ctx context.Context, rec *Record) context.Context {
	return context.WithValue(ctx, recordKey{}, rec)
}

func recordFrom(ctx context.Context) *Record {
	rec, _ := ctx.Value(recordKey{}).(*Record)
	return rec
}

// addAttempt appends a and returns its index.
func (r *Record) addAttempt(a Attempt) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Attempts = append(r.Attempts, a)
	return len(r.Attempts) - 1
}

func (r *Record) updateAttempt(i int, f func(a *Attempt)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.Attempts[i])
}

// Snapshot returns a copy of the attempts.
func (r *Record) snapshotAttempts() []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Attempt(nil), r.Attempts...)
}

// Target is one node as clients address it.
type Target struct {
	Node string
	Addr string // host:port of its OpenAI API
}

// FailoverTransport is what a DNS-fronted client does: it round-robins
// the targets and, on a connection error (refused, reset, EOF or no
// headers in time), tries the next one. Every attempt carries its own
// X-Request-Id and is recorded in the request's Record (see WithRecord).
type FailoverTransport struct {
	// Targets are tried in order from a rotating start.
	Targets []Target
	// Base sends each attempt; it should bound the wait for headers
	// (http.Transport.ResponseHeaderTimeout) so a paused node is left.
	Base http.RoundTripper

	next atomic.Uint64
	seq  atomic.Uint64 // ids of requests sent without a Record
}

// RoundTrip implements http.RoundTripper.
func (t *FailoverTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := recordFrom(req.Context())
	if rec == nil {
		rec = &Record{ID: fmt.Sprintf("anon-%d", t.seq.Add(1))}
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("failover: read body: %w", err)
		}
		body = b
	}
	n := len(t.Targets)
	if n == 0 {
		return nil, errors.New("failover: no targets")
	}
	start := int(t.next.Add(1) % uint64(n))
	var lastErr error
	for k := range n {
		tg := t.Targets[(start+k)%n]
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = "http", tg.Addr, tg.Addr
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		rec.mu.Lock()
		id := fmt.Sprintf("%s-a%d", rec.ID, len(rec.Attempts)+1)
		rec.mu.Unlock()
		r.Header.Set("X-Request-Id", id)
		i := rec.addAttempt(Attempt{ID: id, Node: tg.Node, Start: time.Now()})
		resp, err := t.Base.RoundTrip(r)
		if err == nil {
			rec.updateAttempt(i, func(a *Attempt) { a.Status = resp.StatusCode; a.End = time.Now() })
			resp.Body = &watchedBody{ReadCloser: resp.Body, rec: rec, i: i}
			return resp, nil
		}
		unknown := !IsDialError(err)
		rec.updateAttempt(i, func(a *Attempt) { a.Err, a.Unknown, a.End = shortErr(err), unknown, time.Now() })
		lastErr = err
		if req.Context().Err() != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("failover: every node failed: %w", lastErr)
}

// IsDialError reports whether err happened while connecting, so the
// request cannot have reached the server.
func IsDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// watchedBody marks its attempt unknown when the body breaks before its
// end: the answer may have been served and charged.
type watchedBody struct {
	io.ReadCloser
	rec *Record
	i   int
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.rec.updateAttempt(b.i, func(a *Attempt) { a.Unknown, a.Err, a.End = true, shortErr(err), time.Now() })
	}
	return n, err
}

// shortErr classifies a connection error in a few words.
func shortErr(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case IsDialError(err):
		return "dial"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "eof"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
