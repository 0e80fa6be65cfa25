package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// kind describes one list of the configuration, so that list, get,
// create, update and delete are written once for all six.
type kind[T any] struct {
	path  string // URL segment, e.g. "deployments"
	noun  string // for messages, e.g. "deployment"
	field string // the key field, "name" or "id"
	items func(*state.Config) []T
	id    func(*T) string
	setID func(*T, string)
	// view is what responses show (providers mask their secret, keys
	// never show the hash); nil shows the item as stored.
	view func(*T) any
	// decode reads a request body; nil means the kind registers its own
	// POST and PUT (keys).
	decode func(s *Server, body []byte) (T, error)
	// prepare, when set, runs after the name is known and before the write
	// (providers resolve their secret there).
	prepare func(s *Server, ctx context.Context, item *T) error
	upsert  func(fsm.Header, fsm.Mode, T) fsm.Command
	remove  func(fsm.Header, string) fsm.Command
}

var (
	providerKind = &kind[state.Provider]{
		path: "providers", noun: "provider", field: "name",
		items:   func(c *state.Config) []state.Provider { return c.Providers },
		id:      func(p *state.Provider) string { return p.Name },
		setID:   func(p *state.Provider, n string) { p.Name = n },
		view:    func(p *state.Provider) any { return maskProvider(*p) },
		decode:  decodeProvider,
		prepare: prepareProvider,
		upsert: func(h fsm.Header, m fsm.Mode, p state.Provider) fsm.Command {
			return &fsm.UpsertProvider{Header: h, Mode: m, Provider: p}
		},
		remove: func(h fsm.Header, n string) fsm.Command { return &fsm.DeleteProvider{Header: h, Name: n} },
	}
	deploymentKind = &kind[state.Deployment]{
		path: "deployments", noun: "deployment", field: "name",
		items:  func(c *state.Config) []state.Deployment { return c.Deployments },
		id:     func(d *state.Deployment) string { return d.Name },
		setID:  func(d *state.Deployment, n string) { d.Name = n },
		decode: decodeStrict[state.Deployment],
		upsert: func(h fsm.Header, m fsm.Mode, d state.Deployment) fsm.Command {
			return &fsm.UpsertDeployment{Header: h, Mode: m, Deployment: d}
		},
		remove: func(h fsm.Header, n string) fsm.Command { return &fsm.DeleteDeployment{Header: h, Name: n} },
	}
	modelKind = &kind[state.Model]{
		path: "models", noun: "model", field: "name",
		items:  func(c *state.Config) []state.Model { return c.Models },
		id:     func(m *state.Model) string { return m.Name },
		setID:  func(m *state.Model, n string) { m.Name = n },
		decode: decodeStrict[state.Model],
		upsert: func(h fsm.Header, m fsm.Mode, x state.Model) fsm.Command {
			return &fsm.UpsertModel{Header: h, Mode: m, Model: x}
		},
		remove: func(h fsm.Header, n string) fsm.Command { return &fsm.DeleteModel{Header: h, Name: n} },
	}
	tenantKind = &kind[state.Tenant]{
		path: "tenants", noun: "tenant", field: "name",
		items:  func(c *state.Config) []state.Tenant { return c.Tenants },
		id:     func(t *state.Tenant) string { return t.Name },
		setID:  func(t *state.Tenant, n string) { t.Name = n },
		decode: decodeStrict[state.Tenant],
		upsert: func(h fsm.Header, m fsm.Mode, t state.Tenant) fsm.Command {
			return &fsm.UpsertTenant{Header: h, Mode: m, Tenant: t}
		},
		remove: func(h fsm.Header, n string) fsm.Command { return &fsm.DeleteTenant{Header: h, Name: n} },
	}
	policyKind = &kind[state.Policy]{
		path: "policies", noun: "policy", field: "name",
		items:  func(c *state.Config) []state.Policy { return c.Policies },
		id:     func(p *state.Policy) string { return p.Name },
		setID:  func(p *state.Policy, n string) { p.Name = n },
		decode: decodeStrict[state.Policy],
		upsert: func(h fsm.Header, m fsm.Mode, p state.Policy) fsm.Command {
			return &fsm.UpsertPolicy{Header: h, Mode: m, Policy: p}
		},
		remove: func(h fsm.Header, n string) fsm.Command { return &fsm.DeletePolicy{Header: h, Name: n} },
	}
	// keyKind has its own POST (generate) and PUT (keep the hash): see keys.go.
	keyKind = &kind[state.Key]{
		path: "keys", noun: "key", field: "id",
		items: func(c *state.Config) []state.Key { return c.Keys },
		id:    func(k *state.Key) string { return k.ID },
		setID: func(k *state.Key, id string) { k.ID = id },
		view:  func(k *state.Key) any { return keyInfo(*k) },
		upsert: func(h fsm.Header, m fsm.Mode, k state.Key) fsm.Command {
			return &fsm.UpsertKey{Header: h, Mode: m, Key: k}
		},
		remove: func(h fsm.Header, id string) fsm.Command { return &fsm.DeleteKey{Header: h, ID: id} },
	}
)

