package mock

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// call is one API request being served.
type call struct {
	r          *Region
	w          *statusWriter
	req        *http.Request
	rng        *rand.Rand
	start      time.Time
	op         Kind
	dep        *deployment
	apiVersion string
	// inFlight is set while the request counts in its deployment's
	// in_flight. Every accounting step of a request happens before the last
	// byte of its answer is written, so a client that has read the answer
	// sees final stats.
	inFlight bool
}

// begin counts the request in its deployment and marks it in flight.
func (c *call) begin() {
	c.dep.begin(c.req.Header)
	c.inFlight = true
}

// endFlight takes the request out of in_flight (once).
func (c *call) endFlight() {
	if c.inFlight {
		c.inFlight = false
		c.dep.end()
	}
}

// statusWriter remembers the status for logging. Unwrap lets
// http.ResponseController reach the Flusher and Hijacker underneath.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ServeHTTP serves the region's API and, under /mock/, its control
// endpoints.
func (r *Region) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if strings.HasPrefix(req.URL.Path, "/mock/") {
		r.serveControl(w, req)
		return
	}
	c := &call{r: r, w: &statusWriter{ResponseWriter: w}, req: req, rng: r.requestRand(), start: time.Now()}
	defer func() {
		dep := ""
		if c.dep != nil {
			dep = c.dep.cfg.Name
		}
		r.cfg.Logger.Debug("mock request", "region", r.cfg.Name, "method", req.Method, "path", req.URL.Path,
			"deployment", dep, "status", c.w.status, "elapsed", time.Since(c.start))
	}()
	c.setCommonHeaders()
	switch {
	case r.cfg.Dialect == DialectOpenAI:
		c.serveV1("/v1")
	case strings.HasPrefix(req.URL.Path, "/openai/v1/"):
		// Azure's v1 API: OpenAI-style paths, deployment from "model".
		c.apiVersion = "v1"
		c.serveV1("/openai/v1")
	default:
		c.serveAzure()
	}
}

func (c *call) setCommonHeaders() {
	h := c.w.Header()
	if c.azure() {
		id := newUUID(c.rng)
		h.Set("apim-request-id", id)
		h.Set("x-request-id", id)
		h.Set("x-ms-region", c.r.cfg.Name)
		h.Set("x-content-type-options", "nosniff")
		if v := c.req.Header.Get("x-ms-client-request-id"); v != "" {
			h.Set("x-ms-client-request-id", v)
		}
		return
	}
	h.Set("x-request-id", newID(c.rng, "req_", 32))
	h.Set("openai-version", "2020-10-01")
	h.Set("openai-organization", "org-mock")
}

func (c *call) serveAzure() {
	rest, ok := strings.CutPrefix(c.req.URL.Path, "/openai/deployments/")
	if !ok {
		c.writeError(c.errNotFound())
		return
	}
	name, opPath, _ := strings.Cut(rest, "/")
	switch opPath {
	case "chat/completions":
		c.op = KindChat
	case "completions":
		c.op = KindCompletion
	case "embeddings":
		c.op = KindEmbedding
	default:
		c.writeError(c.errNotFound())
		return
	}
	if c.req.Method != http.MethodPost {
		c.writeError(c.errMethod())
		return
	}
	// Azure answers a request without api-version with 404 Resource not
	// found; any non-empty version is accepted.
	c.apiVersion = c.req.URL.Query().Get("api-version")
	if c.apiVersion == "" {
		c.writeError(c.errNotFound())
		return
	}
	if ok, missing := c.authorized(); !ok {
		c.writeError(c.errUnauthorized(missing))
		return
	}
	d, ok := c.r.lookup(name)
	if !ok {
		c.writeError(c.errDeploymentNotFound(name))
		return
	}
	c.dep = d
	body, ok := c.readBody()
	if !ok {
		return
	}
	c.serveOp(body)
}

