package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/quota/ledger"
)

// The ledger section the node wires in must satisfy UsageReader.
var _ admin.UsageReader = (*ledger.Section)(nil)

// usageServer serves the admin API of fixture node 0 with a ledger
// filled with known rows; now is the minute the rows were written.
func usageServer(t *testing.T, reader admin.UsageReader) *httptest.Server {
	t.Helper()
	srv, err := admin.New(admin.Config{
		Tokens: []admin.Token{{Name: readName, Role: admin.RoleRead, Token: readToken}},
		Usage:  reader,
	}, fx.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

func filledLedger(t *testing.T, now time.Time) *ledger.Section {
	t.Helper()
	sec := ledger.NewSection()
	min := now.Truncate(time.Minute)
	rows := []ledger.Row{
		{Bucket: min.Add(-90 * time.Minute).Unix(), Labels: ledger.Labels{Tenant: "acme", Key: "k1", Model: "gpt-4o", Class: "standard"},
			Counts: ledger.Counts{Requests: 3, PromptTokens: 30, CompletionTokens: 12}},
		{Bucket: min.Add(-10 * time.Minute).Unix(), Labels: ledger.Labels{Tenant: "acme", Key: "k2", Model: "gpt-4o-mini", Class: "batch"},
			Counts: ledger.Counts{Requests: 5, PromptTokens: 50, CompletionTokens: 20, Errors: 1}},
		{Bucket: min.Add(-5 * time.Minute).Unix(), Labels: ledger.Labels{Tenant: "globex", Key: "k9", Model: "gpt-4o", Class: "standard"},
			Counts: ledger.Counts{Requests: 2, PromptTokens: 8, CompletionTokens: 4}},
	}
	body, _ := json.Marshal(ledger.Batch{ID: ledger.BatchID{Node: "n", Incarnation: 1, Seq: 1}, Rows: rows})
	if _, err := sec.Apply(1, now, body); err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestUsageEndpoint(t *testing.T) {
	now := time.Now().UTC()
	hs := usageServer(t, filledLedger(t, now))
	c := &admin.Client{Addr: hs.URL, Token: readToken}
	ctx := context.Background()
	cases := []struct {
		name      string
		q         admin.UsageQuery
		wantRows  int
		wantTotal int64 // requests
		check     func(t *testing.T, r *admin.UsageReport)
	}{
		{name: "everything", wantRows: 1, wantTotal: 10},
		{name: "by tenant", q: admin.UsageQuery{GroupBy: []string{"tenant"}}, wantRows: 2, wantTotal: 10,
			check: func(t *testing.T, r *admin.UsageReport) {
				if r.Rows[0].Tenant != "acme" || r.Rows[0].Requests != 8 || r.Rows[1].Tenant != "globex" || r.Rows[1].Requests != 2 {
					t.Errorf("rows %+v", r.Rows)
				}
			}},
		{name: "tenant filter, last hour", q: admin.UsageQuery{Tenant: "acme", From: "-1h"}, wantRows: 1, wantTotal: 5},
		{name: "model by hour", q: admin.UsageQuery{Model: "gpt-4o", GroupBy: []string{"key"}, Bucket: "hour"}, wantTotal: 5,
			check: func(t *testing.T, r *admin.UsageReport) {
				for _, row := range r.Rows {
					if row.Bucket.IsZero() || row.Bucket.Minute() != 0 || row.Key == "" || row.Model != "" {
						t.Errorf("row %+v", row)
					}
				}
			}},
		{name: "absolute window with nothing", q: admin.UsageQuery{From: "2020-01-01T00:00:00Z", To: "2020-01-02T00:00:00Z"}, wantRows: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Usage(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if r.Total.Requests != tc.wantTotal || (tc.wantRows > 0 && len(r.Rows) != tc.wantRows) || r.Rows == nil {
				t.Errorf("total %d rows %d, want %d and %d", r.Total.Requests, len(r.Rows), tc.wantTotal, tc.wantRows)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestUsageCSV(t *testing.T) {
	hs := usageServer(t, filledLedger(t, time.Now().UTC()))
	c := &admin.Client{Addr: hs.URL, Token: readToken}
	var buf bytes.Buffer
	if err := c.UsageCSV(context.Background(), admin.UsageQuery{GroupBy: []string{"tenant", "class"}}, &buf); err != nil {
		t.Fatal(err)
	}
	want := "tenant,class,requests,prompt_tokens,completion_tokens,errors\n" +
		"acme,batch,5,50,20,1\nacme,standard,3,30,12,0\nglobex,standard,2,8,4,0\n"
	if buf.String() != want {
		t.Errorf("csv:\n%s\nwant:\n%s", buf.String(), want)
	}
	// Accept: text/csv selects CSV too.
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/admin/v1/usage?group_by=tenant", nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	req.Header.Set("Accept", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") || !strings.HasPrefix(string(body), "tenant,requests") {
		t.Errorf("content type %q body %q", ct, body)
	}
}

func TestUsageBadParams(t *testing.T) {
	hs := usageServer(t, filledLedger(t, time.Now().UTC()))
	cases := []struct{ query, field string }{
		{"from=yesterday", "from"},
		{"to=-1x", "to"},
		{"from=-1h&to=-2h", "to"},
		{"group_by=tenant,colour", "group_by"},
		{"group_by=tenant,tenant", "group_by"},
		{"bucket=week", "bucket"},
		{"group_by=bucket=fortnight", "bucket"},
		{"format=xml", "format"},
		{"tenant=a&tenant=b", "tenant"},
		{"limit=3", "limit"},
		{"from=-400d", "from"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/admin/v1/usage?"+tc.query, nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var env struct{ Error admin.Error }
		_ = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(env.Error.Fields) != 1 || env.Error.Fields[0].Field != tc.field {
			t.Errorf("%s: status %d error %+v, want 400 naming %s", tc.query, resp.StatusCode, env.Error, tc.field)
		}
	}
}

func TestUsageWithoutLedger(t *testing.T) {
	hs := usageServer(t, nil)
	_, err := (&admin.Client{Addr: hs.URL, Token: readToken}).Usage(context.Background(), admin.UsageQuery{})
	var ae *admin.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented {
		t.Fatalf("without a ledger: %v", err)
	}
}
