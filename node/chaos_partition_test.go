package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/quota"
)

// TestChaosPartition cuts one of three real nodes off from its peers
// while it can still reach the provider and its clients (a 1|2
// partition): node 3 runs in its own network namespace behind a veth
// pair, and iptables drops the gossip and raft traffic between it and the
// others. The cut-off node must stop admitting for the deployment once
// its lease and grace ran out, the majority must take the budget over,
// and the mock's windows must stay within the limits throughout.
//
// It needs root, ip and iptables; it runs with make chaos-quota.
func TestChaosPartition(t *testing.T) {
	if os.Getenv("SLUICE_CHAOS_QUOTA") == "" {
		t.Skip("set SLUICE_CHAOS_QUOTA=<duration> (make chaos-quota) to run")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and iptables")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	net3 := newNetns(t)

	const rpm, tpm = 3000, 3_000_000 // 50 requests/s
	region, err := mock.NewRegion(mock.RegionConfig{Name: "eastus", APIKey: "chaos-key",
		Deployments: []mock.DeploymentConfig{{Name: "gpt-4o-mini", RPM: rpm, TPM: tpm}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(net3.hostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(region)
	up.Listener.Close()
	up.Listener = ln
	up.Start()
	defer up.Close()
	defer region.Close()

	c := newProcCluster(t)
	ns := []*procNode{c.addNode("p1", 3), c.addNode("p2", 3), c.addNode("p3", 3)}
	for _, n := range ns[:2] {
		n.gossip, n.raftAddr, n.admin, n.api = c.freeAddrOn(net3.hostIP), c.freeAddrOn(net3.hostIP), c.freeAddrOn(net3.hostIP), c.freeAddrOn(net3.hostIP)
	}
	// Inside the fresh namespace nothing listens: any port is free.
	p3 := ns[2]
	base := 20000 + rand.IntN(20000)
	p3.netns = net3.name
	p3.gossip, p3.raftAddr, p3.admin, p3.api = net3.addr(base), net3.addr(base+1), net3.addr(base+2), net3.addr(base+3)
	p3.client.Addr = p3.admin
	for _, n := range ns[:2] {
		n.client.Addr = n.admin
	}
	c.startServing(ns, up.URL, "CHAOS_PROVIDER_KEY", "chaos-key", rpm, tpm)
	region.Reset()

	// 1.5x the budget, a third through each node, no failover: what node
	// 3 admits is what its clients get.
	allowR := quota.Allowance(rpm, time.Second)
	var okByNode [3]atomic.Int64
	type sample struct {
		at   time.Duration
		node int
	}
	var mu sync.Mutex
	var oks []sample
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			openLoop(ctx, float64(allowR)*1.5/3, &wg, func(int) {
				if code, err := chatWith(client, n.api, "sk-chaos"); err == nil && code == 200 {
					okByNode[i].Add(1)
					mu.Lock()
					oks = append(oks, sample{time.Since(start), i})
					mu.Unlock()
				}
			})
		}()
	}
	majority := func() int64 { return shareOf(ns[0].api) + shareOf(ns[1].api) }
	// Every node holds a real part of the budget (a third of the demand
	// goes through each) before the cut, so the cut takes something away.
	c.eventually(15*time.Second, "shares on every node", func() error {
		for _, n := range ns {
			if s := shareOf(n.api); s < allowR/5 {
				return fmt.Errorf("%s holds %d of %d", n.id, s, allowR)
			}
		}
		return nil
	})
	before := shareOf(p3.api)

	cut := time.Since(start)
	net3.partition(t, ns[:2], p3)
	var took time.Duration
	c.eventually(20*time.Second, "the majority to hold 90% of the budget", func() error {
		if m := majority(); m < allowR*90/100 {
			return fmt.Errorf("majority holds %d of %d", m, allowR)
		}
		took = time.Since(start) - cut
		return nil
	})
	// Let the cut-off node's lease and grace surely end, then count.
	q := state.DefaultQuotaSettings()
	settle := q.Lease.D() + q.Grace.D() + q.ClockMargin.D() + q.Interval.D()
	c.eventually(settle+5*time.Second, "the lease of the cut-off node to run out", func() error {
		if time.Since(start)-cut < settle {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	after := okByNode[2].Load()
	c.eventually(10*time.Second, "a few seconds of load with node 3 cut off", func() error {
		if d := time.Since(start) - cut; d < settle+5*time.Second {
			return fmt.Errorf("%v", d)
		}
		return nil
	})
	lateOK := okByNode[2].Load() - after
	net3.heal(t)
	cancel()
	wg.Wait()

	// Node 3's admissions per second after the cut.
	var perSec []int
	mu.Lock()
	for _, s := range oks {
		if s.node != 2 || s.at < cut {
			continue
		}
		sec := int((s.at - cut) / time.Second)
		for len(perSec) <= sec {
			perSec = append(perSec, 0)
		}
		perSec[sec]++
	}
	mu.Unlock()
	st := region.Stats().Deployments["gpt-4o-mini"]
	winR := quota.Allowance(rpm, time.Second)
	t.Logf("node 3 held %d of %d requests per window before the cut; after it, node 3 admitted per second %v", before, allowR, perSec)
	t.Logf("the majority held 90%% of the budget %v after the cut; node 3 admitted %d requests from %v after the cut on",
		took.Round(time.Millisecond), lateOK, settle)
	t.Logf("mock: %d accepted, %d answered 429; worst 1 s window %d/%d", st.Accepted, st.Rejected429, st.RPMWindows.MaxRequests, winR)
	if lateOK != 0 {
		t.Errorf("the cut-off node admitted %d requests after its lease and grace ended", lateOK)
	}
	if st.RPMWindows.MaxRequests > winR {
		t.Errorf("a 1 s window saw %d requests > %d", st.RPMWindows.MaxRequests, winR)
	}
	if took > 8*time.Second {
		t.Errorf("the majority needed %v to hold 90%% of the budget", took)
	}
}

// shareOf reads a node's share of deployment east (requests per window)
// from its /metrics; 0 when unreadable.
func shareOf(api string) int64 {
	requests, _ := sharesOf(api)
	return requests
}

// netns is a network namespace joined to this one by a veth pair.
type netns struct {
	name, hostIP, nsIP string
	rules              [][]string // iptables rules to delete on heal
}

func (n *netns) addr(port int) string { return net.JoinHostPort(n.nsIP, strconv.Itoa(port)) }

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	id := rand.IntN(200) + 20
	n := &netns{
		name:   fmt.Sprintf("sluice-part-%d", id),
		hostIP: fmt.Sprintf("10.213.%d.1", id),
		nsIP:   fmt.Sprintf("10.213.%d.2", id),
	}
	host, peer := fmt.Sprintf("slp%dh", id), fmt.Sprintf("slp%dn", id)
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		n.heal(t)
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", n.name).Run()
	})
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	run(t, "ip", "link", "set", peer, "netns", n.name)
	run(t, "ip", "addr", "add", n.hostIP+"/24", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "netns", "exec", n.name, "ip", "addr", "add", n.nsIP+"/24", "dev", peer)
	run(t, "ip", "netns", "exec", n.name, "ip", "link", "set", peer, "up")
	run(t, "ip", "netns", "exec", n.name, "ip", "link", "set", "lo", "up")
	return n
}

// partition drops gossip and raft traffic between cut and the others in
// both directions; API and provider traffic still flows.
func (n *netns) partition(t *testing.T, others []*procNode, cut *procNode) {
	t.Helper()
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	var theirs []string
	for _, o := range others {
		theirs = append(theirs, port(o.gossip), port(o.raftAddr))
	}
	mine := []string{port(cut.gossip), port(cut.raftAddr)}
	for _, proto := range []string{"tcp", "udp"} {
		n.rules = append(n.rules,
			[]string{"INPUT", "-s", n.nsIP, "-p", proto, "-m", "multiport", "--dports", strings.Join(theirs, ","), "-j", "DROP"},
			[]string{"OUTPUT", "-d", n.nsIP, "-p", proto, "-m", "multiport", "--dports", strings.Join(mine, ","), "-j", "DROP"})
	}
	for _, r := range n.rules {
		run(t, append([]string{"iptables", "-I"}, r...)...)
	}
}

// heal removes the partition's rules.
func (n *netns) heal(t *testing.T) {
	for _, r := range n.rules {
		_ = exec.Command("iptables", append([]string{"-D"}, r...)...).Run()
	}
	n.rules = nil
}
