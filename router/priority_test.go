package router_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// postWith sends a chat request with extra headers and returns its status
// and how long it took.
func postWith(e *env, hdr map[string]string) (int, time.Duration) {
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/chat/completions", strings.NewReader(chatBody(false, 8)))
	req.Header.Set("Authorization", "Bearer "+demoKey)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// TestBatchWaitsInteractiveDoesNot: with the deployment's budget spent,
// an interactive request is refused at once, a batch request waits for
// the next window within its x-sluice-max-wait and is answered, and the
// bounded batch queue refuses a waiter beyond it at once. The router's
// clock stands still unless the test moves it, so no window turns by
// itself between two steps.
func TestBatchWaitsInteractiveDoesNot(t *testing.T) {
	clock := newManualClock()
	e := newEnv(t, envOpts{rpm: 120, mockRPM: 100000, regionsNo: 1, now: clock.Now, editCfg: func(c *stateConfig) {
		c.Quota.BatchQueue = 1
		c.Quota.BatchFraction = 1 // the headroom rule is tested in quota
	}}) // 2 requests per 1 s window
	batch := func(wait string) map[string]string {
		return map[string]string{"X-Sluice-Priority": "batch", "X-Sluice-Max-Wait": wait}
	}
	spend := func() {
		t.Helper()
		clock.Advance(2 * time.Second) // a fresh window
		for i := 0; ; i++ {
			code, _ := postWith(e, nil)
			if code == http.StatusTooManyRequests {
				break
			}
			if code != http.StatusOK || i == 10 {
				t.Fatalf("spending the budget: %d after %d requests", code, i+1)
			}
		}
	}
	spend()
	if code, took := postWith(e, nil); code != http.StatusTooManyRequests || took > 500*time.Millisecond {
		t.Fatalf("interactive with no budget: %d after %v, want an immediate 429", code, took)
	}

	// One waiter fits the queue; a second one is refused at once; the
	// waiter is answered once the window turns.
	var wg sync.WaitGroup
	wg.Add(1)
	var firstCode int
	go func() {
		defer wg.Done()
		firstCode, _ = postWith(e, batch("3"))
	}()
	waitFor(t, 3*time.Second, "a batch request waiting", func() bool { return e.router.BatchWaiting() == 1 })
	if code, took := postWith(e, batch("3")); code != http.StatusTooManyRequests || took > 500*time.Millisecond {
		t.Fatalf("batch request beyond the queue: %d after %v, want an immediate 429", code, took)
	}
	clock.Advance(1100 * time.Millisecond)
	wg.Wait()
	if firstCode != http.StatusOK {
		t.Fatalf("the queued batch request after the window turned: %d", firstCode)
	}
	recs := e.recordsSnapshot()
	if last := recs[len(recs)-1]; last.Class != string(state.ClassBatch) || last.Status != 200 {
		t.Fatalf("batch usage record: %+v", last)
	}
	if n := e.router.BatchWaiting(); n != 0 {
		t.Fatalf("%d batch requests still counted as waiting", n)
	}

	// A batch wait never exceeds its deadline.
	spend()
	wg.Add(1)
	var lateCode int
	go func() {
		defer wg.Done()
		lateCode, _ = postWith(e, batch("0.5"))
	}()
	waitFor(t, 3*time.Second, "a batch request waiting", func() bool { return e.router.BatchWaiting() == 1 })
	clock.Advance(600 * time.Millisecond) // past its deadline, inside the window
	wg.Wait()
	if lateCode != http.StatusTooManyRequests {
		t.Fatalf("batch request past its 0.5 s wait: %d, want 429", lateCode)
	}
}

// manualClock is a clock that moves only when told to.
type manualClock struct{ ns atomic.Int64 }

func newManualClock() *manualClock {
	c := &manualClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *manualClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

func (c *manualClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
