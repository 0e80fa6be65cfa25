package node_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/node"
)

// The admin page is driven in headless Chromium: `chromium --headless
// --dump-dom --virtual-time-budget` loads it, runs its scripts against the
// live admin API and prints the resulting DOM. No browser-automation
// library is needed for what these tests check (the rendered DOM and a
// screenshot).
//
// The browser is found as $SLUICE_CHROMIUM, else chromium, chromium-browser
// or google-chrome on PATH. Without one the test is skipped, unless CI=true,
// where it fails; with -short it is skipped. Set SLUICE_SCREENSHOT_DIR to
// keep the screenshot.

// chromiumPath returns the browser to drive, skipping or failing the test
// when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster and a browser; skipped with -short")
	}
	if p := os.Getenv("SLUICE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("headless Chromium is required in CI: install Debian's chromium package (or set SLUICE_CHROMIUM)")
	}
	t.Skip("headless Chromium not found (install Debian's chromium package or set SLUICE_CHROMIUM); skipping the admin page test")
	return ""
}

// runChromium runs one headless browser invocation with its own profile
// directory and returns its standard output.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=8000",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tailString(stderr.String(), 2000))
	}
	return stdout.String()
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestAdminPageShowsLiveCluster starts three nodes, sends traffic, opens
// /ui/#token=... on one node's admin listener and checks that the page
// rendered every live member, every deployment as every node reports it
// (health and share), the tenants and keys, and the usage panel (the "no
// usage data" notice when the usage endpoint is absent), and that nothing
// secret reached the DOM.
func TestAdminPageShowsLiveCluster(t *testing.T) {
	bin := chromiumPath(t)
	start := time.Now()

	const providerSecret = "ui-test-provider-secret-4c1e"
	region, err := mock.NewRegion(mock.RegionConfig{Name: "eastus", APIKey: providerSecret,
		Deployments: []mock.DeploymentConfig{{Name: "gpt-4o-mini"}}})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(region)
	defer up.Close()
	defer region.Close()
	t.Setenv("UI_TEST_PROVIDER_KEY", providerSecret)
	const userKey = "sk-ui-test-user-key"
	seed := state.Config{
		Providers: []state.Provider{{Name: "az-east", Kind: state.KindAzure, Endpoint: up.URL, APIKey: "env:UI_TEST_PROVIDER_KEY"}},
		Deployments: []state.Deployment{
			{Name: "east-chat", Provider: "az-east", Region: "eastus", Upstream: "gpt-4o-mini", TPM: 120000, RPM: 720},
			{Name: "east-chat-2", Provider: "az-east", Region: "eastus", Upstream: "gpt-4o-mini"},
		},
		Models:  []state.Model{{Name: "gpt-4o-mini", Deployments: []string{"east-chat", "east-chat-2"}}},
		Tenants: []state.Tenant{{Name: "team-alpha", Limits: state.Limits{RPM: 600}}, {Name: "team-beta", Class: state.ClassBatch}},
		Keys: []state.Key{
			{ID: "alpha-key", Hash: state.HashKey(userKey), Tenant: "team-alpha"},
			{ID: "beta-key", Hash: state.HashKey("sk-ui-test-other"), Tenant: "team-beta", Disabled: true},
		},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*node.Node
	defer func() {
		for _, n := range nodes {
			_ = n.Shutdown(context.Background())
		}
	}()
	var join []string
	ids := []string{"ui-n1", "ui-n2", "ui-n3"}
	for i, id := range ids {
		ac := admin.DefaultConfig()
		ac.Addr, ac.Tokens = "127.0.0.1:0", []admin.Token{{Name: "viewer", Role: admin.RoleRead, Token: adminToken}}
		cfg := node.Config{APIAddr: "127.0.0.1:0", Logger: logger, Cluster: testClusterConfig(t, id, join), Admin: &ac}
		if i == 0 {
			cfg.SeedConfig = &seed
		}
		n := node.New(cfg)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		join = []string{nodes[0].Cluster().GossipAddr()}
	}
	waitUntil(t, 20*time.Second, "every node to serve the seed config", func() bool {
		for _, n := range nodes {
			if chat(t, n.APIAddr(), userKey) != 200 {
				return false
			}
		}
		return true
	})
	c := &admin.Client{Addr: nodes[1].AdminAddr(), Token: adminToken}
	waitUntil(t, 10*time.Second, "every member to announce its admin address", func() bool {
		ms, err := c.Members(context.Background())
		if err != nil || len(ms) != 3 {
			return false
		}
		for _, m := range ms {
			if m.State != "alive" || m.AdminAddr == "" {
				return false
			}
		}
		return true
	})
	// The usage ledger commits in batches: wait until the chats above are
	// queryable, so the page has a chart to draw. A node without a usage
	// endpoint must show "no usage data" instead.
	haveUsage := true
	waitUntil(t, 15*time.Second, "the usage of the chats", func() bool {
		r, err := c.Usage(context.Background(), admin.UsageQuery{From: "-1h", GroupBy: []string{"model"}, Bucket: "minute"})
		var ae *admin.Error
		if errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusNotImplemented) {
			haveUsage = false
			return true
		}
		return err == nil && r.Total.Requests >= 3
	})
	t.Logf("cluster ready after %v (usage endpoint: %v)", time.Since(start), haveUsage)

	dir := os.Getenv("SLUICE_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "sluice-admin-ui.png")
	page := "http://" + nodes[1].AdminAddr() + "/ui/#token=" + adminToken
	t0 := time.Now()
	// One browser run renders the page, dumps its DOM and takes the
	// screenshot (starting Chromium is the slow part).
	dom := runChromium(t, bin, "--hide-scrollbars", "--window-size=1400,1700", "--screenshot="+shot, "--dump-dom", page)
	t.Logf("page rendered in %v (%d bytes of DOM)", time.Since(t0), len(dom))
	defer func() {
		if t.Failed() {
			t.Logf("DOM:\n%s", dom)
		}
	}()

	if !strings.Contains(dom, `data-loaded="true"`) {
		t.Fatalf("the page never finished loading; DOM:\n%s", tailString(dom, 4000))
	}
	for _, id := range ids {
		if !strings.Contains(dom, `data-member="`+id+`"`) {
			t.Errorf("member %s is not listed", id)
		}
		for _, d := range []string{"east-chat", "east-chat-2"} {
			if !regexp.MustCompile(`<tr data-deployment="` + d + `" data-node="` + id + `">`).MatchString(dom) {
				t.Errorf("deployment %s as seen by %s is not listed", d, id)
			}
		}
	}
	for _, want := range []string{
		`data-tenant="team-alpha"`, `data-tenant="team-beta"`, `data-key="alpha-key"`, `data-key="beta-key"`,
		`data-model="gpt-4o-mini"`, "healthy", "720",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// The raft facts of the node asked (which node leads depends on the
	// election, so only the shape is checked).
	if !regexp.MustCompile(`<dt>Raft state</dt><dd>(Leader|Follower|Candidate)</dd>`).MatchString(dom) {
		t.Error("the page lacks this node's raft state")
	}
	if !strings.Contains(dom, `data-usage-loaded="true"`) {
		t.Error("the usage panel did not load")
	}
	if haveUsage {
		if !strings.Contains(dom, `<li data-group="gpt-4o-mini">`) || !strings.Contains(dom, "<rect") {
			t.Error("the usage chart does not show the model's requests")
		}
	} else if !strings.Contains(dom, `<p id="usage-empty" class="muted">no usage data</p>`) {
		t.Error(`without a usage endpoint the page should say "no usage data"`)
	}
	for _, secret := range []string{providerSecret, userKey, adminToken, state.HashKey(userKey)[:12]} {
		if strings.Contains(dom, secret) {
			t.Errorf("the page shows a secret or a key hash: %q", secret)
		}
	}

	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if len(b) < 10_000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a rendered page (%d bytes)", len(b))
	}
	t.Logf("screenshot %s (%d bytes); whole test %v", shot, len(b), time.Since(start))
}

// TestAdminPageAsksForToken: a wrong token is refused: the page shows
// only the token form, with the reason.
func TestAdminPageAsksForToken(t *testing.T) {
	bin := chromiumPath(t)
	ac := admin.DefaultConfig()
	ac.Addr, ac.Tokens = "127.0.0.1:0", []admin.Token{{Name: "viewer", Role: admin.RoleRead, Token: adminToken}}
	cc := testClusterConfig(t, "ui-solo", nil)
	cc.BootstrapExpect = 1
	n := node.New(node.Config{APIAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Cluster: cc, Admin: &ac})
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = n.Shutdown(context.Background()) }()

	// A wrong token goes through the whole path: stored, sent, refused,
	// forgotten, and the token form shown again with the reason.
	dom := runChromium(t, bin, "--dump-dom", "http://"+n.AdminAddr()+"/ui/#token=not-the-right-token-000")
	if !strings.Contains(dom, "The token was refused") || !strings.Contains(dom, `<section id="login">`) ||
		!strings.Contains(dom, `<div id="app" hidden="">`) {
		t.Fatalf("a wrong token should be refused on the token form:\n%s", tailString(dom, 3000))
	}
}
