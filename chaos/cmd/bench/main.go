// Command bench measures what Sluice adds: in one run, against the same
// zero-latency mock provider, it offers open-loop load at fixed rates
// directly to the mock, through a bare httputil.ReverseProxy (what any Go
// proxy pays) and through a Sluice node, and prints latency quantiles,
// achieved rates and the ratios between them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/chaos/load"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/node"
)

const (
	mockKey  = "bench-mock-key"
	benchKey = "sk-bench"
	body     = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences."}],"max_tokens":32}`
)

func main() {
	rates := flag.String("rates", "500,1000,2000", "offered rates, requests per second")
	dur := flag.Duration("duration", 5*time.Second, "load per rate and target")
	stream := flag.Bool("stream", true, "also measure streaming (time to first byte)")
	jsonOut := flag.String("json", "", "write results as JSON to this file")
	flag.Parse()
	if err := run(*rates, *dur, *stream, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func listen(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func run(rateList string, dur time.Duration, stream bool, jsonOut string) error {
	region, err := mock.NewRegion(mock.RegionConfig{Name: "bench", APIKey: mockKey,
		Deployments: []mock.DeploymentConfig{{Name: "gpt-4o-mini", Completion: mock.CompletionConfig{MeanTokens: 16}}}})
	if err != nil {
		return err
	}
	defer region.Close()
	mockURL, stopMock, err := listen(region)
	if err != nil {
		return err
	}
	defer stopMock()

	u, _ := url.Parse(mockURL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096}
	rp.FlushInterval = -1
	rp.ErrorLog = nil
	proxyURL, stopProxy, err := listen(rp)
	if err != nil {
		return err
	}
	defer stopProxy()

	os.Setenv("BENCH_MOCK_KEY", mockKey)
	n := node.New(node.Config{APIAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	err = n.Install(state.Config{
		Providers:   []state.Provider{{Name: "mock", Kind: state.KindAzure, Endpoint: mockURL, APIKey: "env:BENCH_MOCK_KEY"}},
		Deployments: []state.Deployment{{Name: "bench-chat", Provider: "mock", Upstream: "gpt-4o-mini"}},
		Models:      []state.Model{{Name: "gpt-4o-mini", Deployments: []string{"bench-chat"}}},
		Tenants:     []state.Tenant{{Name: "bench"}},
		Keys:        []state.Key{{ID: "bench", Hash: state.HashKey(benchKey), Tenant: "bench"}},
	})
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	defer n.Shutdown(context.Background())

	azurePath := "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
	mkTargets := func(streaming bool) []load.Target {
		b := []byte(body)
		if streaming {
			b = []byte(strings.Replace(body, `"max_tokens":32`, `"max_tokens":32,"stream":true`, 1))
		}
		return []load.Target{
			{Name: "direct", URL: mockURL + azurePath, Body: b, Stream: streaming, Headers: http.Header{"Api-Key": {mockKey}, "Content-Type": {"application/json"}}},
			{Name: "bare-proxy", URL: proxyURL + azurePath, Body: b, Stream: streaming, Headers: http.Header{"Api-Key": {mockKey}, "Content-Type": {"application/json"}}},
			{Name: "sluice", URL: "http://" + n.APIAddr() + "/v1/chat/completions", Body: b, Stream: streaming, Headers: http.Header{"Authorization": {"Bearer " + benchKey}, "Content-Type": {"application/json"}}},
		}
	}
	var all []load.Result
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\ttarget\toffered/s\tachieved/s\tok\terrors\tp50\tp90\tp99\tp99.9\tttfb p99\t")
	modes := []bool{false}
	if stream {
		modes = append(modes, true)
	}
	ctx := context.Background()
	for _, rs := range strings.Split(rateList, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(rs))
		if err != nil || rate <= 0 {
			return fmt.Errorf("bad rate %q", rs)
		}
		for _, streaming := range modes {
			mode := map[bool]string{false: "json", true: "stream"}[streaming]
			byName := map[string]load.Result{}
			for _, t := range mkTargets(streaming) {
				// Warm connections, then measure.
				load.Run{Rate: rate, Duration: 300 * time.Millisecond}.Do(ctx, t)
				r := load.Run{Rate: rate, Duration: dur}.Do(ctx, t)
				byName[t.Name] = r
				all = append(all, r)
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%d\t%d\t%v\t%v\t%v\t%v\t%v\t\n", mode, t.Name, rate, r.Achieved, r.Statuses[200],
					r.Errors+r.Sent-r.Statuses[200], us(r.Latency.P50), us(r.Latency.P90), us(r.Latency.P99), us(r.Latency.P999), us(r.TTFB.P99))
			}
			d, b, s := byName["direct"], byName["bare-proxy"], byName["sluice"]
			fmt.Fprintf(tw, "%s\tsluice vs direct\t%d\t\t\t\t+%v\t\t+%v\t\t\t\n", mode, rate, us(s.Latency.P50-d.Latency.P50), us(s.Latency.P99-d.Latency.P99))
			fmt.Fprintf(tw, "%s\tsluice / bare proxy\t%d\t\t\t\t%.2fx\t\t%.2fx\t\t\t\n", mode, rate, ratio(s.Latency.P50, b.Latency.P50), ratio(s.Latency.P99, b.Latency.P99))
		}
	}
	tw.Flush()
	if jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
