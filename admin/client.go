package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/cluster/fsm"
)

// Client calls a node's admin API; the CLI is built on it. Every method
// returns an *Error (with the HTTP status and the server's message) when
// the server answers with an error.
type Client struct {
	// Addr is the node's admin address: "host:port" or a base URL
	// ("https://host:port").
	Addr string
	// Token is the bearer token sent with every request.
	Token string
	// HTTP is the client used; nil means http.DefaultClient. Bound calls
	// with the context.
	HTTP *http.Client
}

// Kinds of resource, for List, Get, Create, Put and Delete.
const (
	KindProviders   = "providers"
	KindDeployments = "deployments"
	KindModels      = "models"
	KindTenants     = "tenants"
	KindKeys        = "keys"
	KindPolicies    = "policies"
)

// ListOptions select a page of a list.
type ListOptions struct {
	// Limit is the page size (server default 100, at most 1000).
	Limit int
	// After is the name the page starts after (Page.Next of the last page).
	After string
	// Consistent reads through a raft barrier.
	Consistent bool
}

// Health checks that the node's admin API answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil, "", nil)
}

// Status returns the node's raft status, the members it sees and its
// configuration version.
func (c *Client) Status(ctx context.Context) (*ClusterInfo, error) {
	var out ClusterInfo
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/cluster", nil, nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Members returns the gossip members the node sees.
func (c *Client) Members(ctx context.Context) ([]MemberInfo, error) {
	var out []MemberInfo
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/members", nil, nil, "", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Audit returns the replicated audit log, oldest first; limit > 0 keeps
// the newest limit entries.
func (c *Client) Audit(ctx context.Context, limit int) ([]fsm.AuditEntry, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out AuditLog
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/audit", q, nil, "", &out); err != nil {
		return nil, err
	}
	return out.Entries, nil
}

// Apply replaces the whole configuration with doc (YAML or JSON in the
// shape of state.Config). With dryRun nothing is written and the result
// shows what would change.
func (c *Client) Apply(ctx context.Context, doc []byte, dryRun bool) (*ApplyResult, error) {
	q := url.Values{}
	if dryRun {
		q.Set("dry_run", "true")
	}
	var out ApplyResult
	if err := c.do(ctx, http.MethodPost, apiPrefix+"/apply", q, bytes.NewReader(doc), "application/yaml", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateKey creates a virtual key. The plaintext is in the result, and
// nowhere else, ever: keep it.
func (c *Client) CreateKey(ctx context.Context, req KeyRequest) (*CreatedKey, error) {
	var out CreatedKey
	if err := c.send(ctx, http.MethodPost, apiPrefix+"/keys", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListKeys returns every key (following pages).
func (c *Client) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	return ListAll[KeyInfo](ctx, c, KindKeys)
}

// RevokeKey disables a key.
func (c *Client) RevokeKey(ctx context.Context, id string) (*KeyInfo, error) {
	var out KeyInfo
	if err := c.do(ctx, http.MethodPost, apiPrefix+"/keys/"+url.PathEscape(id)+"/revoke", nil, nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns one page of a kind.
func (c *Client) List(ctx context.Context, kind string, opt ListOptions) (*Page, error) {
	q := url.Values{}
	if opt.Limit > 0 {
		q.Set("limit", strconv.Itoa(opt.Limit))
	}
	if opt.After != "" {
		q.Set("after", opt.After)
	}
	if opt.Consistent {
		q.Set("consistent", "true")
	}
	var out Page
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/"+kind, q, nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAll returns every item of a kind, decoded as T (state.Provider,
// KeyInfo, ...), following pages.
func ListAll[T any](ctx context.Context, c *Client, kind string) ([]T, error) {
	var out []T
	opt := ListOptions{Limit: maxPageSize}
	for {
		p, err := c.List(ctx, kind, opt)
		if err != nil {
			return nil, err
		}
		for _, raw := range p.Items {
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, fmt.Errorf("decode %s item: %w", kind, err)
			}
			out = append(out, v)
		}
		if p.Next == "" {
			return out, nil
		}
		opt.After = p.Next
	}
}

// Get reads one item of a kind into out.
func (c *Client) Get(ctx context.Context, kind, name string, out any) error {
	return c.do(ctx, http.MethodGet, apiPrefix+"/"+kind+"/"+url.PathEscape(name), nil, nil, "", out)
}

// Create creates an item (an *Error with status 409 if it exists) and
// reads the stored item into out (may be nil).
func (c *Client) Create(ctx context.Context, kind string, in, out any) error {
	return c.send(ctx, http.MethodPost, apiPrefix+"/"+kind, in, out)
}

// Put creates or replaces the named item and reads the stored item into
// out (may be nil).
func (c *Client) Put(ctx context.Context, kind, name string, in, out any) error {
	return c.send(ctx, http.MethodPut, apiPrefix+"/"+kind+"/"+url.PathEscape(name), in, out)
}

// Delete deletes the named item.
func (c *Client) Delete(ctx context.Context, kind, name string) error {
	return c.do(ctx, http.MethodDelete, apiPrefix+"/"+kind+"/"+url.PathEscape(name), nil, nil, "", nil)
}

// RemovePeer removes a server from the raft configuration.
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, apiPrefix+"/peers/"+url.PathEscape(id), nil, nil, "", nil)
}

// Snapshot writes a backup of the cluster state to w.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) error {
	return c.do(ctx, http.MethodGet, apiPrefix+"/snapshot", nil, nil, "", w)
}

// Restore applies the configuration of a backup made by Snapshot.
func (c *Client) Restore(ctx context.Context, r io.Reader) (*WriteResult, error) {
	var out WriteResult
	if err := c.do(ctx, http.MethodPost, apiPrefix+"/snapshot", nil, r, mimeOctetStream, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Drain asks the node to stop taking new proxied requests.
func (c *Client) Drain(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, apiPrefix+"/drain", nil, nil, "", nil)
}

const mimeOctetStream = "application/octet-stream"

// send encodes in as JSON and calls do.
func (c *Client) send(ctx context.Context, method, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	return c.do(ctx, method, path, nil, bytes.NewReader(b), "application/json", out)
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// do sends one request. out is decoded from JSON, or, when it is an
// io.Writer, receives the raw body.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, out any) error {
	base := strings.TrimRight(c.Addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	switch o := out.(type) {
	case nil:
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	case io.Writer:
		if _, err := io.Copy(o, resp.Body); err != nil {
			return fmt.Errorf("admin client: read %s: %w", path, err)
		}
		return nil
	default:
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("admin client: decode %s: %w", path, err)
		}
		return nil
	}
}

// readError decodes the API's error body; anything else (a proxy's HTML
// page) becomes an Error with the status and the start of the body.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb errorBody
	if err := json.Unmarshal(b, &eb); err == nil && eb.Error != nil {
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Message: msg}
}
