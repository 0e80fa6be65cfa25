package mock

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLookup: POST /mock/lookup returns, per x-request-id, the usage the
// region reported to the client, once per delivered answer, and nothing
// for refused or unknown requests.
func TestLookup(t *testing.T) {
	_, srv := startRegion(t, testConfig(DialectAzure))
	url := apiPath(srv, DialectAzure, "gpt-4o-mini", "chat/completions")
	send := func(id string, fields map[string]any) (int, []byte) {
		resp, b := post(t, srv, url, chatBody(t, fields), http.Header{"X-Request-Id": {id}})
		return resp.StatusCode, b
	}
	code, b := send("req-json", map[string]any{"max_tokens": 12})
	if code != http.StatusOK {
		t.Fatalf("json request: %d %s", code, b)
	}
	var answer struct {
		Usage struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		t.Fatal(err)
	}
	code, b = send("req-stream", map[string]any{"max_tokens": 9, "stream": true, "stream_options": map[string]any{"include_usage": true}})
	if code != http.StatusOK || !bytes.Contains(b, []byte("data: [DONE]")) {
		t.Fatalf("stream request: %d %s", code, b)
	}
	if code := control(t, srv, http.MethodPost, "/mock/faults", FaultRule{Deployment: "*", Faults: Faults{Force429For: Duration(time.Minute)}}, nil); code != http.StatusOK {
		t.Fatalf("start a 429 storm: %d", code)
	}
	if code, _ := send("req-refused", nil); code != http.StatusTooManyRequests {
		t.Fatalf("request in a 429 storm: %d, want 429", code)
	}

	var got LookupResponse
	if code := control(t, srv, http.MethodPost, "/mock/lookup", LookupRequest{IDs: []string{"req-json", "req-stream", "req-refused", "req-unknown"}}, &got); code != http.StatusOK {
		t.Fatalf("lookup: %d", code)
	}
	tests := []struct {
		id      string
		entries int
	}{
		{"req-json", 1},
		{"req-stream", 1},
		{"req-refused", 0},
		{"req-unknown", 0},
	}
	for _, tc := range tests {
		if n := len(got.Found[tc.id]); n != tc.entries {
			t.Errorf("%s: %d entries, want %d (%+v)", tc.id, n, tc.entries, got.Found[tc.id])
		}
	}
	if u := got.Found["req-json"]; len(u) == 1 && (u[0].PromptTokens != answer.Usage.Prompt || u[0].CompletionTokens != answer.Usage.Completion || u[0].Deployment != "gpt-4o-mini") {
		t.Errorf("req-json: %+v, the answer said %+v", u[0], answer.Usage)
	}
	var sum int64
	for _, us := range got.Found {
		for _, u := range us {
			sum += u.PromptTokens + u.CompletionTokens
		}
	}
	st := srvStats(t, srv).Deployments["gpt-4o-mini"]
	if want := st.PromptTokens + st.CompletionTokens; sum != want {
		t.Errorf("lookup sums to %d tokens, the stats say %d", sum, want)
	}
}

func srvStats(t *testing.T, srv *httptest.Server) Stats {
	t.Helper()
	var st Stats
	if code := control(t, srv, http.MethodGet, "/mock/stats", nil, &st); code != http.StatusOK {
		t.Fatalf("stats: %d", code)
	}
	return st
}

// TestRequestLogRing: the log forgets the oldest entries first and keeps
// every delivery of a repeated id.
func TestRequestLogRing(t *testing.T) {
	l := newRequestLog(3)
	u := Usage{Deployment: "d", Status: 200, PromptTokens: 1}
	for _, id := range []string{"a", "b", "a", "c", "d"} {
		l.add(id, u)
	}
	got := l.lookup([]string{"a", "b", "c", "d", ""})
	want := map[string]int{"a": 1, "c": 1, "d": 1}
	if len(got.Found) != len(want) {
		t.Fatalf("found %v, want ids %v", got.Found, want)
	}
	for id, n := range want {
		if len(got.Found[id]) != n {
			t.Errorf("%s: %d entries, want %d", id, len(got.Found[id]), n)
		}
	}
	l.remove("c", u)
	if _, ok := l.lookup([]string{"c"}).Found["c"]; ok {
		t.Error("an undelivered answer is still reported")
	}
}

func TestLookupBadInput(t *testing.T) {
	_, srv := startRegion(t, testConfig(DialectOpenAI))
	tests := []struct {
		name, method, body string
		want               int
	}{
		{"get", http.MethodGet, "", http.StatusMethodNotAllowed},
		{"not json", http.MethodPost, "ids=a", http.StatusBadRequest},
		{"unknown field", http.MethodPost, `{"id":["a"]}`, http.StatusBadRequest},
		{"too many", http.MethodPost, `{"ids":[` + strings.Repeat(`"x",`, maxLookupIDs) + `"x"]}`, http.StatusBadRequest},
		{"empty", http.MethodPost, `{"ids":[]}`, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+"/mock/lookup", strings.NewReader(tc.body))
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
