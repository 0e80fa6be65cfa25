package router_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/quota"
)

// TestPacedShareSchedulesBursts: a paced token share sends a burst of
// requests at its rate instead of refusing what its bucket does not hold
// yet: requests wait (up to the pace wait) and the provider sees them
// spread out; a burst longer than the wait is refused with retry-after.
// Nothing stays held: later requests pass at once.
func TestPacedShareSchedulesBursts(t *testing.T) {
	lim := quota.New(quota.Config{Leased: true})
	e := newEnv(t, envOpts{regionsNo: 1, rpm: 60_000, tpm: 6_000_000, limiter: lim})
	d := lim.Deployments()["eastus-chat"]
	if d == nil {
		t.Fatal("no budget for eastus-chat")
	}
	// Learn one request's charge, then grant a bucket of two requests that
	// refills eight requests per second.
	if code, _, body := e.post("/v1/chat/completions", demoKey, chatBody(false, 16)); code != http.StatusTooManyRequests {
		t.Fatalf("with no share yet: %d %s", code, body)
	}
	_, cost := d.Demand(time.Now().UnixNano()).Peak.Requests, d.Demand(time.Now().UnixNano()).Peak.Tokens
	share := 2*cost + 80*cost // burst plus 8 per second over the 10 s window
	// Granted a second ago: the bucket, which starts empty, is full.
	d.SetShare(time.Now().Add(-time.Second).UnixNano(), quota.Grant{Requests: 1000, Tokens: share},
		quota.Pace{Burst: quota.Grant{Requests: quota.Unpaced, Tokens: 2 * cost}, Wait: time.Second})

	burst := func(n int) map[int]int {
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				code, h, _ := e.post("/v1/chat/completions", demoKey, chatBody(false, 16))
				mu.Lock()
				defer mu.Unlock()
				codes[code]++
				if code == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
					t.Error("429 without retry-after")
				}
			})
		}
		wg.Wait()
		return codes
	}
	start := time.Now()
	// Ten at once: two from the bucket, eight over the next second.
	codes := burst(10)
	took := time.Since(start)
	if codes[200] != 10 {
		t.Fatalf("want every request of a burst within the pace wait answered: %v", codes)
	}
	arr := e.stats("eastus").AcceptedArrivalsNS
	if len(arr) < 10 {
		t.Fatalf("the provider accepted %d requests", len(arr))
	}
	spread := time.Duration(arr[len(arr)-1] - arr[len(arr)-10])
	t.Logf("10 requests at once through a bucket of 2 refilling 8/s: %v in %v, arrivals at the provider spread over %v", codes, took.Round(time.Millisecond), spread.Round(time.Millisecond))
	if spread < 700*time.Millisecond {
		t.Fatalf("the provider saw the burst within %v; want it paced over about a second", spread)
	}
	if !strings.Contains(e.metricsText(), `sluice_pace_wait_seconds_count{deployment="eastus-chat"}`) {
		t.Fatal("no sluice_pace_wait_seconds series")
	}
	// Thirty at once: more than a second's worth is refused.
	codes = burst(30)
	t.Logf("30 at once: %v", codes)
	if codes[http.StatusTooManyRequests] == 0 || codes[200] < 8 {
		t.Fatalf("want some answered and the rest refused: %v", codes)
	}
	// Nothing stays held once the bursts passed: the token window has
	// recorded every request sent, and holds nothing more.
	now := time.Now().UnixNano()
	sent := int64(10 + codes[200])
	recorded := d.Fade(now).Left[quota.DimTokens][0]
	if used := d.Demand(now).Used.Tokens; recorded != sent*cost || used != recorded {
		t.Fatalf("after %d requests of %d tokens sent the token window recorded %d and counts %d", sent, cost, recorded, used)
	}
}
