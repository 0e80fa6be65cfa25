package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testKey        = "test-key"
	testAPIVersion = "2024-10-21"
)

// fakeClock is a settable clock for rate-limit windows.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// epoch is a window-aligned instant for tests (a multiple of one minute).
var epoch = time.Unix(1_750_000_020, 0)

func testConfig(dialect Dialect) RegionConfig {
	return RegionConfig{
		Name:    "testregion",
		Dialect: dialect,
		APIKey:  testKey,
		Deployments: []DeploymentConfig{
			{Name: "gpt-4o-mini", Model: "gpt-4o-mini-2024-07-18", Kind: KindChat},
			{Name: "text-embedding-3-small", Kind: KindEmbedding},
		},
	}
}

// startRegion serves a Region on an httptest server until the test ends.
func startRegion(t *testing.T, cfg RegionConfig) (*Region, *httptest.Server) {
	t.Helper()
	r, err := NewRegion(cfg)
	if err != nil {
		t.Fatalf("NewRegion: %v", err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		_ = r.Close()
		srv.Close()
	})
	return r, srv
}

func openaiClient(srv *httptest.Server, key string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(srv.URL+"/v1"),
		option.WithAPIKey(key),
		option.WithHTTPClient(srv.Client()),
		option.WithMaxRetries(0),
	)
}

// azureClient is the SDK configured the way github.com/openai/openai-go/v3/azure
// configures it (WithEndpoint + WithAPIKey): base URL of the resource, an
// api-version query parameter, the api-key header, and a middleware that
// moves /chat/completions, /completions and /embeddings under
// /openai/deployments/{model}. The azure package itself cannot be built
// here: it needs github.com/Azure/azure-sdk-for-go/sdk/azcore, which go.mod
// does not require.
func azureClient(srv *httptest.Server, key string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(srv.URL+"/"),
		option.WithQueryAdd("api-version", testAPIVersion),
		option.WithHeader("api-key", key),
		option.WithMiddleware(azureDeploymentRoute),
		option.WithHTTPClient(srv.Client()),
		option.WithMaxRetries(0),
	)
}

// azureDeploymentRoute mirrors the path rewrite of azure.WithEndpoint.
func azureDeploymentRoute(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	switch req.URL.Path {
	case "/chat/completions", "/completions", "/embeddings":
	default:
		req.URL.Path = "/openai" + req.URL.Path
		return next(req)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	var v struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	req.URL.Path = "/openai/deployments/" + v.Model + req.URL.Path
	req.URL.RawPath = ""
	return next(req)
}

// clientFor returns an SDK client of the region's dialect.
func clientFor(srv *httptest.Server, d Dialect) openai.Client {
	if d == DialectAzure {
		return azureClient(srv, testKey)
	}
	return openaiClient(srv, testKey)
}

// apiPath is the URL of an operation on a deployment in a dialect.
func apiPath(srv *httptest.Server, d Dialect, deployment, op string) string {
	if d == DialectAzure {
		return srv.URL + "/openai/deployments/" + deployment + "/" + op + "?api-version=" + testAPIVersion
	}
	return srv.URL + "/v1/" + op
}

// post sends body with the test key and returns the response and its body.
func post(t *testing.T, srv *httptest.Server, url string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", testKey)
	req.Header.Set("Authorization", "Bearer "+testKey)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, b
}

// control calls a /mock endpoint and decodes the JSON answer into out.
func control(t *testing.T, srv *httptest.Server, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func chatBody(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	m := map[string]any{
		"model":    "gpt-4o-mini",
		"messages": []map[string]any{{"role": "user", "content": "Say something nice."}},
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tokenCount(t *testing.T, s string) int {
	t.Helper()
	n, err := countTokens(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func asError(err error, target **openai.Error) bool {
	return errors.As(err, target)
}
