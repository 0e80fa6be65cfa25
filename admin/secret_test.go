package admin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster/state"
)

// TestProviderSecret sends literal provider secrets as api_key_value and
// checks they are stored only encrypted, decrypt back with the cluster
// key, and appear in no response, audit record, log line, snapshot or
// file in the nodes' data directories.
func TestProviderSecret(t *testing.T) {
	fx.reset(t, baseConfig())
	ctx := context.Background()
	w := fx.follower(t)
	secret1, secret2 := newSecret(), newSecret()

	r := fx.call(t, w, "POST", "/admin/v1/providers", adminToken, []byte(
		`{"name":"sec-prov","kind":"openai","endpoint":"https://api.example.com","api_key_value":"`+secret1+`"}`))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var p state.Provider
	r.decode(t, &p)
	if p.APIKey != admin.MaskedSecret {
		t.Fatalf("create shows api_key %q", p.APIKey)
	}
	v, _ := strconv.ParseUint(r.header.Get(admin.VersionHeader), 10, 64)
	fx.waitVersion(t, v)
	stored := storedKey(t, "sec-prov")
	if got, err := admin.Decrypt(fx.key, stored); err != nil || got != secret1 {
		t.Fatalf("Decrypt(stored) = %q, %v", got, err)
	}
	resolve := admin.Resolver(fx.key, nil)
	if got, err := resolve(stored); err != nil || got != secret1 {
		t.Fatalf("Resolver(stored) = %q, %v", got, err)
	}
	for i := range fx.nodes {
		r := fx.call(t, i, "GET", "/admin/v1/providers/sec-prov", readToken, nil)
		r.decode(t, &p)
		if p.APIKey != admin.MaskedSecret || contains(r.body, stored) {
			t.Fatalf("node %d shows %s", i, r.body)
		}
		r = fx.call(t, i, "GET", "/admin/v1/providers", readToken, nil)
		if !contains(r.body, `"api_key":"env:AZ_KEY"`) || !contains(r.body, `"api_key":"enc:****"`) {
			t.Fatalf("node %d list: %s", i, r.body)
		}
	}

	// GET, change, PUT back: the masked value keeps the stored secret.
	p.Endpoint = "https://api2.example.com"
	r = fx.call(t, w, "PUT", "/admin/v1/providers/sec-prov", adminToken, mustJSON(t, p))
	if r.status != http.StatusOK {
		t.Fatalf("put masked: %d %s", r.status, r.body)
	}
	if got := storedKey(t, "sec-prov"); got != stored {
		t.Fatal("PUT with the masked value changed the stored secret")
	}

	// A new literal replaces it.
	r = fx.call(t, w, "PUT", "/admin/v1/providers/sec-prov", adminToken, []byte(
		`{"kind":"openai","endpoint":"https://api.example.com","api_key_value":"`+secret2+`"}`))
	if r.status != http.StatusOK {
		t.Fatalf("put new secret: %d %s", r.status, r.body)
	}
	stored2 := storedKey(t, "sec-prov")
	if got, err := admin.Decrypt(fx.key, stored2); err != nil || got != secret2 || stored2 == stored {
		t.Fatalf("second secret: %q, %v", got, err)
	}

	// A configuration read back from the API applies again unchanged.
	doc := `{"providers":[{"name":"sec-prov","kind":"openai","endpoint":"https://api.example.com","api_key":"enc:****"}]}`
	res, err := fx.client(w, adminToken).Apply(ctx, []byte(doc), false)
	if err != nil {
		t.Fatal(err)
	}
	if pd := res.Diff.Providers; len(pd.Added)+len(pd.Changed) != 0 || !equalStrings(pd.Removed, "base-prov") {
		t.Fatalf("apply of the read-back provider: %+v", res.Diff.Providers)
	}
	fx.waitVersion(t, res.Version)
	if storedKey(t, "sec-prov") != stored2 {
		t.Fatal("apply with the masked value changed the stored secret")
	}

	// Snapshot download: encrypted values only.
	r = fx.call(t, w, "GET", "/admin/v1/snapshot", adminToken, nil)
	if r.status != 200 || !contains(r.body, stored2) {
		t.Fatalf("snapshot: %d (%d bytes)", r.status, len(r.body))
	}

	// The audit log, via the API and directly.
	r = fx.call(t, w, "GET", "/admin/v1/audit", readToken, nil)
	audit := fmt.Sprint(fx.nodes[w].AuditLog())
	if !contains(r.body, "sec-prov") || !strings.Contains(audit, "sec-prov") {
		t.Fatalf("the audit log does not record the provider writes: %s", r.body)
	}

	// A node without a cluster key refuses api_key_value.
	nokey, err := admin.New(admin.Config{Tokens: []admin.Token{{Name: "a", Role: admin.RoleAdmin, Token: adminToken}}}, fx.nodes[w])
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/admin/v1/providers", strings.NewReader(
		`{"name":"nokey","kind":"openai","endpoint":"https://x.example.com","api_key_value":"`+secret1+`"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec := httptest.NewRecorder()
	nokey.Handler().ServeHTTP(rec, req)
	transcript.add(rec.Body.Bytes())
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "api_key_value") {
		t.Fatalf("no cluster key: %d %s", rec.Code, rec.Body)
	}

	// The grep: no response, audit record, log line or data file holds
	// either plaintext.
	for _, s := range []string{secret1, secret2} {
		if contains(transcript.Bytes(), s) {
			t.Error("a secret appears in an admin response")
		}
		if strings.Contains(audit, s) {
			t.Error("a secret appears in the audit log")
		}
		if contains(fx.logs.Bytes(), s) {
			t.Error("a secret appears in the logs")
		}
	}
	files := 0
	err = filepath.WalkDir(fx.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(secret1)) || bytes.Contains(b, []byte(secret2)) {
			t.Errorf("a secret appears in data file %s", filepath.Base(path))
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walk data directories: %d files, %v", files, err)
	}
}

func newSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "sk-live-" + hex.EncodeToString(b)
}

// storedKey returns a provider's api_key as the leader's snapshot holds it.
func storedKey(t *testing.T, name string) string {
	t.Helper()
	for _, n := range fx.nodes {
		if n.IsLeader() {
			p, ok := n.Snapshot().Provider(name)
			if !ok {
				t.Fatalf("no provider %s", name)
			}
			if !strings.HasPrefix(p.APIKey, admin.EncPrefix) {
				t.Fatalf("stored api_key is not encrypted")
			}
			return p.APIKey
		}
	}
	t.Fatal("no leader")
	return ""
}

func equalStrings(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

func TestEncryptDecrypt(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	other := make([]byte, 32)
	_, _ = rand.Read(other)

	a, err := admin.Encrypt(key, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := admin.Encrypt(key, "s3cret")
	if !strings.HasPrefix(a, "enc:") || a == b || strings.Contains(a, "s3cret") {
		t.Fatalf("Encrypt: %q, %q", a, b)
	}
	if !state.IsSecretRef(a) {
		t.Fatal("an encrypted value is not a secret reference to the config model")
	}
	if got, err := admin.Decrypt(key, a); err != nil || got != "s3cret" {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	tampered := a[:len(a)-2] + "AA"
	if tampered == a {
		tampered = a[:len(a)-2] + "BB"
	}
	tests := []struct {
		name string
		key  []byte
		ref  string
		want error
	}{
		{"wrong key", other, a, admin.ErrBadSecret},
		{"tampered", key, tampered, admin.ErrBadSecret},
		{"not base64", key, "enc:***", admin.ErrBadSecret},
		{"too short", key, "enc:AAAA", admin.ErrBadSecret},
		{"not enc", key, "env:X", admin.ErrBadSecret},
		{"no key", nil, a, admin.ErrNoClusterKey},
		{"short key", key[:16], a, admin.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := admin.Decrypt(tc.key, tc.ref)
			if !errors.Is(err, tc.want) || got != "" {
				t.Fatalf("Decrypt = %q, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := admin.Encrypt(nil, "x"); !errors.Is(err, admin.ErrNoClusterKey) {
		t.Fatalf("Encrypt without key: %v", err)
	}

	env := func(ref string) (string, error) { return "from-env:" + ref, nil }
	resolve := admin.Resolver(key, env)
	if got, err := resolve(a); err != nil || got != "s3cret" {
		t.Fatalf("resolve enc: %q, %v", got, err)
	}
	if got, err := resolve("env:X"); err != nil || got != "from-env:env:X" {
		t.Fatalf("resolve env: %q, %v", got, err)
	}
	if _, err := admin.Resolver(key, nil)("env:X"); err == nil {
		t.Fatal("a nil next resolved a reference")
	}
}
