package suite

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadAddr returns an address nothing listens on: a port bound and closed.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// hijackClose answers nothing: it reads the request and closes the
// connection, as a node killed mid-request does.
func hijackClose(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestFailoverTransport(t *testing.T) {
	var mu sync.Mutex
	var seen []string // X-Request-Id and body seen by the live server
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Request-Id")+" "+string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	}))
	defer live.Close()
	closed := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	closedAddr := closed.Listener.Addr().String()
	closed.Close()
	broken := httptest.NewServer(http.HandlerFunc(hijackClose))
	defer broken.Close()
	liveAddr := strings.TrimPrefix(live.URL, "http://")
	brokenAddr := strings.TrimPrefix(broken.URL, "http://")

	tests := []struct {
		name     string
		targets  []Target
		wantErr  bool
		attempts []Attempt // Node, Status, Unknown compared
	}{
		{"closed node, then the live one", []Target{{"a", closedAddr}, {"b", liveAddr}}, false,
			[]Attempt{{Node: "a"}, {Node: "b", Status: 200}}},
		{"connection cut after the request: unknown, then next", []Target{{"a", brokenAddr}, {"b", liveAddr}}, false,
			[]Attempt{{Node: "a", Unknown: true}, {Node: "b", Status: 200}}},
		{"every node down", []Target{{"a", closedAddr}, {"b", deadAddr(t)}}, true,
			[]Attempt{{Node: "a"}, {Node: "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := &http.Transport{DisableKeepAlives: true}
			defer base.CloseIdleConnections()
			ft := &FailoverTransport{Targets: tt.targets, Base: base}
			ft.next.Store(uint64(len(tt.targets) - 1)) // the first call starts at target 0
			rec := &Record{ID: "req-1"}
			ctx, cancel := context.WithTimeout(WithRecord(context.Background(), rec), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://sluice.invalid/v1/chat/completions", strings.NewReader(`{"x":1}`))
			resp, err := (&http.Client{Transport: ft}).Do(req)
			if err == nil {
				_, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			got := rec.snapshotAttempts()
			if len(got) != len(tt.attempts) {
				t.Fatalf("attempts %+v, want %d", got, len(tt.attempts))
			}
			for i, a := range got {
				w := tt.attempts[i]
				if a.Node != w.Node || a.Status != w.Status || a.Unknown != w.Unknown {
					t.Errorf("attempt %d = %+v, want node %s status %d unknown %v", i, a, w.Node, w.Status, w.Unknown)
				}
				if want := "req-1-a" + string(rune('1'+i)); a.ID != want {
					t.Errorf("attempt %d id %q, want %q", i, a.ID, want)
				}
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if !strings.HasSuffix(s, `{"x":1}`) || !strings.HasPrefix(s, "req-1-a") {
			t.Errorf("live server saw %q: the body and a per-attempt id must reach it", s)
		}
	}
}

// A body cut after the headers marks the attempt unknown.
func TestFailoverTransportCutBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	ft := &FailoverTransport{Targets: []Target{{"a", strings.TrimPrefix(srv.URL, "http://")}}, Base: base}
	rec := &Record{ID: "r"}
	req, _ := http.NewRequestWithContext(WithRecord(context.Background(), rec), http.MethodGet, "http://x/", nil)
	resp, err := (&http.Client{Transport: ft}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr == nil {
		t.Fatal("read the whole body of a cut answer")
	}
	if a := rec.snapshotAttempts(); len(a) != 1 || !a[0].Unknown {
		t.Errorf("attempts %+v, want one unknown", a)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		ctxErr error
		kind   string
	}{
		{"ok", nil, nil, KindOK},
		{"deadline", context.DeadlineExceeded, context.DeadlineExceeded, KindHung},
		{"connection error", io.ErrUnexpectedEOF, nil, KindFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if kind, _, _ := classify(tt.err, tt.ctxErr); kind != tt.kind {
				t.Errorf("kind %s, want %s", kind, tt.kind)
			}
		})
	}
}
