package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// Store is what the admin API needs from the cluster. *cluster.Cluster
// satisfies it; it is declared here, by its consumer, so the API can be
// read (and faked) without the whole cluster surface.
type Store interface {
	// Apply commits a write through raft (forwarded from a follower).
	Apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
	// Read returns the configuration snapshot; consistent waits for a
	// barrier so the result reflects every acknowledged write.
	Read(ctx context.Context, consistent bool) (*state.Snapshot, error)
	// AuditLog returns the replicated audit records, oldest first.
	AuditLog() []fsm.AuditEntry
	// Status and Members describe this node's view of the cluster.
	Status() cluster.Status
	Members() []cluster.Member
	// RemovePeer removes a server from the raft configuration.
	RemovePeer(ctx context.Context, id string) error
	// WriteSnapshot and RestoreSnapshot back up and restore the state.
	WriteSnapshot(w io.Writer) error
	RestoreSnapshot(ctx context.Context, r io.Reader, actor string) (fsm.Result, error)
}

// VersionHeader carries the configuration version a write produced (the
// raft index) or a read was served from.
const VersionHeader = "X-Sluice-Config-Version"

// Server is the admin HTTP API of one node, on its own listener.
type Server struct {
	cfg    Config
	store  Store
	logger *slog.Logger
	echo   *echo.Echo
	tokens []tokenEntry

	mu       sync.Mutex
	started  bool
	shut     bool
	shutErr  error
	ln       net.Listener
	srv      *http.Server
	serveErr chan error // receives Serve's result once; nil before Start
}

// tokenEntry keeps only the SHA-256 of a token: comparing fixed-size
// digests in constant time does not leak the tokens' lengths.
type tokenEntry struct {
	name   string
	role   Role
	digest [32]byte
}

// New checks cfg and returns a server that is not listening yet.
func New(cfg Config, store Store) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalidConfig)
	}
	s := &Server{cfg: cfg, store: store, logger: cfg.Logger.With("component", "admin")}
	for _, t := range cfg.Tokens {
		s.tokens = append(s.tokens, tokenEntry{name: t.Name, role: t.Role, digest: sha256.Sum256([]byte(t.Token))})
	}
	s.echo = s.newEcho()
	return s, nil
}

// Handler returns the API as an http.Handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.echo }

// Start listens on Config.Addr and serves in the background until
// Shutdown. It fails if the address cannot be bound or Start was called
// before.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.shut {
		return errors.New("admin: Start called twice or after Shutdown")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen on %s: %w", s.cfg.Addr, err)
	}
	s.started, s.ln = true, ln
	s.srv = &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: s.cfg.Timeouts.ReadHeader,
		ReadTimeout:       s.cfg.Timeouts.Read,
		WriteTimeout:      s.cfg.Timeouts.Write,
		IdleTimeout:       s.cfg.Timeouts.Idle,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	s.serveErr = make(chan error, 1)
	go func() { s.serveErr <- s.srv.Serve(ln) }()
	s.logger.Info("admin API listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address the server listens on ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops the server: it closes the listener, lets in-flight
// requests finish until ctx ends, then closes what is left and waits for
// the serving goroutine. It is idempotent; later calls return the first
// call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return s.shutErr
	}
	s.shut = true
	if !s.started {
		return nil
	}
	// 1. Stop accepting and wait for in-flight requests (graceful).
	err := s.srv.Shutdown(ctx)
	if err != nil {
		// 2. The deadline passed: cut the remaining connections.
		err = errors.Join(err, s.srv.Close())
	}
	// 3. The serving goroutine returns ErrServerClosed once the listener
	//    is closed; wait for it so nothing outlives Shutdown.
	if serr := <-s.serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	s.shutErr = err
	s.logger.Info("admin API stopped")
	return err
}

// newEcho builds the router. The request log, panic recovery and
// authentication wrap every request (so an unknown path is a 401 before
// it is a 404); each route then checks its role and caps its body.
func (s *Server) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard) // echo's own logger; we log with slog
	e.HTTPErrorHandler = s.renderError
	e.Use(s.logRequests, s.recoverPanics, s.authenticate)
	for _, r := range s.routes() {
		e.Add(r.method, r.path, r.handler, s.authorize(r.role), s.limitBody(r.maxBody))
	}
	return e
}

// route is one endpoint: who may call it and how large its body may be.
type route struct {
	method  string
	path    string
	role    Role  // "" for the open health check
	maxBody int64 // 0 for the default
	handler echo.HandlerFunc
}

// apiPrefix is the versioned root of the API.
const apiPrefix = "/admin/v1"

