package load

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestQuantiles(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted on purpose
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Quantiles
	}{
		{"empty", nil, Quantiles{}},
		{"one", ms(7), Quantiles{P50: 7 * time.Millisecond, P90: 7 * time.Millisecond, P99: 7 * time.Millisecond, P999: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{"hundred", ms(hundred...), Quantiles{P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, P999: 100 * time.Millisecond, Max: 100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantiles(tt.in); got != tt.want {
				t.Errorf("quantiles = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "20824 (cat) R 20821 20821 15554 0 -1 4194304 96 0 0 0 12 3 0 0 20 0 1 0 86897 3133440 389", 150 * time.Millisecond, false},
		{"name with spaces and parens", "7 (my (odd) name) S 1 7 7 0 -1 0 0 0 0 0 250 50 0 0 20 0 9 0 1 1 1", 3 * time.Second, false},
		{"no name", "7 cat S 1", 0, true},
		{"short", "7 (cat) S 1 2 3", 0, true},
		{"not a number", "7 (cat) S 1 7 7 0 -1 0 0 0 0 0 x 50 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatCPU([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrProcFormat) {
				t.Errorf("err = %v, want ErrProcFormat", err)
			}
			if got != tt.want {
				t.Errorf("cpu = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		rss, hwm int64
		wantErr  bool
	}{
		{"both", "Name:\tx\nVmPeak:\t 3892 kB\nVmHWM:\t    1976 kB\nVmRSS:\t    1024 kB\nVmSwap:\t0 kB\n", 1024 << 10, 1976 << 10, false},
		{"no trailing newline", "VmRSS:\t2 kB\nVmHWM:\t3 kB", 2 << 10, 3 << 10, false},
		{"missing hwm", "VmRSS:\t2 kB\n", 0, 0, true},
		{"bad unit", "VmRSS:\t2 MB\nVmHWM:\t3 kB\n", 0, 0, true},
		{"bad number", "VmRSS:\tx kB\nVmHWM:\t3 kB\n", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rss, hwm, err := ParseStatusRSS([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if rss != tt.rss || hwm != tt.hwm {
				t.Errorf("rss, hwm = %d, %d, want %d, %d", rss, hwm, tt.rss, tt.hwm)
			}
		})
	}
}

func TestReadProcSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux only")
	}
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.PeakRSS < s.RSS {
		t.Errorf("rss %d, peak %d: want 0 < rss <= peak", s.RSS, s.PeakRSS)
	}
}

// server answers 200 with a short SSE-like body and counts hits per path.
func server(t *testing.T) (*httptest.Server, func() map[string]int) {
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte("data: {}\n\ndata: [DONE]\n\n"))
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range hits {
			out[k] = v
		}
		return out
	}
}

func TestRunOpenLoop(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv, hits := server(t)
	tests := []struct {
		name     string
		target   Target
		wantOK   int
		wantHits map[string]int
	}{
		{"one url", Target{Name: "a", URL: srv.URL + "/a"}, 50, map[string]int{"/a": 50}},
		{"round robin", Target{Name: "rr", URLs: []string{srv.URL + "/x", srv.URL + "/y"}, Stream: true}, 50, map[string]int{"/x": 25, "/y": 25}},
		{"refused", Target{Name: "f", URL: srv.URL + "/fail"}, 0, map[string]int{"/fail": 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hits()
			r := Run{Rate: 250, Duration: 200 * time.Millisecond}.Do(context.Background(), tt.target)
			if r.Sent != 50 || r.OK() != tt.wantOK || r.Failed() != 50-tt.wantOK || r.Errors != 0 {
				t.Errorf("sent %d ok %d failed %d errors %d, want 50, %d, %d, 0", r.Sent, r.OK(), r.Failed(), r.Errors, tt.wantOK, 50-tt.wantOK)
			}
			if r.Achieved < 200 || r.Achieved > 260 {
				t.Errorf("achieved %.0f/s, want about 250/s", r.Achieved)
			}
			after := hits()
			for path, n := range tt.wantHits {
				if got := after[path] - before[path]; got != n {
					t.Errorf("%s got %d requests, want %d", path, got, n)
				}
			}
			if tt.target.Stream && tt.wantOK > 0 && r.TTFB.P50 <= 0 {
				t.Errorf("stream without time to first byte: %+v", r.TTFB)
			}
			if r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
				t.Errorf("latency quantiles out of order: %+v", r.Latency)
			}
		})
	}
}

func TestClosedLoop(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv, _ := server(t)
	r := Closed{Workers: 4, Duration: 200 * time.Millisecond}.Do(context.Background(), Target{Name: "c", URL: srv.URL})
	if r.Sent == 0 || r.OK() != r.Sent || r.Errors != 0 {
		t.Fatalf("sent %d ok %d errors %d: want every request answered", r.Sent, r.OK(), r.Errors)
	}
	if r.Workers != 4 || r.Achieved <= 0 {
		t.Errorf("workers %d achieved %.0f", r.Workers, r.Achieved)
	}
	if r.Elapsed < 200*time.Millisecond || r.Elapsed > 2*time.Second {
		t.Errorf("elapsed %v, want about the duration", r.Elapsed)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv, _ := server(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Run{Rate: 100, Duration: time.Hour}.Do(ctx, Target{Name: "x", URL: srv.URL})
	if r.Sent > 1 {
		t.Errorf("sent %d after cancel, want at most 1", r.Sent)
	}
}

func TestMerge(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv, _ := server(t)
	tg := Target{Name: "m", URL: srv.URL, Stream: true}
	a := Run{Rate: 200, Duration: 250 * time.Millisecond}.Do(context.Background(), tg)
	b := Run{Rate: 200, Duration: 250 * time.Millisecond}.Do(context.Background(), tg)
	tests := []struct {
		name      string
		in        []Result
		wantSent  int
		wantRate  float64
		wantOKAll bool
	}{
		{"none", nil, 0, 0, true},
		{"one", []Result{a}, a.Sent, a.Achieved, true},
		{"two", []Result{a, b}, a.Sent + b.Sent, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Merge(tt.in...)
			if m.Sent != tt.wantSent || m.OK() != m.Sent {
				t.Errorf("sent %d ok %d, want %d all ok", m.Sent, m.OK(), tt.wantSent)
			}
			if math.Abs(m.Achieved-tt.wantRate) > 0.1*tt.wantRate+1e-9 {
				t.Errorf("achieved %.1f, want about %.1f", m.Achieved, tt.wantRate)
			}
			if m.Sent > 0 && (m.Latency.Max < max(a.Latency.Max, b.Latency.Max) && len(tt.in) == 2 || m.TTFB.P50 <= 0) {
				t.Errorf("quantiles not over all samples: %+v", m.Latency)
			}
		})
	}
}
