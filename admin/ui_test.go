package admin_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestUIServesPage: the page and its files are served without a token,
// with a strict content security policy; / and /ui lead to it; nothing
// else becomes public (other methods, the API, paths climbing out).
func TestUIServesPage(t *testing.T) {
	noRedirect := &http.Client{Transport: fx.tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + fx.servers[0].Addr()
	tests := []struct {
		name     string
		method   string
		path     string
		status   int
		location string // for redirects
		ctype    string // content type prefix, for pages
		contains string
	}{
		{name: "root redirects", method: "GET", path: "/", status: 302, location: "/ui/"},
		{name: "ui without slash redirects", method: "GET", path: "/ui", status: 302, location: "/ui/"},
		{name: "page", method: "GET", path: "/ui/", status: 200, ctype: "text/html", contains: `<script src="app.js" defer></script>`},
		{name: "script", method: "GET", path: "/ui/app.js", status: 200, ctype: "text/javascript", contains: "Authorization"},
		{name: "style", method: "GET", path: "/ui/style.css", status: 200, ctype: "text/css", contains: ".pill"},
		{name: "missing file", method: "GET", path: "/ui/nope.js", status: 404},
		{name: "climbing out of the page", method: "GET", path: "/ui/../admin/v1/tenants", status: 404},
		{name: "climbing out, escaped", method: "GET", path: "/ui/..%2fadmin/v1/tenants", status: 404},
		{name: "post to the page needs a token", method: "POST", path: "/ui/", status: 401},
		{name: "the API still needs a token", method: "GET", path: "/admin/v1/tenants", status: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			// Opaque keeps the path exactly as written (no cleaning).
			req.URL.Opaque = tc.path
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.status, b)
			}
			if tc.location != "" && resp.Header.Get("Location") != tc.location {
				t.Fatalf("Location %q, want %q", resp.Header.Get("Location"), tc.location)
			}
			if tc.ctype != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Fatalf("Content-Type %q, want %s", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if tc.contains != "" && !strings.Contains(string(b), tc.contains) {
				t.Fatalf("body lacks %q", tc.contains)
			}
			if tc.status == 200 {
				csp := resp.Header.Get("Content-Security-Policy")
				for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
					if !strings.Contains(csp, want) {
						t.Fatalf("CSP %q lacks %q", csp, want)
					}
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Fatal("no nosniff")
				}
			}
			if tc.status == 200 && strings.Contains(string(b), "adm-0123456789") {
				t.Fatal("a static file contains a token")
			}
		})
	}
}