// routes lists every endpoint in one place.
func (s *Server) routes() []route {
	big := s.cfg.MaxApplyBytes
	rs := []route{
		{method: http.MethodGet, path: "/healthz", handler: s.healthz},

		{http.MethodPost, apiPrefix + "/apply", RoleAdmin, big, s.apply},

		{http.MethodGet, apiPrefix + "/cluster", RoleRead, 0, s.clusterInfo},
		{http.MethodGet, apiPrefix + "/members", RoleRead, 0, s.members},
		{http.MethodGet, apiPrefix + "/audit", RoleRead, 0, s.audit},
		{http.MethodGet, apiPrefix + "/usage", RoleRead, 0, s.usage},
		{http.MethodDelete, apiPrefix + "/peers/:id", RoleAdmin, 0, s.removePeer},
		{http.MethodGet, apiPrefix + "/snapshot", RoleAdmin, 0, s.downloadSnapshot},
		{http.MethodPost, apiPrefix + "/snapshot", RoleAdmin, big, s.restoreSnapshot},
		{http.MethodPost, apiPrefix + "/drain", RoleAdmin, 0, s.drain},
		{http.MethodGet, apiPrefix + "/deployments/status", RoleRead, 0, s.deploymentStatus},

		{http.MethodPost, apiPrefix + "/keys", RoleAdmin, 0, s.createKey},
		{http.MethodPut, apiPrefix + "/keys/:name", RoleAdmin, 0, s.updateKey},
		{http.MethodPost, apiPrefix + "/keys/:name/revoke", RoleAdmin, 0, s.revokeKey},
	}
	rs = append(rs, resourceRoutes(s, providerKind)...)
	rs = append(rs, resourceRoutes(s, deploymentKind)...)
	rs = append(rs, resourceRoutes(s, modelKind)...)
	rs = append(rs, resourceRoutes(s, tenantKind)...)
	rs = append(rs, resourceRoutes(s, keyKind)...)
	rs = append(rs, resourceRoutes(s, policyKind)...)
	rs = append(rs, uiRoutes()...)
	return rs
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// Context keys set by the middleware.
const (
	ctxActor = "admin.actor"
	ctxRole  = "admin.role"
)

// authenticate accepts "Authorization: Bearer <token>" for every path but
// the health check. Every configured token is compared, in constant time
// on SHA-256 digests, whatever matches first.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if publicRoute(c) { // the health check and the static page (ui.go)
			return next(c)
		}
		scheme, tok, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="sluice-admin"`)
			return newError(http.StatusUnauthorized, CodeUnauthorized, "missing bearer token")
		}
		digest := sha256.Sum256([]byte(tok))
		match := -1
		for i := range s.tokens {
			if subtle.ConstantTimeCompare(digest[:], s.tokens[i].digest[:]) == 1 && match < 0 {
				match = i
			}
		}
		if match < 0 {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="sluice-admin", error="invalid_token"`)
			return newError(http.StatusUnauthorized, CodeUnauthorized, "unknown token")
		}
		c.Set(ctxActor, s.tokens[match].name)
		c.Set(ctxRole, s.tokens[match].role)
		return next(c)
	}
}

// authorize refuses a route to a token without the role it needs.
func (s *Server) authorize(need Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if need == RoleAdmin {
				if role, _ := c.Get(ctxRole).(Role); role != RoleAdmin {
					return newError(http.StatusForbidden, CodeForbidden, "token %q may only read", actor(c))
				}
			}
			return next(c)
		}
	}
}

// limitBody caps the request body: a declared length over the limit is
// refused at once, a body that grows past it fails its read with 413.
func (s *Server) limitBody(limit int64) echo.MiddlewareFunc {
	if limit <= 0 {
		limit = s.cfg.MaxBodyBytes
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength > limit {
				return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body is larger than %d bytes", limit)
			}
			r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
			return next(c)
		}
	}
}

// logRequests renders a handler's error and logs one line per request:
// never headers, query values or bodies.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		code := ""
		if err != nil {
			ae := toError(err)
			code = ae.Code
			if ae.Status >= 500 {
				s.logger.Error("admin request failed", "method", c.Request().Method, "route", c.Path(), "error", err)
			}
			c.Error(ae)
		}
		level := slog.LevelInfo
		if c.Path() == "/healthz" {
			level = slog.LevelDebug
		}
		s.logger.Log(c.Request().Context(), level, "admin request",
			"method", c.Request().Method, "path", c.Request().URL.Path, "route", c.Path(),
			"status", c.Response().Status, "code", code, "actor", actor(c),
			"duration", time.Since(start))
		return nil
	}
}

// recoverPanics turns a handler panic into a 500 and a logged stack.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.logger.Error("admin handler panic", "route", c.Path(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = newError(http.StatusInternalServerError, CodeInternal, "internal error")
			}
		}()
		return next(c)
	}
}

// renderError writes any error in the API's JSON shape.
func (s *Server) renderError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae := toError(err)
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(ae.Status)
		return
	}
	if werr := c.JSON(ae.Status, errorBody{Error: ae}); werr != nil {
		s.logger.Debug("write error response", "error", werr)
	}
}

// actor is the name of the token that made the request.
func actor(c echo.Context) string {
	a, _ := c.Get(ctxActor).(string)
	return a
}

// header returns the command header of a write: the actor, the time, and
// the optional ?if_version= precondition.
func (s *Server) header(c echo.Context) (fsm.Header, error) {
	h := fsm.Header{Actor: actor(c), At: time.Now().UTC()}
	if v := c.QueryParam("if_version"); v != "" {
		n, err := parseUint(v)
		if err != nil {
			return h, invalidField("if_version", "must be a positive integer")
		}
		h.IfVersion = n
	}
	return h, nil
}

// ctx returns the request's context bounded by Timeouts.Request.
func (s *Server) ctx(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), s.cfg.Timeouts.Request)
}
