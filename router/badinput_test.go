package router_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

func TestBadInput(t *testing.T) {
	past := time.Now().Add(-time.Minute)
	e := newEnv(t, envOpts{editCfg: func(c *state.Config) {
		c.Keys = append(c.Keys,
			state.Key{ID: "old", Hash: state.HashKey("sk-expired"), Tenant: "team-a", ExpiresAt: &past},
			state.Key{ID: "off", Hash: state.HashKey("sk-disabled"), Tenant: "team-a", Disabled: true},
			state.Key{ID: "embed-only", Hash: state.HashKey("sk-embed-only"), Tenant: "team-a", Models: []string{"text-embedding-3-small"}},
		)
	}})
	huge := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("a", 1<<20) + `"}]}`
	tests := []struct {
		name, path, key, body string
		status                int
		param, code           string
	}{
		{"invalid json", "/v1/chat/completions", demoKey, `{"model":`, 400, "", ""},
		{"not an object", "/v1/chat/completions", demoKey, `[1,2]`, 400, "", ""},
		{"messages wrong type", "/v1/chat/completions", demoKey, `{"model":"gpt-4o-mini","messages":"hi"}`, 400, "messages", ""},
		{"max_tokens wrong type", "/v1/chat/completions", demoKey, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}`, 400, "max_tokens", ""},
		{"stream wrong type", "/v1/chat/completions", demoKey, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"stream":"yes"}`, 400, "stream", ""},
		{"missing model", "/v1/chat/completions", demoKey, `{"messages":[{"role":"user","content":"x"}]}`, 400, "model", ""},
		{"body over limit", "/v1/chat/completions", demoKey, huge, 413, "", "request_too_large"},
		{"unknown model", "/v1/chat/completions", demoKey, `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404, "model", "model_not_found"},
		{"no key", "/v1/chat/completions", "", chatBody(false, 8), 401, "", "invalid_api_key"},
		{"wrong key", "/v1/chat/completions", "sk-nope", chatBody(false, 8), 401, "", "invalid_api_key"},
		{"expired key", "/v1/chat/completions", "sk-expired", chatBody(false, 8), 403, "", "key_expired"},
		{"disabled key", "/v1/chat/completions", "sk-disabled", chatBody(false, 8), 403, "", "key_expired"},
		{"model not allowed", "/v1/chat/completions", "sk-embed-only", chatBody(false, 8), 403, "model", "model_not_allowed"},
		{"embedding model on chat", "/v1/chat/completions", demoKey, `{"model":"text-embedding-3-small","messages":[{"role":"user","content":"x"}]}`, 400, "model", ""},
		{"unknown path", "/v1/images/generations", demoKey, `{}`, 404, "", "unknown_url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := e.post(tc.path, tc.key, tc.body)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Fatalf("content type %q", h.Get("Content-Type"))
			}
			var eb struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Message == "" || eb.Error.Type == "" {
				t.Fatalf("not an OpenAI error: %s", body)
			}
			if tc.param != "" && (eb.Error.Param == nil || *eb.Error.Param != tc.param) {
				t.Fatalf("param %v, want %s: %s", eb.Error.Param, tc.param, body)
			}
			if tc.code != "" && (eb.Error.Code == nil || *eb.Error.Code != tc.code) {
				t.Fatalf("code %v, want %s", eb.Error.Code, tc.code)
			}
		})
	}
	// The node keeps serving.
	if code, _, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8)); code != http.StatusOK {
		t.Fatalf("after bad input: %d %s", code, body)
	}
	if e.stats("eastus").BadRequests+e.stats("swedencentral").BadRequests != 0 {
		t.Fatal("bad input reached a provider")
	}
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(e.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
}