// resourceRoutes returns the routes of one kind.
func resourceRoutes[T any](s *Server, k *kind[T]) []route {
	base := apiPrefix + "/" + k.path
	rs := []route{
		{http.MethodGet, base, RoleRead, 0, func(c echo.Context) error { return listItems(s, c, k) }},
		{http.MethodGet, base + "/:name", RoleRead, 0, func(c echo.Context) error { return getItem(s, c, k) }},
		{http.MethodDelete, base + "/:name", RoleAdmin, 0, func(c echo.Context) error { return deleteItem(s, c, k) }},
	}
	if k.decode != nil {
		rs = append(rs,
			route{http.MethodPost, base, RoleAdmin, 0, func(c echo.Context) error { return writeItem(s, c, k, fsm.ModeCreate) }},
			route{http.MethodPut, base + "/:name", RoleAdmin, 0, func(c echo.Context) error { return writeItem(s, c, k, fsm.ModeUpsert) }},
		)
	}
	return rs
}

// Page sizes.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func listItems[T any](s *Server, c echo.Context, k *kind[T]) error {
	limit := defaultPageSize
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return invalidField("limit", "must be an integer from 1 to %d", maxPageSize)
		}
		limit = n
	}
	after := c.QueryParam("after")
	snap, err := s.read(c)
	if err != nil {
		return err
	}
	items := slices.Clone(k.items(&snap.Config))
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(k.id(&a), k.id(&b)) })
	start := 0
	if after != "" {
		start, _ = slices.BinarySearchFunc(items, after, func(it T, name string) int { return strings.Compare(k.id(&it), name) })
		if start < len(items) && k.id(&items[start]) == after {
			start++
		}
	}
	end := min(start+limit, len(items))
	out := page{Items: make([]any, 0, end-start)}
	for i := start; i < end; i++ {
		out.Items = append(out.Items, k.show(&items[i]))
	}
	if end < len(items) {
		out.Next = k.id(&items[end-1])
	}
	return c.JSON(http.StatusOK, out)
}

func getItem[T any](s *Server, c echo.Context, k *kind[T]) error {
	name, err := pathName(c)
	if err != nil {
		return err
	}
	snap, err := s.read(c)
	if err != nil {
		return err
	}
	item, ok := k.find(snap, name)
	if !ok {
		return newError(http.StatusNotFound, CodeNotFound, "%s %q not found", k.noun, name)
	}
	return c.JSON(http.StatusOK, k.show(item))
}

