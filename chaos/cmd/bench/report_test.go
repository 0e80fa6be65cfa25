package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos/load"
)

func TestParseRates(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"500,2000,5000", []int{500, 2000, 5000}, false},
		{" 10 , 20 ,", []int{10, 20}, false},
		{"", nil, true},
		{"0", nil, true},
		{"-5", nil, true},
		{"1e3", nil, true},
		{"12x", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseRates(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !equalInts(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPhasesOrder(t *testing.T) {
	tests := []struct {
		name string
		o    options
		want []string
	}{
		{"default", options{rates: []int{500, 2000}, stream: true, streams: 100, checkRate: 2000, workers: 64},
			[]string{"json+streams/open/2000", "json/open/500", "stream/open/500", "json/open/2000", "stream/open/2000", "json/closed/0", "stream/closed/0"}},
		{"json only, no streams, no closed loop", options{rates: []int{2000}, checkRate: 2000},
			[]string{"json/open/2000"}},
		{"streams need the check rate", options{rates: []int{500}, streams: 100, checkRate: 2000},
			[]string{"json/open/500"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range phases(tt.o) {
				got = append(got, p.mode+"/"+p.loop+"/"+itoa(p.rate))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("phases\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// meas is a measurement with the given p50/p99/ttfb p99 (ms) and rate.
func meas(target, mode, loop string, rate int, p50, p99, ttfb99, achieved float64) Measurement {
	d := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	return Measurement{Mode: mode, Loop: loop, Result: load.Result{
		Target: target, OfferedRate: rate, Achieved: achieved, Sent: 100, Statuses: map[int]int{200: 100},
		Latency: load.Quantiles{P50: d(p50), P99: d(p99)}, TTFB: load.Quantiles{P99: d(ttfb99)}, Workers: 64,
	}, RSSPeakMB: 40, RSSEndMB: 35, StreamsOpen: 100}
}

func TestCompareAndChecks(t *testing.T) {
	rs := []Measurement{
		meas(targetDirect, modeJSON, loopOpen, 2000, 0.20, 1.0, 0, 2000),
		meas(targetBare, modeJSON, loopOpen, 2000, 0.30, 2.0, 0, 2000),
		meas(targetSluice, modeJSON, loopOpen, 2000, 0.35, 2.5, 0, 2000),
		meas(targetBare, modeStream, loopOpen, 2000, 0.5, 3.0, 1.0, 2000),
		meas(targetSluice, modeStream, loopOpen, 2000, 0.6, 4.0, 2.5, 2000),
		meas(targetSluice, modeStreams, loopOpen, 2000, 0.4, 3.0, 0, 2000),
		meas(targetBare, modeJSON, loopClosed, 0, 5, 10, 0, 4000),
		meas(targetSluice, modeJSON, loopClosed, 0, 6, 12, 0, 3000),
		meas(targetBare, modeStream, loopClosed, 0, 5, 10, 0, 1000),
		meas(targetSluice, modeStream, loopClosed, 0, 6, 12, 0, 900),
	}
	cs := compare(rs)
	var sb *Comparison
	for i := range cs {
		if cs[i].Of == targetSluice && cs[i].Against == targetBare && cs[i].Mode == modeJSON && cs[i].Loop == loopOpen {
			sb = &cs[i]
		}
	}
	if sb == nil {
		t.Fatalf("no sluice vs bare json comparison in %+v", cs)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(sb.P50AddedMS, 0.05) || !near(sb.P99Ratio, 1.25) || !near(sb.ThroughputRatio, 1) {
		t.Errorf("sluice vs bare = %+v", *sb)
	}

	want := map[string]struct {
		value float64
		ok    bool
	}{
		"p50_added_ms":            {0.05, true},
		"p99_ratio":               {1.25, true},
		"ttfb_p99_added_ms":       {1.5, false},
		"throughput_ratio":        {0.75, false},
		"stream_throughput_ratio": {0.9, true},
		"rss_peak_mb":             {40, true},
	}
	got := checks(rs, 2000)
	if len(got) != len(want) {
		t.Fatalf("got %d checks, want %d: %+v", len(got), len(want), got)
	}
	for _, c := range got {
		w, ok := want[c.Name]
		if !ok {
			t.Errorf("unexpected check %q", c.Name)
			continue
		}
		if !near(c.Value, w.value) || c.OK != w.ok {
			t.Errorf("%s = %v ok %v, want %v ok %v (%s)", c.Name, c.Value, c.OK, w.value, w.ok, c.Line)
		}
		if verdict := map[bool]string{true: " ok", false: " FAIL"}[c.OK]; !strings.HasSuffix(c.Line, verdict) {
			t.Errorf("line %q does not end in %q", c.Line, verdict)
		}
	}
	if got := checks(rs, 500); len(got) != 2 || got[0].Name != "throughput_ratio" {
		t.Errorf("checks at a rate never run = %+v, want only the closed-loop ones", got)
	}

	rs[1].Saturated = true // the bare proxy queued at 2000/s
	for _, c := range checks(rs, 2000) {
		wantInconclusive := c.Name == "p50_added_ms" || c.Name == "p99_ratio"
		if c.Inconclusive != wantInconclusive || (wantInconclusive && (c.OK || !strings.Contains(c.Line, "INCONCLUSIVE (bare-proxy saturated)"))) {
			t.Errorf("with the bare proxy saturated: %+v", c)
		}
	}
	rs[1].Saturated = false

	var out bytes.Buffer
	printTable(&out, &Report{Results: rs, Comparisons: cs, Checks: got})
	for _, s := range []string{"sluice vs bare-proxy", "json+100 streams", "max(64w)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}

func TestRSSGrowth(t *testing.T) {
	series := func(rss ...float64) []SoakSample {
		out := make([]SoakSample, len(rss))
		for i, v := range rss {
			out[i] = SoakSample{At: float64(i * 10), RSSMB: v}
		}
		return out
	}
	tests := []struct {
		name    string
		samples []SoakSample
		window  time.Duration
		want    float64
	}{
		{"empty", nil, time.Minute, 0},
		{"flat", series(40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40), time.Minute, 0},
		// First minute: samples at 0..60 s (mean 13); last: 70..130 s (mean 20).
		{"growing", series(10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23), time.Minute, 7},
		{"one sample", series(50), time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rssGrowth(tt.samples, tt.window); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("growth = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChatBodyAndTargets(t *testing.T) {
	direct := &system{name: targetDirect, urls: []string{"http://m"}, azure: true}
	cl := &system{name: targetCluster, urls: []string{"http://a", "http://b", "http://c"}}
	tests := []struct {
		name    string
		t       load.Target
		urls    []string
		header  string
		inBody  string
		streams bool
	}{
		{"direct json", direct.target(fastDeployment, false, 0), []string{"http://m/openai/deployments/gpt-4o-mini/chat/completions?api-version=" + azureVersion}, "Api-Key", `"max_tokens":32}`, false},
		{"cluster slow stream", cl.target(slowDeployment, true, slowMaxTokens), []string{"http://a/v1/chat/completions", "http://b/v1/chat/completions", "http://c/v1/chat/completions"}, "Authorization", `"model":"slow"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			urls := tt.t.URLs
			if len(urls) == 0 {
				urls = []string{tt.t.URL}
			}
			if strings.Join(urls, " ") != strings.Join(tt.urls, " ") {
				t.Errorf("urls %v, want %v", urls, tt.urls)
			}
			if tt.t.Headers.Get(tt.header) == "" || !strings.Contains(string(tt.t.Body), tt.inBody) || tt.t.Stream != tt.streams {
				t.Errorf("target %+v (body %s)", tt.t, tt.t.Body)
			}
		})
	}
}

func TestSoakCheck(t *testing.T) {
	tests := []struct {
		name             string
		growth           float64
		saturated        bool
		ok, inconclusive bool
		verdict          string
	}{
		{"flat", 2, false, true, false, " ok"},
		{"growing", 25, false, false, false, " FAIL"},
		{"saturated", 2, true, false, true, "INCONCLUSIVE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := meas(targetSluice, modeJSON, loopOpen, 2000, 1, 2, 0, 2000)
			m.Saturated = tt.saturated
			c := soakCheck(&Soak{Rate: 2000, Duration: "10m0s", GrowthMB: tt.growth}, m)
			if c.OK != tt.ok || c.Inconclusive != tt.inconclusive || !strings.Contains(c.Line, tt.verdict) {
				t.Errorf("check %+v, want ok %v inconclusive %v verdict %q", c, tt.ok, tt.inconclusive, tt.verdict)
			}
		})
	}
}
