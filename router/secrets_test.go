package router_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
)

// TestProviderKeysNeverLeak drives successes, failovers and errors and
// greps every output of the gateway for the provider keys: logs (at debug
// level), response bodies and headers, and metrics.
func TestProviderKeysNeverLeak(t *testing.T) {
	const wrongKey = "mock-key-WRONG-0c2d9e77"
	e := newEnv(t, envOpts{policy: fastRetries(), editCfg: func(c *state.Config) {
		c.Providers = append(c.Providers, state.Provider{Name: "az-wrong", Kind: state.KindAzure,
			Endpoint: c.Providers[0].Endpoint, APIKey: "env:TEST_WRONG_KEY"})
		c.Deployments = append(c.Deployments, state.Deployment{Name: "wrong-chat", Provider: "az-wrong", Upstream: "gpt-4o-mini"})
		c.Models = append(c.Models, state.Model{Name: "wrong", Deployments: []string{"wrong-chat", "swedencentral-chat"}})
	}})
	t.Setenv("TEST_WRONG_KEY", wrongKey)
	e.install(e.cfg) // resolve the new env variable
	var outputs strings.Builder
	grab := func(code int, h http.Header, body string) {
		outputs.WriteString(body)
		for k, v := range h {
			outputs.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	grab(e.post("/v1/chat/completions", demoKey, chatBody(false, 8)))
	grab(e.post("/v1/chat/completions", demoKey, chatBody(true, 8)))
	grab(e.post("/v1/chat/completions", demoKey, strings.Replace(chatBody(false, 8), "gpt-4o-mini", "wrong", 1)))
	grab(e.post("/v1/chat/completions", "sk-bad", chatBody(false, 8)))
	grab(e.post("/v1/chat/completions", demoKey, `{"bad json`))
	if err := e.regions["eastus"].SetFaults("*", mock.Faults{Error500: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.regions["swedencentral"].SetFaults("*", mock.Faults{Reset: 1}); err != nil {
		t.Fatal(err)
	}
	grab(e.post("/v1/chat/completions", demoKey, chatBody(false, 8)))
	grab(e.post("/v1/embeddings", demoKey, `{"model":"text-embedding-3-small","input":"x"}`))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := e.client()
	_, _ = c.Chat.Completions.New(ctx, chatParams(4))

	if e.regions["eastus"].Stats().Deployments["gpt-4o-mini"].Requests == 0 {
		t.Fatal("the wrong key never reached the provider")
	}
	all := map[string]string{"logs": e.logs.String(), "responses": outputs.String(), "metrics": e.metricsText()}
	for where, text := range all {
		for _, secret := range []string{eastKey, swedenKey, wrongKey, demoKey} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain a secret (%s...)", where, secret[:9])
			}
		}
	}
	if !strings.Contains(all["logs"], "request_id") {
		t.Fatal("no request logged: the grep saw nothing")
	}
}
