package admin

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/cluster"
)

// DeploymentState is one deployment as one node's request path sees it:
// its configuration, its live health and the node's share of its quota.
// It carries names and numbers only, never a credential or an endpoint.
//
// The node fills it from the router, which cannot import this package; the
// router's status type has the same fields, so the node converts one to
// the other directly and a field added to one side alone does not compile.
type DeploymentState struct {
	Name         string `json:"name"`
	Provider     string `json:"provider"`
	ProviderKind string `json:"provider_kind"`
	Region       string `json:"region,omitempty"`
	// TPM and RPM are the configured quota (0: unlimited).
	TPM int64 `json:"tpm"`
	RPM int64 `json:"rpm"`
	// State is healthy, cooling, circuit_open, probing or unusable;
	// Circuit is closed, open or half-open.
	State   string `json:"state"`
	Circuit string `json:"circuit"`
	// CoolingSeconds is how long the deployment still honours a
	// provider's retry-after.
	CoolingSeconds float64 `json:"cooling_seconds"`
	// LatencyMS is the balancer's peak-EWMA latency (0: not measured yet).
	LatencyMS float64 `json:"latency_ms"`
	// InFlight counts upstream calls running now on the node.
	InFlight int64 `json:"in_flight"`
	// ShareRequests and ShareTokens are the node's allowances per window
	// (-1: unlimited); UsedRequests and UsedTokens what it charged in the
	// windows ending now.
	ShareRequests int64 `json:"share_requests"`
	ShareTokens   int64 `json:"share_tokens"`
	UsedRequests  int64 `json:"used_requests"`
	UsedTokens    int64 `json:"used_tokens"`
	// The lengths of the windows the shares apply to.
	RequestWindowSeconds float64 `json:"request_window_seconds"`
	TokenWindowSeconds   float64 `json:"token_window_seconds"`
}

// DeploymentStatus reports the deployments' state on this node. The node
// passes one in Config; GET /admin/v1/deployments/status answers 501
// without it.
type DeploymentStatus interface {
	DeploymentStatus() []DeploymentState
}

// DeploymentStatusFunc adapts a function to DeploymentStatus.
type DeploymentStatusFunc func() []DeploymentState

// DeploymentStatus calls f.
func (f DeploymentStatusFunc) DeploymentStatus() []DeploymentState { return f() }

// NodeDeployments is one node's answer within DeploymentsStatus. Error is
// set, and Deployments empty, when a peer could not be asked.
type NodeDeployments struct {
	Node        string            `json:"node"`
	At          time.Time         `json:"at,omitzero"`
	Deployments []DeploymentState `json:"deployments"`
	Error       string            `json:"error,omitempty"`
}

// DeploymentsStatus is the answer to GET /admin/v1/deployments/status:
// this node's view, or with ?all=1 every live member's, this node first.
type DeploymentsStatus struct {
	Nodes []NodeDeployments `json:"nodes"`
}

// peerStatusTimeout bounds asking one peer for its status.
const peerStatusTimeout = 3 * time.Second

// deploymentStatus answers GET /admin/v1/deployments/status.
//
// With ?all=1 it also asks every other live member's admin API (the
// address it announced in gossip) with the caller's own bearer token, in
// parallel, each bounded by peerStatusTimeout. A peer that cannot be asked
// is listed with an error instead of failing the whole answer. Only
// members of a gossip pool the node trusts are asked: run gossip with its
// encryption key, or a stranger that joins could receive the token.
func (s *Server) deploymentStatus(c echo.Context) error {
	if s.cfg.Deployments == nil {
		return newError(http.StatusNotImplemented, CodeNotImplemented, "this node was started without a deployment status source")
	}
	all := false
	if v := c.QueryParam("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return invalidField("all", "must be true or false (or 1 or 0)")
		}
		all = b
	}
	self := s.localDeployments()
	out := DeploymentsStatus{Nodes: []NodeDeployments{self}}
	if all {
		ctx, cancel := s.ctx(c)
		defer cancel()
		out.Nodes = append(out.Nodes, s.peerDeployments(ctx, bearerToken(c.Request()), self.Node)...)
	}
	return c.JSON(http.StatusOK, out)
}

// localDeployments is this node's entry.
func (s *Server) localDeployments() NodeDeployments {
	st := s.store.Status()
	deps := s.cfg.Deployments.DeploymentStatus()
	if deps == nil {
		deps = []DeploymentState{}
	}
	return NodeDeployments{Node: st.ID, At: time.Now().UTC(), Deployments: deps}
}

// peerDeployments asks every other live member with an admin address.
func (s *Server) peerDeployments(ctx context.Context, token, self string) []NodeDeployments {
	var peers []cluster.Member
	for _, m := range s.store.Members() {
		if m.ID != self && m.AdminAddr != "" && (m.State == cluster.StateAlive || m.State == cluster.StateSuspect) {
			peers = append(peers, m)
		}
	}
	slices.SortFunc(peers, func(a, b cluster.Member) int { return strings.Compare(a.ID, b.ID) })
	out := make([]NodeDeployments, len(peers))
	// Its own transport without keep-alive: an occasional fan-out leaves
	// no idle connection behind, and goes to peers directly, never through
	// an HTTP proxy from the environment.
	hc := &http.Client{Timeout: peerStatusTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	for i, m := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = askPeer(ctx, &Client{Addr: m.AdminAddr, Token: token, HTTP: hc}, m.ID)
		}()
	}
	wg.Wait()
	return out
}

// askPeer returns the peer's own entry, or an entry naming the failure.
// The message is the client's error: a status, a code and the peer's
// message, or a transport error naming the address; never the token.
func askPeer(ctx context.Context, c *Client, id string) NodeDeployments {
	ctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	res, err := c.DeploymentStatus(ctx, false)
	switch {
	case err != nil:
		return NodeDeployments{Node: id, Deployments: []DeploymentState{}, Error: err.Error()}
	case len(res.Nodes) == 0:
		return NodeDeployments{Node: id, Deployments: []DeploymentState{}, Error: "empty answer"}
	}
	n := res.Nodes[0]
	if n.Node == "" {
		n.Node = id
	}
	return n
}

// bearerToken returns the request's bearer token (authenticate checked it).
func bearerToken(r *http.Request) string {
	_, tok, _ := strings.Cut(r.Header.Get(echo.HeaderAuthorization), " ")
	return strings.TrimSpace(tok)
}

// DeploymentStatus returns GET /admin/v1/deployments/status; all asks
// every live member as well.
func (c *Client) DeploymentStatus(ctx context.Context, all bool) (*DeploymentsStatus, error) {
	var q url.Values
	if all {
		q = url.Values{"all": {"1"}}
	}
	var out DeploymentsStatus
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/deployments/status", q, nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}
