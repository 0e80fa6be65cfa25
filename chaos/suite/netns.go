package suite

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Netns is a network namespace joined to this one by a veth pair: a node
// started in it can be cut off from its peers with iptables (Partition)
// and given a slow or lossy link with tc netem (Netem), while everything
// else stays on the host side of the pair.
type Netns struct {
	Name   string
	HostIP string // this namespace's end of the pair
	NsIP   string // the namespace's end
	host   string // veth device names
	peer   string

	mu        sync.Mutex
	rules     [][]string // iptables rules to delete on Heal
	lossRules [][]string // iptables rules of Degrade
	netem     bool       // a qdisc to delete
}

// NetnsSupport says whether namespaces, iptables and tc can be used here,
// and if not, why.
func NetnsSupport() (partition, netem bool, why string) {
	if os.Geteuid() != 0 {
		return false, false, "needs root"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return false, false, "needs " + tool
		}
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return true, false, "needs tc"
	}
	return true, true, ""
}

// NewNetns creates a namespace with a veth pair on a random /24 of
// 10.214.0.0/16. Close removes it.
func NewNetns() (*Netns, error) {
	id := rand.IntN(200) + 20
	n := &Netns{
		Name:   fmt.Sprintf("sluice-chaos-%d", id),
		HostIP: fmt.Sprintf("10.214.%d.1", id),
		NsIP:   fmt.Sprintf("10.214.%d.2", id),
		host:   fmt.Sprintf("slc%dh", id),
		peer:   fmt.Sprintf("slc%dn", id),
	}
	steps := [][]string{
		{"ip", "netns", "add", n.Name},
		{"ip", "link", "add", n.host, "type", "veth", "peer", "name", n.peer},
		{"ip", "link", "set", n.peer, "netns", n.Name},
		{"ip", "addr", "add", n.HostIP + "/24", "dev", n.host},
		{"ip", "link", "set", n.host, "up"},
		{"ip", "netns", "exec", n.Name, "ip", "addr", "add", n.NsIP + "/24", "dev", n.peer},
		{"ip", "netns", "exec", n.Name, "ip", "link", "set", n.peer, "up"},
		{"ip", "netns", "exec", n.Name, "ip", "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			_ = n.Close()
			return nil, err
		}
	}
	return n, nil
}

// NetemWorks reports whether the kernel has the netem qdisc (a module
// not every kernel ships), by adding and removing one.
func (n *Netns) NetemWorks() error {
	if err := n.Netem(time.Millisecond, 0); err != nil {
		return err
	}
	n.ClearNetem()
	return nil
}

func run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// Partition drops gossip and raft traffic between cut (a node in this
// namespace) and others, both ways. API and provider traffic still flows:
// a 1|2 partition of the cluster, not of its clients.
func (n *Netns) Partition(others []*Node, cut *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.rules) > 0 {
		return errors.New("partition: already partitioned")
	}
	var theirs []string
	for _, o := range others {
		theirs = append(theirs, port(o.Gossip), port(o.Raft))
	}
	mine := []string{port(cut.Gossip), port(cut.Raft)}
	for _, proto := range []string{"tcp", "udp"} {
		n.rules = append(n.rules,
			[]string{"INPUT", "-s", n.NsIP, "-p", proto, "-m", "multiport", "--dports", strings.Join(theirs, ","), "-j", "DROP"},
			[]string{"OUTPUT", "-d", n.NsIP, "-p", proto, "-m", "multiport", "--dports", strings.Join(mine, ","), "-j", "DROP"})
	}
	for _, r := range n.rules {
		if err := run(append([]string{"iptables", "-I"}, r...)...); err != nil {
			n.healLocked()
			return err
		}
	}
	return nil
}

// Heal removes the partition's rules.
func (n *Netns) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.healLocked()
}

func (n *Netns) healLocked() {
	for _, r := range n.rules {
		_ = exec.Command("iptables", append([]string{"-D"}, r...)...).Run()
	}
	n.rules = nil
}

// Netem delays and drops packets leaving the namespace (every link of a
// node in it: peers, provider and clients).
func (n *Netns) Netem(delay time.Duration, lossPct float64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	err := run("ip", "netns", "exec", n.Name, "tc", "qdisc", "replace", "dev", n.peer, "root", "netem",
		"delay", fmt.Sprintf("%dms", delay.Milliseconds()), fmt.Sprintf("%dms", delay.Milliseconds()/4),
		"loss", fmt.Sprintf("%g%%", lossPct))
	if err == nil {
		n.netem = true
	}
	return err
}

// Degrade is the fallback where the kernel has no netem: a token bucket
// slows the namespace's outgoing link to rate, and iptables drops lossPct
// of the packets both ways at random.
func (n *Netns) Degrade(rateKbit int, lossPct float64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := run("ip", "netns", "exec", n.Name, "tc", "qdisc", "replace", "dev", n.peer, "root", "tbf",
		"rate", fmt.Sprintf("%dkbit", rateKbit), "burst", "32kbit", "latency", "400ms"); err != nil {
		return err
	}
	n.netem = true
	p := fmt.Sprintf("%g", lossPct/100)
	n.lossRules = [][]string{
		{"INPUT", "-s", n.NsIP, "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"},
		{"OUTPUT", "-d", n.NsIP, "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"},
	}
	for _, r := range n.lossRules {
		if err := run(append([]string{"iptables", "-I"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// ClearNetem removes the netem or fallback qdisc and loss rules.
func (n *Netns) ClearNetem() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.netem {
		_ = exec.Command("ip", "netns", "exec", n.Name, "tc", "qdisc", "del", "dev", n.peer, "root").Run()
		n.netem = false
	}
	for _, r := range n.lossRules {
		_ = exec.Command("iptables", append([]string{"-D"}, r...)...).Run()
	}
	n.lossRules = nil
}

// Close heals, clears netem and deletes the pair and the namespace. It
// is idempotent.
func (n *Netns) Close() error {
	n.Heal()
	n.ClearNetem()
	_ = exec.Command("ip", "link", "del", n.host).Run()
	_ = exec.Command("ip", "netns", "del", n.Name).Run()
	return nil
}
