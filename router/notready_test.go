package router_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/router"
)

// TestRequestWaitsForFirstConfig: a request that reaches a node before
// its first configuration (a node still catching up after a restart)
// waits for it and is served, instead of failing; with none in time it
// gets 503 not_ready after NotReadyWait.
func TestRequestWaitsForFirstConfig(t *testing.T) {
	e := newEnv(t, envOpts{regionsNo: 1}) // for its mock region and configuration
	snap, err := state.Build(e.cfg, uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		install bool
		wait    time.Duration
		want    int
	}{
		{"configuration arrives", true, 10 * time.Second, http.StatusOK},
		{"none in time", false, 100 * time.Millisecond, http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := router.New(router.Config{NotReadyWait: tc.wait, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			srv := httptest.NewServer(r.Handler())
			defer func() { srv.Close(); r.Close() }()
			type answer struct {
				code int
				body string
			}
			done := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(chatBody(false, 8)))
				req.Header.Set("Authorization", "Bearer "+demoKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- answer{0, err.Error()}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- answer{resp.StatusCode, string(b)}
			}()
			if tc.install {
				waitFor(t, 5*time.Second, "the request to wait for a configuration", func() bool { return r.WaitingForConfig() == 1 })
				r.Update(snap)
			}
			got := <-done
			if got.code != tc.want {
				t.Fatalf("status %d (%s), want %d", got.code, got.body, tc.want)
			}
			if got.code == http.StatusServiceUnavailable && !strings.Contains(got.body, "not_ready") {
				t.Fatalf("503 body %s, want the not_ready error", got.body)
			}
			if n := r.WaitingForConfig(); n != 0 {
				t.Fatalf("%d requests still counted as waiting", n)
			}
		})
	}
}
