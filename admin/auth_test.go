package admin_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/admin"
)

func TestAuth(t *testing.T) {
	fx.reset(t, baseConfig())
	deployment := []byte(`{"name":"auth-dep","provider":"base-prov","upstream":"gpt-4o"}`)
	tests := []struct {
		name   string
		method string
		path   string
		auth   string // the whole Authorization header; "" sends none
		body   []byte
		status int
		code   string // error code, for errors
	}{
		{"health is open", http.MethodGet, "/healthz", "", nil, 200, ""},
		{"missing token", http.MethodGet, "/admin/v1/providers", "", nil, 401, "unauthorized"},
		{"wrong token", http.MethodGet, "/admin/v1/providers", "Bearer not-a-valid-token-at-all", nil, 401, "unauthorized"},
		{"token prefix", http.MethodGet, "/admin/v1/providers", "Bearer " + adminToken[:len(adminToken)-1], nil, 401, "unauthorized"},
		{"basic scheme", http.MethodGet, "/admin/v1/providers", "Basic " + adminToken, nil, 401, "unauthorized"},
		{"empty bearer", http.MethodGet, "/admin/v1/providers", "Bearer ", nil, 401, "unauthorized"},
		{"unknown path without token", http.MethodGet, "/admin/v1/nope", "", nil, 401, "unauthorized"},
		{"read token reads", http.MethodGet, "/admin/v1/providers", "Bearer " + readToken, nil, 200, ""},
		{"read token reads cluster", http.MethodGet, "/admin/v1/cluster", "Bearer " + readToken, nil, 200, ""},
		{"read token reads audit", http.MethodGet, "/admin/v1/audit", "Bearer " + readToken, nil, 200, ""},
		{"scheme is case-insensitive", http.MethodGet, "/admin/v1/tenants", "bearer " + readToken, nil, 200, ""},
		{"read token creates", http.MethodPost, "/admin/v1/deployments", "Bearer " + readToken, deployment, 403, "forbidden"},
		{"read token upserts", http.MethodPut, "/admin/v1/deployments/auth-dep", "Bearer " + readToken, deployment, 403, "forbidden"},
		{"read token deletes", http.MethodDelete, "/admin/v1/deployments/base-dep", "Bearer " + readToken, nil, 403, "forbidden"},
		{"read token applies", http.MethodPost, "/admin/v1/apply?dry_run=true", "Bearer " + readToken, []byte(`{}`), 403, "forbidden"},
		{"read token creates key", http.MethodPost, "/admin/v1/keys", "Bearer " + readToken, []byte(`{"tenant":"base-tenant"}`), 403, "forbidden"},
		{"read token downloads snapshot", http.MethodGet, "/admin/v1/snapshot", "Bearer " + readToken, nil, 403, "forbidden"},
		{"read token drains", http.MethodPost, "/admin/v1/drain", "Bearer " + readToken, nil, 403, "forbidden"},
		{"read token removes peer", http.MethodDelete, "/admin/v1/peers/n3", "Bearer " + readToken, nil, 403, "forbidden"},
		{"unknown path", http.MethodGet, "/admin/v1/nope", "Bearer " + adminToken, nil, 404, "not_found"},
		{"method not allowed", http.MethodPatch, "/admin/v1/providers", "Bearer " + adminToken, nil, 405, "method_not_allowed"},
		{"admin token writes", http.MethodPost, "/admin/v1/deployments", "Bearer " + adminToken, deployment, 201, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := fx.callHeader(t, 1, tc.method, tc.path, tc.auth, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if e := r.apiError(t); e.Code != tc.code {
					t.Errorf("code %q, want %q", e.Code, tc.code)
				}
			}
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %v", r.header)
			}
			for _, secret := range []string{adminToken, readToken} {
				if strings.Contains(string(r.body), secret) {
					t.Errorf("response contains a token: %s", r.body)
				}
			}
		})
	}
	// Tokens never reach the logs either (they are only compared).
	logs := string(fx.logs.Bytes())
	for _, secret := range []string{adminToken, readToken} {
		if strings.Contains(logs, secret) {
			t.Error("a token appears in the logs")
		}
	}
	if !strings.Contains(logs, "actor="+readName) {
		t.Error("the request log does not name the actor")
	}
}