func deleteItem[T any](s *Server, c echo.Context, k *kind[T]) error {
	name, err := pathName(c)
	if err != nil {
		return err
	}
	h, err := s.header(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	res, err := s.store.Apply(ctx, k.remove(h, name))
	if err != nil {
		return err
	}
	c.Response().Header().Set(VersionHeader, strconv.FormatUint(res.Index, 10))
	return c.NoContent(http.StatusNoContent)
}

// writeItem creates (POST, ModeCreate: 409 if it exists) or upserts (PUT,
// the name from the path) one item.
func writeItem[T any](s *Server, c echo.Context, k *kind[T], mode fsm.Mode) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	item, err := k.decode(s, body)
	if err != nil {
		return err
	}
	if mode == fsm.ModeCreate {
		if k.id(&item) == "" {
			return invalidField(k.field, "required")
		}
	} else {
		name, err := pathName(c)
		if err != nil {
			return err
		}
		switch k.id(&item) {
		case "":
			k.setID(&item, name)
		case name:
		default:
			return invalidField(k.field, "%q does not match %q in the path", k.id(&item), name)
		}
	}
	h, err := s.header(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if k.prepare != nil {
		if err := k.prepare(s, ctx, &item); err != nil {
			return err
		}
	}
	res, err := s.store.Apply(ctx, k.upsert(h, mode, item))
	if err != nil {
		return err
	}
	return respondWritten(ctx, s, c, k, item, res)
}

// respondWritten answers a write with the item as this node now stores it
// (defaults applied; Apply made the write visible here), 201 when the
// write created it.
func respondWritten[T any](ctx context.Context, s *Server, c echo.Context, k *kind[T], written T, res fsm.Result) error {
	shown := k.show(&written)
	if snap, err := s.store.Read(ctx, false); err == nil {
		if item, ok := k.find(snap, k.id(&written)); ok {
			shown = k.show(item)
		}
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	c.Response().Header().Set(VersionHeader, strconv.FormatUint(res.Index, 10))
	return c.JSON(status, shown)
}

// find returns the item with the given name in snap.
func (k *kind[T]) find(snap *state.Snapshot, name string) (*T, bool) {
	items := k.items(&snap.Config)
	for i := range items {
		if k.id(&items[i]) == name {
			return &items[i], true
		}
	}
	return nil, false
}

// show returns the response form of an item.
func (k *kind[T]) show(item *T) any {
	if k.view != nil {
		return k.view(item)
	}
	return item
}

// read returns the snapshot a read is served from: this node's, or with
// ?consistent=true one that reflects every acknowledged write.
func (s *Server) read(c echo.Context) (*state.Snapshot, error) { return s.readDefault(c, false) }

// readDefault is read with the default of ?consistent given.
func (s *Server) readDefault(c echo.Context, consistent bool) (*state.Snapshot, error) {
	if v := c.QueryParam("consistent"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, invalidField("consistent", "must be true or false")
		}
		consistent = b
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	snap, err := s.store.Read(ctx, consistent)
	if err != nil {
		return nil, err
	}
	c.Response().Header().Set(VersionHeader, strconv.FormatUint(snap.Version, 10))
	return snap, nil
}

// pathName returns the unescaped :name path parameter. Names may contain
// '/', which clients send escaped (%2F).
func pathName(c echo.Context) (string, error) {
	name, err := url.PathUnescape(c.Param("name"))
	if err != nil || name == "" {
		return "", newError(http.StatusBadRequest, CodeInvalid, "bad name in path")
	}
	return name, nil
}

// readBody reads the whole (size-limited) request body.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, decodeError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, decodeError(errEmptyBody)
	}
	return body, nil
}

// decodeStrict decodes one JSON object and refuses unknown fields and
// trailing data, so a misspelt field is an error rather than ignored.
func decodeStrict[T any](_ *Server, body []byte) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, decodeError(err)
	}
	if dec.More() {
		return v, newError(http.StatusBadRequest, CodeInvalid, "body has data after the JSON object")
	}
	return v, nil
}

// parseUint parses a positive decimal integer.
func parseUint(v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err == nil && n == 0 {
		err = strconv.ErrRange
	}
	return n, err
}
