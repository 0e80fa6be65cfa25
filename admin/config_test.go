package admin_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
)

func TestLoadTokens(t *testing.T) {
	const long = "0123456789abcdefXYZ"
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# admin tokens\n\nci:admin:"+long+"-ci\n  ops:read:"+long+":with:colons  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := admin.LoadTokens("root:admin:"+long+", viewer:read:"+long+"-v,", file)
	if err != nil {
		t.Fatal(err)
	}
	want := []admin.Token{
		{Name: "root", Role: admin.RoleAdmin, Token: long},
		{Name: "viewer", Role: admin.RoleRead, Token: long + "-v"},
		{Name: "ci", Role: admin.RoleAdmin, Token: long + "-ci"},
		{Name: "ops", Role: admin.RoleRead, Token: long + ":with:colons"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("token %d: got %#v", i, got[i])
		}
	}
	if s := fmt.Sprintf("%v %+v %#v", got[0], got[0], got[0]); strings.Contains(s, long) {
		t.Fatalf("a token prints its secret: %s", s)
	}

	tests := []struct {
		name, env, file string
	}{
		{"missing role", "root:" + long, ""},
		{"unknown role", "root:owner:" + long, ""},
		{"short token", "root:admin:tiny9", ""},
		{"empty name", ":admin:" + long, ""},
		{"duplicate name", "a:admin:" + long + ",a:read:" + long + "-2", ""},
		{"duplicate secret", "a:admin:" + long + ",b:read:" + long, ""},
		{"missing file", "", filepath.Join(t.TempDir(), "nope")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admin.LoadTokens(tc.env, tc.file)
			if !errors.Is(err, admin.ErrInvalidConfig) {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), long) || strings.Contains(err.Error(), "tiny9") {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
	if got, err := admin.LoadTokens("", ""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v", got, err)
	}
}

func TestLoadClusterKey(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		key, err := admin.LoadClusterKey(" " + enc.EncodeToString(raw) + "\n")
		if err != nil || string(key) != string(raw) {
			t.Fatalf("LoadClusterKey: %v", err)
		}
	}
	if key, err := admin.LoadClusterKey(""); key != nil || err != nil {
		t.Fatalf("empty: %v, %v", key, err)
	}
	for _, bad := range []string{"!!!", base64.StdEncoding.EncodeToString(raw[:16])} {
		if _, err := admin.LoadClusterKey(bad); !errors.Is(err, admin.ErrInvalidConfig) {
			t.Fatalf("LoadClusterKey(%q) = %v", bad, err)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	ok := []admin.Token{{Name: "a", Role: admin.RoleAdmin, Token: adminToken}}
	tests := []struct {
		name string
		cfg  admin.Config
	}{
		{"no tokens", admin.Config{}},
		{"short token", admin.Config{Tokens: []admin.Token{{Name: "a", Role: admin.RoleAdmin, Token: "x"}}}},
		{"bad role", admin.Config{Tokens: []admin.Token{{Name: "a", Role: "root", Token: adminToken}}}},
		{"short cluster key", admin.Config{Tokens: ok, ClusterKey: make([]byte, 16)}},
		{"negative body limit", admin.Config{Tokens: ok, MaxBodyBytes: -1}},
		{"negative timeout", admin.Config{Tokens: ok, Timeouts: admin.Timeouts{Request: -time.Second}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := admin.New(tc.cfg, fx.nodes[0]); !errors.Is(err, admin.ErrInvalidConfig) {
				t.Fatalf("New = %v", err)
			}
		})
	}
	if _, err := admin.New(admin.Config{Tokens: ok}, nil); !errors.Is(err, admin.ErrInvalidConfig) {
		t.Fatalf("nil store: %v", err)
	}
	d := admin.DefaultConfig()
	if d.Addr != "127.0.0.1:8081" || d.MaxBodyBytes != 1<<20 || d.MaxApplyBytes != 8<<20 || d.Timeouts.Request == 0 {
		t.Fatalf("defaults: %+v", d)
	}
}

// TestServerLifecycle starts and stops a server of its own: Start twice
// fails, Shutdown is idempotent and the server stops answering. (Its
// goroutines are checked by TestMain's leak check, once the shared
// cluster, whose raft and gossip start goroutines at any time, is down.)
func TestServerLifecycle(t *testing.T) {
	s, err := admin.New(admin.Config{
		Addr:   "127.0.0.1:0",
		Tokens: []admin.Token{{Name: "a", Role: admin.RoleAdmin, Token: adminToken}},
	}, fx.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "" {
		t.Fatal("Addr before Start")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	resp, err := hc.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	addr := s.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
	tr.CloseIdleConnections()
	if _, err := hc.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("the server still answers after Shutdown")
	}

	// Shutdown before Start is fine, and Start then refuses.
	s2, err := admin.New(admin.Config{Tokens: []admin.Token{{Name: "a", Role: admin.RoleAdmin, Token: adminToken}}}, fx.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
}