func TestErrors(t *testing.T) {
	fx.reset(t, baseConfig())
	n := fx.follower(t) // every write below is forwarded to the leader
	big := make([]byte, 1<<20+1)
	for i := range big {
		big[i] = ' '
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
		field  string // a field named in the error, if any
	}{
		{"negative tpm", "POST", "/admin/v1/deployments", `{"name":"d","provider":"base-prov","upstream":"x","tpm":-5}`, 400, "invalid", "tpm"},
		{"unknown provider", "POST", "/admin/v1/deployments", `{"name":"d","provider":"nope","upstream":"x"}`, 400, "invalid", "provider"},
		{"unknown deployment in model", "POST", "/admin/v1/models", `{"name":"m","deployments":["nope"]}`, 400, "invalid", "deployments"},
		{"unknown tenant policy", "PUT", "/admin/v1/tenants/t", `{"policy":"nope"}`, 400, "invalid", "policy"},
		{"unknown field", "POST", "/admin/v1/deployments", `{"name":"d","provider":"base-prov","upstream":"x","tmp":5}`, 400, "invalid", "tmp"},
		{"wrong type", "POST", "/admin/v1/deployments", `{"name":"d","provider":"base-prov","upstream":"x","tpm":"lots"}`, 400, "invalid", "tpm"},
		{"bad duration", "POST", "/admin/v1/deployments", `{"name":"d","provider":"base-prov","upstream":"x","tpm_window":"soon"}`, 400, "invalid", ""},
		{"malformed JSON", "POST", "/admin/v1/tenants", `{"name":`, 400, "invalid", ""},
		{"syntax error", "POST", "/admin/v1/tenants", `{"name" "x"}`, 400, "invalid", ""},
		{"trailing data", "POST", "/admin/v1/tenants", `{"name":"x"} {}`, 400, "invalid", ""},
		{"empty body", "POST", "/admin/v1/tenants", ``, 400, "invalid", ""},
		{"missing name", "POST", "/admin/v1/tenants", `{"plan":"x"}`, 400, "invalid", "name"},
		{"bad name", "POST", "/admin/v1/tenants", `{"name":"a b"}`, 400, "invalid", "name"},
		{"name differs from path", "PUT", "/admin/v1/tenants/a", `{"name":"b"}`, 400, "invalid", "name"},
		{"literal provider key", "POST", "/admin/v1/providers", `{"name":"p","kind":"openai","endpoint":"https://x.example.com","api_key":"sk-literal-oops"}`, 400, "invalid", "api_key"},
		{"both key forms", "POST", "/admin/v1/providers", `{"name":"p","kind":"openai","endpoint":"https://x.example.com","api_key":"env:X","api_key_value":"sk-x"}`, 400, "invalid", "api_key_value"},
		{"bad page size", "GET", "/admin/v1/tenants?limit=0", ``, 400, "invalid", "limit"},
		{"bad consistent flag", "GET", "/admin/v1/tenants?consistent=maybe", ``, 400, "invalid", "consistent"},
		{"bad if_version", "PUT", "/admin/v1/tenants/t?if_version=x", `{}`, 400, "invalid", "if_version"},
		{"stale if_version", "PUT", "/admin/v1/tenants/t?if_version=1", `{}`, 409, "conflict", ""},
		{"duplicate create", "POST", "/admin/v1/tenants", `{"name":"base-tenant"}`, 409, "exists", ""},
		{"duplicate key id", "POST", "/admin/v1/keys", `{"id":"dup","tenant":"base-tenant"}`, 201, "", ""},
		{"duplicate key id again", "POST", "/admin/v1/keys", `{"id":"dup","tenant":"base-tenant"}`, 409, "exists", ""},
		{"key for unknown tenant", "POST", "/admin/v1/keys", `{"tenant":"nope"}`, 400, "invalid", "tenant"},
		{"key without tenant", "POST", "/admin/v1/keys", `{}`, 400, "invalid", "tenant"},
		{"key with a hash", "POST", "/admin/v1/keys", `{"tenant":"base-tenant","hash":"00"}`, 400, "invalid", "hash"},
		{"delete referenced provider", "DELETE", "/admin/v1/providers/base-prov", ``, 400, "invalid", "provider"},
		{"get unknown", "GET", "/admin/v1/models/nope", ``, 404, "not_found", ""},
		{"get unknown consistent", "GET", "/admin/v1/models/nope?consistent=true", ``, 404, "not_found", ""},
		{"delete unknown", "DELETE", "/admin/v1/policies/nope", ``, 404, "not_found", ""},
		{"update unknown key", "PUT", "/admin/v1/keys/nope", `{"tenant":"base-tenant"}`, 404, "not_found", ""},
		{"revoke unknown key", "POST", "/admin/v1/keys/nope/revoke", ``, 404, "not_found", ""},
		{"remove alive peer", "DELETE", "/admin/v1/peers/n3", ``, 409, "conflict", ""},
		{"remove unknown peer", "DELETE", "/admin/v1/peers/nope", ``, 404, "not_found", ""},
		{"oversized body", "POST", "/admin/v1/tenants", string(big), 413, "too_large", ""},
		{"apply takes larger bodies", "POST", "/admin/v1/apply?dry_run=true", string(big), 400, "invalid", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" || tc.method == "POST" || tc.method == "PUT" {
				body = []byte(tc.body)
			}
			r := fx.call(t, n, tc.method, tc.path, adminToken, body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code == "" {
				return
			}
			e := r.apiError(t)
			if e.Code != tc.code {
				t.Errorf("code %q, want %q", e.Code, tc.code)
			}
			if tc.field != "" && !strings.Contains(e.Message, tc.field) {
				t.Errorf("message %q does not name %q", e.Message, tc.field)
			}
			if tc.field != "" && tc.status == 400 && !namesField(e.Fields, tc.field) {
				t.Errorf("fields %+v do not name %q", e.Fields, tc.field)
			}
			if strings.Contains(string(r.body), "sk-literal-oops") {
				t.Errorf("a literal secret was echoed: %s", r.body)
			}
		})
	}
	// A body without a declared length is cut at the limit while read.
	req, err := http.NewRequest("POST", "http://"+fx.servers[n].Addr()+"/admin/v1/tenants", io.MultiReader(bytes.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := fx.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized body: length %d, status %d", req.ContentLength, resp.StatusCode)
	}

	// A body over the apply limit (8 MiB) is refused too, before it is read.
	huge := make([]byte, 8<<20+1)
	r := fx.call(t, n, "POST", "/admin/v1/apply", adminToken, huge)
	if r.status != 413 || r.apiError(t).Code != "too_large" {
		t.Fatalf("9 MiB apply: status %d: %s", r.status, r.body)
	}
}

func namesField(fields []admin.FieldError, name string) bool {
	for _, f := range fields {
		if strings.Contains(f.Field, name) {
			return true
		}
	}
	return false
}
