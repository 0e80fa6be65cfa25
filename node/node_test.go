package node_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/node"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sluiceBin.path != "" {
		_ = os.RemoveAll(filepath.Dir(sluiceBin.path))
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func TestShippedExampleLoads(t *testing.T) {
	cfg, err := node.LoadConfig(filepath.Join("..", "deploy", "local", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Models) == 0 || len(cfg.Keys) == 0 {
		t.Fatalf("example is empty: %+v", cfg)
	}
}

func TestLoadConfigErrorsNameTheField(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown field", "providers:\n  - name: a\n    kind: azure\n    endpoint: http://x\n    api_key: env:K\n    colour: red\n", "colour"},
		{"wrong type", "deployments:\n  - name: d\n    tpm: lots\n", "tpm"},
		{"invalid value", "providers:\n  - name: a\n    kind: gcp\n    endpoint: http://x\n", "providers[0].kind"},
		{"bad duration", "policies:\n  - name: default\n    retry:\n      base_interval: soon\n", "soon"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := node.LoadConfig(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v does not name %q and the file", err, tc.want)
			}
		})
	}
}

func TestNodeStartsServesAndStops(t *testing.T) {
	cfg, err := node.LoadConfig(filepath.Join("..", "deploy", "local", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := node.New(node.Config{APIAddr: "127.0.0.1:0"})
	if err := n.Install(cfg); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 200} {
		resp, err := http.Get("http://" + n.APIAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal("second shutdown:", err)
	}
	if _, err := http.Get("http://" + n.APIAddr() + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}