// serveV1 serves OpenAI-style paths under prefix, picking the deployment
// from the body's "model".
func (c *call) serveV1(prefix string) {
	path := strings.TrimPrefix(c.req.URL.Path, prefix)
	switch {
	case path == "/models" || strings.HasPrefix(path, "/models/"):
		c.serveModels(strings.TrimPrefix(strings.TrimPrefix(path, "/models"), "/"))
		return
	case path == "/chat/completions":
		c.op = KindChat
	case path == "/completions":
		c.op = KindCompletion
	case path == "/embeddings":
		c.op = KindEmbedding
	default:
		c.writeError(c.errNotFound())
		return
	}
	if c.req.Method != http.MethodPost {
		c.writeError(c.errMethod())
		return
	}
	if ok, missing := c.authorized(); !ok {
		c.writeError(c.errUnauthorized(missing))
		return
	}
	body, ok := c.readBody()
	if !ok {
		return
	}
	if !gjson.ValidBytes(body) {
		_, err := parseRequest(c.op, body)
		re, _ := asRequestError(err)
		c.writeError(errRequest(re))
		return
	}
	model := gjson.GetBytes(body, "model")
	switch {
	case !model.Exists() || model.Type == gjson.Null:
		c.writeError(apiError{status: http.StatusBadRequest, typ: "invalid_request_error", message: "you must provide a model parameter"})
		return
	case model.Type != gjson.String:
		re, _ := asRequestError(typeError("model", model, "a string"))
		c.writeError(errRequest(re))
		return
	}
	d, ok := c.r.lookup(model.String())
	if !ok {
		c.writeError(c.errDeploymentNotFound(model.String()))
		return
	}
	c.dep = d
	c.serveOp(body)
}

// serveModels answers GET /v1/models and GET /v1/models/{id}.
func (c *call) serveModels(id string) {
	if c.req.Method != http.MethodGet {
		c.writeError(c.errMethod())
		return
	}
	if ok, missing := c.authorized(); !ok {
		c.writeError(c.errUnauthorized(missing))
		return
	}
	const created = 1721172741 // fixed, like a real model's creation date
	if id == "" {
		list := modelList{Object: "list", Data: make([]modelObject, 0, len(c.r.order))}
		for _, name := range c.r.order {
			list.Data = append(list.Data, modelObject{ID: name, Object: "model", Created: created, OwnedBy: "system"})
		}
		c.writeJSON(http.StatusOK, list)
		return
	}
	if _, ok := c.r.lookup(id); !ok {
		c.writeError(c.errDeploymentNotFound(id))
		return
	}
	c.writeJSON(http.StatusOK, modelObject{ID: id, Object: "model", Created: created, OwnedBy: "system"})
}

// authorized checks the api-key header (Azure) or bearer token.
func (c *call) authorized() (ok, missing bool) {
	key := ""
	if c.azure() {
		key = strings.TrimSpace(c.req.Header.Get("api-key"))
	}
	if key == "" {
		auth := c.req.Header.Get("Authorization")
		if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			key = strings.TrimSpace(auth[7:])
		}
	}
	if key == "" {
		return false, true
	}
	return subtle.ConstantTimeCompare([]byte(key), []byte(c.r.apiKey)) == 1, false
}

// readBody reads the body up to MaxBodyBytes, answering 413 or 400 itself
// when it cannot.
func (c *call) readBody() ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.req.Body, MaxBodyBytes))
	if err == nil {
		return body, true
	}
	if c.dep != nil {
		c.dep.badRequest(c.req.Header)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		c.writeError(c.errTooLarge(mbe.Limit))
		return nil, false
	}
	c.writeError(apiError{status: http.StatusBadRequest, typ: "invalid_request_error", message: fmt.Sprintf("Could not read the request body: %v", err)})
	return nil, false
}

// writeJSON sends v with status. It returns the write error, if any.
func (c *call) writeJSON(status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal answer: %w", err)
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	c.setProcessingTime()
	c.endFlight()
	c.w.WriteHeader(status)
	if _, err := c.w.Write(b); err != nil {
		return fmt.Errorf("write answer: %w", err)
	}
	return nil
}

func (c *call) setProcessingTime() {
	if !c.azure() {
		c.w.Header().Set("openai-processing-ms", strconv.FormatInt(time.Since(c.start).Milliseconds(), 10))
	}
}
