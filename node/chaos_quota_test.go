package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/quota"
)

// TestChaosQuota is the quota acceptance run on real processes: three
// sluice agents in front of one mock deployment, offered 1.5x its request
// budget split 70/20/10 across the nodes by open-loop clients that fail
// over to the next node on connection errors (as a DNS-fronted client
// would). The first half runs calm; in the second half a node is
// SIGKILLed every 20 s and restarted 5 s later. The mock's own window
// counts are the judge: every 1 s and 10 s window within the limits, every
// minute within 1.01x, upstream 429s at most 0.1% of requests. It prints
// utilisation for both halves.
//
// It runs for SLUICE_CHAOS_QUOTA (a duration, e.g. 2m); `make chaos-quota`
// sets it. Without it the test is skipped.
func TestChaosQuota(t *testing.T) {
	d := os.Getenv("SLUICE_CHAOS_QUOTA")
	if d == "" {
		t.Skip("set SLUICE_CHAOS_QUOTA=<duration> (make chaos-quota) to run")
	}
	total, err := time.ParseDuration(d)
	if err != nil || total < 40*time.Second {
		t.Fatalf("SLUICE_CHAOS_QUOTA=%q: want a duration of at least 40s", d)
	}
	const rpm, tpm = 3000, 3_000_000 // 50 requests/s; tokens are not the bound
	region, up := mockUpstream(t, "chaos-key", rpm, tpm)

	c := newProcCluster(t)
	ids := []string{"q1", "q2", "q3"}
	ns := make([]*procNode, len(ids))
	for i, id := range ids {
		ns[i] = c.addNode(id, len(ids))
		ns[i].api = c.freeAddr()
	}
	c.startServing(ns, up.URL, "CHAOS_PROVIDER_KEY", "chaos-key", rpm, tpm)
	region.Reset()

	allowR := quota.Allowance(rpm, time.Second)
	offered := float64(allowR) * 1.5
	split := []float64{0.7, 0.2, 0.1}
	var answered, failed, noNode atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	for i := range ns {
		wg.Add(1)
		go func(home int) {
			defer wg.Done()
			openLoop(ctx, offered*split[home], &wg, func(int) {
				// Fail over to the next node on a connection error.
				for k := range ns {
					code, err := chatWith(client, ns[(home+k)%len(ns)].api, "sk-chaos")
					if err != nil {
						continue
					}
					if code == 200 {
						answered.Add(1)
					} else {
						failed.Add(1)
					}
					return
				}
				noNode.Add(1)
			})
		}(i)
	}

	// The run's timeline: a calm half, then a SIGKILL every 20 s with a
	// restart 5 s later, each step at its time on the clock.
	half := total / 2
	calmStart := time.Now()
	calmEnd := calmStart.Add(half)
	deadline := calmEnd.Add(half)
	var kills []time.Time
	for k := 0; !calmEnd.Add(time.Duration(k)*20*time.Second + 20*time.Second).After(deadline); k++ {
		killAt := calmEnd.Add(time.Duration(k)*20*time.Second + 5*time.Second)
		victim := ns[k%len(ns)]
		at(killAt)
		c.kill(victim)
		kills = append(kills, time.Now())
		at(killAt.Add(5 * time.Second))
		c.start(victim)
	}
	at(deadline)
	cancel()
	wg.Wait()

	st := region.Stats().Deployments["gpt-4o-mini"]
	winR, winT := quota.Allowance(rpm, time.Second), quota.Allowance(tpm, 10*time.Second)
	util := func(from, to time.Time) float64 {
		var n int64
		for _, a := range st.AcceptedArrivalsNS {
			if a >= from.UnixNano() && a < to.UnixNano() {
				n++
			}
		}
		return float64(n) / (to.Sub(from).Seconds() * float64(rpm) / 60)
	}
	warm := 5 * time.Second
	uCalm := util(calmStart.Add(warm), calmEnd)
	uKill := util(calmEnd, deadline)
	var worstMinute int64
	for _, w := range st.MinuteWindows.Windows {
		worstMinute = max(worstMinute, w.Requests)
	}
	rate429 := float64(st.Rejected429) / float64(max(st.Requests, 1))
	t.Logf("offered %.0f requests/s (1.5x the budget of %d/s) for %v; %d kills", offered, allowR, total, len(kills))
	t.Logf("clients: %d answered 200, %d refused or failed, %d found no node", answered.Load(), failed.Load(), noNode.Load())
	t.Logf("mock: %d requests, %d accepted, %d answered 429 (%.3f%%)", st.Requests, st.Accepted, st.Rejected429, 100*rate429)
	t.Logf("worst 1 s window %d/%d requests, worst 10 s window %d/%d tokens, worst minute %d/%d requests (%.3fx)",
		st.RPMWindows.MaxRequests, winR, st.TPMWindows.MaxTokens, winT, worstMinute, rpm, float64(worstMinute)/rpm)
	t.Logf("utilisation of the request budget: %.1f%% calm, %.1f%% with kills", 100*uCalm, 100*uKill)
	var errs []string
	if st.RPMWindows.MaxRequests > winR {
		errs = append(errs, fmt.Sprintf("a 1 s window saw %d requests > %d", st.RPMWindows.MaxRequests, winR))
	}
	if st.TPMWindows.MaxTokens > winT {
		errs = append(errs, fmt.Sprintf("a 10 s window saw %d tokens > %d", st.TPMWindows.MaxTokens, winT))
	}
	if float64(worstMinute) > 1.01*rpm {
		errs = append(errs, fmt.Sprintf("a minute saw %d requests > 1.01 x %d", worstMinute, rpm))
	}
	if rate429 > 0.001 {
		errs = append(errs, fmt.Sprintf("upstream 429s %.3f%% > 0.1%%", 100*rate429))
	}
	if len(errs) > 0 {
		t.Fatal(errors.New(strings.Join(errs, "; ")))
	}
}

// at blocks until the run's timeline reaches t.
func at(t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	<-timer.C
}

func chatOnce(addr string) int {
	code, err := chatWith(http.DefaultClient, addr, "sk-chaos")
	if err != nil {
		return 0
	}
	return code
}
