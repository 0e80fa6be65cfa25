package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/quota/ledger"
)

func TestUsageCommand(t *testing.T) {
	var gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/v1/usage" || r.Header.Get("Authorization") != "Bearer tok-0123456789abcdef" {
			http.Error(w, "unexpected", http.StatusTeapot)
			return
		}
		gotQuery = r.URL.RawQuery
		if r.URL.Query().Get("format") == "csv" {
			w.Header().Set("Content-Type", "text/csv")
			_, _ = w.Write([]byte("tenant,requests,prompt_tokens,completion_tokens,errors\nacme,3,30,12,0\n"))
			return
		}
		b := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
		_ = json.NewEncoder(w).Encode(admin.UsageReport{GroupBy: []string{"tenant", "model"}, Bucket: "hour",
			Rows: []ledger.QueryRow{
				{Bucket: b, Labels: ledger.Labels{Tenant: "acme", Model: "gpt-4o"}, Counts: ledger.Counts{Requests: 3, PromptTokens: 30, CompletionTokens: 12}},
				{Bucket: b, Labels: ledger.Labels{Tenant: "globex-industries", Model: "gpt-4o-mini"}, Counts: ledger.Counts{Requests: 1200, PromptTokens: 45000, CompletionTokens: 9, Errors: 2}},
			},
			Total: ledger.Counts{Requests: 1203, PromptTokens: 45030, CompletionTokens: 21, Errors: 2}})
	}))
	defer srv.Close()
	t.Setenv("SLUICE_ADMIN_TOKEN", "tok-0123456789abcdef")

	cases := []struct {
		name      string
		args      []string
		wantQuery []string
		want      string
	}{
		{name: "table", args: []string{"--tenant", "acme", "--from", "-1h", "--group-by", "tenant,model", "--bucket", "hour"},
			wantQuery: []string{"tenant=acme", "from=-1h", "group_by=tenant%2Cmodel", "bucket=hour"},
			want: "" +
				"BUCKET                TENANT             MODEL        REQUESTS  PROMPT_TOKENS  COMPLETION_TOKENS  ERRORS\n" +
				"2026-11-23T10:00:00Z  acme               gpt-4o       3         30             12                 0\n" +
				"2026-11-23T10:00:00Z  globex-industries  gpt-4o-mini  1200      45000          9                  2\n" +
				"TOTAL                                                 1203      45030          21                 2\n"},
		{name: "csv", args: []string{"--group-by", "tenant", "--csv"}, wantQuery: []string{"format=csv", "group_by=tenant"},
			want: "tenant,requests,prompt_tokens,completion_tokens,errors\nacme,3,30,12,0\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"usage", "-addr", srv.URL}, tc.args...), &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			for _, q := range tc.wantQuery {
				if !strings.Contains(gotQuery, q) {
					t.Errorf("query %q lacks %q", gotQuery, q)
				}
			}
			if out.String() != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", out.String(), tc.want)
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"usage", "-addr", srv.URL, "extra"}, &out, &errOut); code != 2 {
		t.Errorf("stray argument: exit %d", code)
	}
}
