package router_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/router"
)

func statusOf(t *testing.T, r *router.Router, name string) router.DeploymentStatus {
	t.Helper()
	for _, d := range r.DeploymentStatus() {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("deployment %s not in the status", name)
	return router.DeploymentStatus{}
}

// TestDeploymentStatus: the status follows the request path's own state:
// configuration and share numbers, latency and use after answers, an open
// circuit after failures, cooling after a provider's 429, and nothing
// before a configuration is installed.
func TestDeploymentStatus(t *testing.T) {
	if got := router.New(router.Config{}).DeploymentStatus(); got != nil {
		t.Fatalf("status before any configuration: %+v", got)
	}
	e := newEnv(t, envOpts{rpm: 6000, tpm: 600000, policy: fastRetries(),
		health: router.HealthConfig{FailureThreshold: 2, OpenFor: time.Minute}})

	all := e.router.DeploymentStatus()
	if len(all) != 4 || all[0].Name != "eastus-chat" || all[3].Name != "swedencentral-embed" {
		t.Fatalf("want the four deployments sorted by name: %+v", all)
	}
	east := statusOf(t, e.router, "eastus-chat")
	if east.State != router.StateHealthy || east.Circuit != "closed" || east.Provider != "az-eastus" ||
		east.ProviderKind != string(state.KindAzure) || east.Region != "eastus" || east.RPM != 6000 || east.TPM != 600000 {
		t.Fatalf("fresh deployment: %+v", east)
	}
	// Azure's windows: 6000 RPM is 100 per 1 s, 600000 TPM is 100000 per 10 s.
	if east.ShareRequests != 100 || east.ShareTokens != 100000 || east.RequestWindowSeconds != 1 || east.TokenWindowSeconds != 10 {
		t.Fatalf("share: %+v", east)
	}
	if embed := statusOf(t, e.router, "eastus-embed"); embed.ShareRequests != -1 || embed.ShareTokens != -1 {
		t.Fatalf("an unlimited deployment shows share %d/%d, want -1/-1", embed.ShareRequests, embed.ShareTokens)
	}

	// Answers give a latency and use.
	for range 4 {
		if code, _, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 8)); code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
	}
	var usedReq, usedTok int64
	measured := 0
	for _, n := range []string{"eastus-chat", "swedencentral-chat"} {
		s := statusOf(t, e.router, n)
		usedReq, usedTok = usedReq+s.UsedRequests, usedTok+s.UsedTokens
		if s.LatencyMS > 0 {
			measured++
		}
		if s.InFlight != 0 {
			t.Fatalf("%s: %d in flight after every request finished", n, s.InFlight)
		}
	}
	if measured == 0 || usedReq < 1 || usedTok < 1 {
		t.Fatalf("after 4 answers: %d deployments measured, used %d requests %d tokens", measured, usedReq, usedTok)
	}

	// Failures open the circuit.
	setFaults(t, e.regions["eastus"], mock.Faults{Error500: 1})
	waitFor(t, 10*time.Second, "eastus-chat's circuit to open", func() bool {
		e.post("/v1/chat/completions", demoKey, chatBody(false, 8))
		return statusOf(t, e.router, "eastus-chat").State == router.StateCircuitOpen
	})
	if s := statusOf(t, e.router, "eastus-chat"); s.Circuit != "open" {
		t.Fatalf("circuit_open state with circuit %q", s.Circuit)
	}

	// A provider's 429 makes the deployment cool.
	// (The requests above may have spent swedencentral's budget for this
	// second, so a request may not reach it at once.)
	setFaults(t, e.regions["swedencentral"], mock.Faults{Force429For: mock.Duration(30 * time.Second)})
	waitFor(t, 5*time.Second, "swedencentral-chat to cool after a 429", func() bool {
		e.post("/v1/chat/completions", demoKey, chatBody(false, 8))
		return statusOf(t, e.router, "swedencentral-chat").State == router.StateCooling
	})
	if s := statusOf(t, e.router, "swedencentral-chat"); s.State != router.StateCooling || s.CoolingSeconds <= 0 || s.CoolingSeconds > 30 {
		t.Fatalf("after a 429: %+v", s)
	}
}
