package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/quota/ledger"
)

// TestLedgerKillReplay: three sluice processes; requests at about 200/s go
// through one follower, which is SIGKILLed mid-load and restarted from the
// same data directory. Its usage journal brings back what it held in
// memory, so the replicated ledger ends equal to the mock provider's own
// totals, short only of requests in flight at the kill (the client saw
// the connection break), and never above them (nothing counted twice).
func TestLedgerKillReplay(t *testing.T) {
	region, up := mockUpstream(t, "ledger-kill-key", 0, 0)

	c := newProcCluster(t)
	ns := make([]*procNode, 3)
	for i, id := range []string{"l1", "l2", "l3"} {
		ns[i] = c.addNode(id, len(ns))
		ns[i].api = c.freeAddr() // the same API address after the restart
	}
	leader := c.startServing(ns, up.URL, "LEDGER_KILL_PROVIDER_KEY", "ledger-kill-key", 0, 0)
	// The victim is a follower; totals are read from another node.
	var victim, reader *procNode
	for _, n := range ns {
		if n.id != leader && victim == nil {
			victim = n
		} else if reader == nil {
			reader = n
		}
	}

	// ledgerVsMock compares what the ledger counted as answered with what
	// the mock completed: the ledger must not be above it, and at most
	// missing requests below.
	type totals struct{ requests, tokens int64 }
	mockTotals := func() totals {
		st := region.Stats().Deployments["gpt-4o-mini"]
		return totals{st.Completed, st.PromptTokens + st.CompletionTokens}
	}
	ledgerTotals := func() (totals, error) {
		r, err := call(2*time.Second, func(ctx context.Context) (*admin.UsageReport, error) {
			return reader.client.Usage(ctx, admin.UsageQuery{GroupBy: []string{"tenant"}})
		})
		if err != nil {
			return totals{}, err
		}
		return answered(r.Total), nil
	}
	c.eventually(15*time.Second, "the ledger equal to the mock before the load", func() error {
		l, err := ledgerTotals()
		if err != nil {
			return err
		}
		if m := mockTotals(); l != m {
			return fmt.Errorf("ledger %+v, mock %+v", l, m)
		}
		return nil
	})
	base := mockTotals()
	perRequest := base.tokens/base.requests + 1 // every request is the same prompt; completions vary by a token or so

	// The load: 200 requests/s to the victim only. A connection refused
	// never reached it; any other transport error may have been in flight.
	var ok, refused, inFlight, other atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		openLoop(ctx, 200, &wg, func(int) {
			code, err := chatWith(client, victim.api, "sk-chaos")
			switch {
			case errors.Is(err, syscall.ECONNREFUSED):
				refused.Add(1)
			case err != nil:
				inFlight.Add(1)
			case code == 200:
				ok.Add(1)
			default:
				other.Add(1) // 503 while the restarted node catches up
			}
		})
	}()
	c.eventually(10*time.Second, "load before the kill", func() error {
		if n := ok.Load(); n < 300 {
			return fmt.Errorf("%d answered", n)
		}
		return nil
	})
	c.kill(victim)
	okAtKill := ok.Load()
	c.start(victim)
	c.eventually(30*time.Second, "load after the restart", func() error {
		if n := ok.Load(); n < okAtKill+200 {
			return fmt.Errorf("%d answered since the restart", n-okAtKill)
		}
		return nil
	})
	cancel()
	wg.Wait()

	// Converged: the victim's journal is empty (everything it held was
	// applied) and the ledger is within the in-flight requests of the mock.
	journal := filepath.Join(victim.dataDir, "usage-ledger.journal")
	var last string
	err := c.poll(20*time.Second, 50*time.Millisecond, func() error {
		if fi, err := os.Stat(journal); err != nil || fi.Size() != 0 {
			return fmt.Errorf("victim's journal not empty: %v", err)
		}
		l, err := ledgerTotals()
		if err != nil {
			return err
		}
		m := mockTotals()
		miss := totals{m.requests - l.requests, m.tokens - l.tokens}
		last = fmt.Sprintf("ledger %+v, mock %+v, missing %+v, in flight at the kill %d", l, m, miss, inFlight.Load())
		if miss.requests < 0 || miss.tokens < 0 || miss.requests > inFlight.Load() || miss.tokens > inFlight.Load()*perRequest {
			return errors.New(last)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	replayedRecs, replayedBatches := metricOf(t, victim.api, "sluice_ledger_journal_replayed_records_total"), metricOf(t, victim.api, "sluice_ledger_journal_replayed_batches_total")
	t.Logf("%d answered, %d refused while down, %d broken in flight, %d other answers; victim replayed %s records and %s batches",
		ok.Load(), refused.Load(), inFlight.Load(), other.Load(), replayedRecs, replayedBatches)
	t.Logf("%s", last)
	if replayedRecs == "0" && replayedBatches == "0" {
		t.Error("the restarted node replayed nothing: the kill did not exercise the journal")
	}
}

// answered is what the ledger counted for requests answered without an
// error, the mock's Completed.
func answered(c ledger.Counts) (t struct{ requests, tokens int64 }) {
	t.requests, t.tokens = c.Requests-c.Errors, c.PromptTokens+c.CompletionTokens
	return t
}

// metricOf reads one metric from a process's /metrics.
func metricOf(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}
