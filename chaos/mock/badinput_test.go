package mock

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestBadInput(t *testing.T) {
	big := []byte(`{"messages":[{"role":"user","content":"` + strings.Repeat("a", MaxBodyBytes) + `"}]}`)
	tests := []struct {
		name    string
		dialect Dialect
		method  string
		path    string // relative to the server; "" = chat on gpt-4o-mini
		body    []byte
		header  map[string]string // replaces the default auth headers when set
		status  int
		code    string // expected error code ("" = null)
		param   string
		badReq  bool // counted in bad_requests of gpt-4o-mini
	}{
		{name: "invalid json", body: []byte(`{"messages":`), status: 400, code: "invalid_json", badReq: true},
		{name: "body not an object", body: []byte(`[1,2]`), status: 400, code: "invalid_type", badReq: true},
		{name: "messages not an array", body: []byte(`{"messages":"hi"}`), status: 400, code: "invalid_type", param: "messages", badReq: true},
		{name: "messages missing", body: []byte(`{}`), status: 400, code: "missing_required_parameter", param: "messages", badReq: true},
		{name: "messages empty", body: []byte(`{"messages":[]}`), status: 400, code: "empty_array", param: "messages", badReq: true},
		{name: "role missing", body: []byte(`{"messages":[{"content":"x"}]}`), status: 400, code: "missing_required_parameter", param: "messages[0].role", badReq: true},
		{name: "role invalid", body: []byte(`{"messages":[{"role":"robot","content":"x"}]}`), status: 400, code: "invalid_value", param: "messages[0].role", badReq: true},
		{name: "content wrong type", body: []byte(`{"messages":[{"role":"user","content":5}]}`), status: 400, code: "invalid_type", param: "messages[0].content", badReq: true},
		{name: "max_tokens string", body: []byte(`{"messages":[{"role":"user","content":"x"}],"max_tokens":"10"}`), status: 400, code: "invalid_type", param: "max_tokens", badReq: true},
		{name: "max_tokens decimal", body: []byte(`{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}`), status: 400, code: "invalid_type", param: "max_tokens", badReq: true},
		{name: "max_tokens zero", body: []byte(`{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`), status: 400, code: "integer_below_min_value", param: "max_tokens", badReq: true},
		{name: "stream not bool", body: []byte(`{"messages":[{"role":"user","content":"x"}],"stream":"yes"}`), status: 400, code: "invalid_type", param: "stream", badReq: true},
		{name: "stream_options without stream", body: []byte(`{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`), status: 400, code: "invalid_value", param: "stream_options", badReq: true},
		{name: "n too large", body: []byte(`{"messages":[{"role":"user","content":"x"}],"n":1000}`), status: 400, code: "integer_above_max_value", param: "n", badReq: true},
		{name: "too large", body: big, status: 413, code: "request_too_large", badReq: true},
		{name: "embeddings input missing", path: "embeddings", body: []byte(`{}`), status: 400, code: "missing_required_parameter", param: "input"},
		{name: "embeddings bad format", path: "embeddings", body: []byte(`{"input":"x","encoding_format":"hex"}`), status: 400, code: "invalid_value", param: "encoding_format"},
		{name: "embeddings too many dims", path: "embeddings", body: []byte(`{"input":"x","dimensions":5000}`), status: 400, code: "integer_above_max_value", param: "dimensions"},
		{name: "embeddings bad token", path: "embeddings", body: []byte(`{"input":[[1,"a"]]}`), status: 400, code: "invalid_type", param: "input[0][1]"},
		{name: "chat on embedding deployment", path: "/openai/deployments/text-embedding-3-small/chat/completions?api-version=1", body: []byte(`{"messages":[{"role":"user","content":"x"}]}`), status: 400, code: "OperationNotSupported"},
		{name: "wrong key", header: map[string]string{"api-key": "nope"}, body: []byte(`{}`), status: 401, code: "401"},
		{name: "no key", header: map[string]string{"x": "y"}, body: []byte(`{}`), status: 401, code: "401"},
		{name: "bearer key accepted", header: map[string]string{"Authorization": "Bearer " + testKey}, body: []byte(`{"messages":[{"role":"user","content":"x"}]}`), status: 200},
		{name: "unknown deployment", path: "/openai/deployments/gpt-5/chat/completions?api-version=1", body: []byte(`{}`), status: 404, code: "DeploymentNotFound"},
		{name: "missing api-version", path: "/openai/deployments/gpt-4o-mini/chat/completions", body: []byte(`{}`), status: 404, code: "404"},
		{name: "unknown path", path: "/openai/other", body: []byte(`{}`), status: 404, code: "404"},
		{name: "GET chat", method: http.MethodGet, body: nil, status: 405, code: "405"},

		{name: "openai wrong key", dialect: DialectOpenAI, header: map[string]string{"Authorization": "Bearer nope"}, body: []byte(`{}`), status: 401, code: "invalid_api_key"},
		{name: "openai api-key header not accepted", dialect: DialectOpenAI, header: map[string]string{"api-key": testKey}, body: []byte(`{}`), status: 401},
		{name: "openai unknown model", dialect: DialectOpenAI, body: []byte(`{"model":"gpt-5","messages":[]}`), status: 404, code: "model_not_found"},
		{name: "openai no model", dialect: DialectOpenAI, body: []byte(`{"stream":false,"messages":[]}`), status: 400},
		{name: "openai model not string", dialect: DialectOpenAI, body: []byte(`{"model":5}`), status: 400, code: "invalid_type", param: "model"},
		{name: "openai invalid json", dialect: DialectOpenAI, body: []byte(`{`), status: 400, code: "invalid_json"},
		{name: "openai bad messages", dialect: DialectOpenAI, body: []byte(`{"model":"gpt-4o-mini","messages":{}}`), status: 400, code: "invalid_type", param: "messages", badReq: true},
		{name: "openai unknown path", dialect: DialectOpenAI, path: "/v1/nope", body: []byte(`{}`), status: 404},
		{name: "openai too large", dialect: DialectOpenAI, body: big, status: 413, code: "request_too_large"},
		{name: "openai embeddings on chat model", dialect: DialectOpenAI, path: "/v1/embeddings", body: []byte(`{"model":"gpt-4o-mini","input":"x"}`), status: 400, code: "model_not_supported", badReq: true},
		{name: "openai chat on embedding model", dialect: DialectOpenAI, body: []byte(`{"model":"text-embedding-3-small","messages":[{"role":"user","content":"x"}]}`), status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.dialect
			if d == "" {
				d = DialectAzure
			}
			r, srv := startRegion(t, testConfig(d))
			url := apiPath(srv, d, "gpt-4o-mini", "chat/completions")
			switch {
			case tt.path == "embeddings":
				url = apiPath(srv, d, "text-embedding-3-small", "embeddings")
				if d == DialectOpenAI {
					var m map[string]any
					_ = json.Unmarshal(tt.body, &m)
					m["model"] = "text-embedding-3-small"
					tt.body, _ = json.Marshal(m)
				}
			case tt.path != "":
				url = srv.URL + tt.path
			case d == DialectOpenAI && tt.status != 413 && bytes.HasPrefix(tt.body, []byte(`{"messages"`)):
				tt.body = append([]byte(`{"model":"gpt-4o-mini",`), tt.body[1:]...)
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, url, bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.header == nil {
				req.Header.Set("api-key", testKey)
				req.Header.Set("Authorization", "Bearer "+testKey)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if tt.status == 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			var e struct {
				Error map[string]*string `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("error body %s: %v", b, err)
			}
			for _, k := range []string{"message", "type", "param", "code"} {
				if _, ok := e.Error[k]; !ok {
					t.Errorf("error without %q: %s", k, b)
				}
			}
			if e.Error["message"] == nil || *e.Error["message"] == "" {
				t.Errorf("no message: %s", b)
			}
			if tt.code != "" && (e.Error["code"] == nil || *e.Error["code"] != tt.code) {
				t.Errorf("code: %s, want %q", b, tt.code)
			}
			if tt.param != "" && (e.Error["param"] == nil || *e.Error["param"] != tt.param) {
				t.Errorf("param: %s, want %q", b, tt.param)
			}
			st := r.Stats().Deployments["gpt-4o-mini"]
			if got := st.BadRequests == 1 && st.Requests == 1; got != tt.badReq {
				t.Errorf("bad request counted=%v: %+v", got, st)
			}
			if st.Accepted != 0 || st.ChargedTokens != 0 {
				t.Errorf("charged a bad request: %+v", st)
			}
		})
	}
}

func TestRequestHeadersRecorded(t *testing.T) {
	r, srv := startRegion(t, testConfig(DialectAzure))
	h := http.Header{}
	h.Set("x-request-id", "req-123")
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, b := post(t, srv, apiPath(srv, DialectAzure, "gpt-4o-mini", "chat/completions"), chatBody(t, nil), h)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var s Stats
	if code := control(t, srv, http.MethodGet, "/mock/stats", nil, &s); code != 200 {
		t.Fatalf("stats: %d", code)
	}
	st := s.Deployments["gpt-4o-mini"]
	if st.LastXRequestID != "req-123" || st.LastTraceparent != h.Get("traceparent") || s.Region != "testregion" {
		t.Errorf("stats %+v", s)
	}
	if resp.Header.Get("x-ms-region") != "testregion" {
		t.Errorf("x-ms-region %q", resp.Header.Get("x-ms-region"))
	}
	_ = r
}
