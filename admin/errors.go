package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/state"
)

// Error is the admin API's error: handlers return it (or any error, mapped
// by toError), the server renders it as
//
//	{"error": {"message": "...", "code": "...", "fields": [...]}}
//
// with Status as the HTTP status, and Client returns it for every non-2xx
// answer. Its message never carries a token or a secret.
type Error struct {
	// Status is the HTTP status code.
	Status int `json:"-"`
	// Code is a stable machine-readable reason (see the Code* constants).
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
	// Fields names each invalid field, for validation errors.
	Fields []FieldError `json:"fields,omitempty"`
}

// FieldError is one invalid field, named by its path (e.g.
// "deployments[0].tpm" or "limit").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("admin API: %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, e.Code, e.Message)
}

// Error codes.
const (
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeInvalid          = "invalid"
	CodeNotFound         = "not_found"
	CodeExists           = "exists"
	CodeConflict         = "conflict"
	CodeTooLarge         = "too_large"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNoLeader         = "no_leader"
	CodeUnavailable      = "unavailable"
	CodeTimeout          = "timeout"
	CodeNotImplemented   = "not_implemented"
	CodeInternal         = "internal"
)

// errorBody is the JSON envelope of an error.
type errorBody struct {
	Error *Error `json:"error"`
}

func newError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// invalidField is a 400 naming one field.
func invalidField(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{
		Status: http.StatusBadRequest, Code: CodeInvalid,
		Message: field + ": " + msg,
		Fields:  []FieldError{{Field: field, Message: msg}},
	}
}

// toError maps any error a handler returns to the Error answered. The
// cluster's errors are matched with errors.Is, so forwarded errors from
// the leader map the same way as local ones.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return fromEcho(he)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body is larger than %d bytes", mbe.Limit)
	}
	var ve *state.ValidationError
	switch {
	case errors.As(err, &ve):
		e := &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Message: ve.Error()}
		for _, f := range ve.Fields {
			e.Fields = append(e.Fields, FieldError{Field: f.Field, Message: f.Msg})
		}
		return e
	case errors.Is(err, cluster.ErrInvalid):
		return newError(http.StatusBadRequest, CodeInvalid, "%s", err)
	case errors.Is(err, cluster.ErrNotFound), errors.Is(err, cluster.ErrUnknownMember):
		return newError(http.StatusNotFound, CodeNotFound, "%s", err)
	case errors.Is(err, cluster.ErrExists):
		return newError(http.StatusConflict, CodeExists, "%s", err)
	case errors.Is(err, cluster.ErrConflict), errors.Is(err, cluster.ErrMemberAlive), errors.Is(err, cluster.ErrQuorum):
		return newError(http.StatusConflict, CodeConflict, "%s", err)
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader):
		return newError(http.StatusServiceUnavailable, CodeNoLeader, "%s", err)
	// ErrTimeout before ErrLeadershipLost and ErrShutdown: a write whose
	// wait ended is reported as a timeout of unknown outcome.
	case errors.Is(err, cluster.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return newError(http.StatusGatewayTimeout, CodeTimeout, "%s (a write's outcome is unknown: read before retrying)", err)
	case errors.Is(err, cluster.ErrLeadershipLost):
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "%s", err)
	case errors.Is(err, cluster.ErrShutdown), errors.Is(err, context.Canceled):
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "%s", err)
	}
	return newError(http.StatusInternalServerError, CodeInternal, "internal error")
}

// fromEcho maps echo's own errors (no route, wrong method, ...).
func fromEcho(he *echo.HTTPError) *Error {
	msg := http.StatusText(he.Code)
	if s, ok := he.Message.(string); ok && s != "" {
		msg = s
	}
	code := CodeInternal
	switch he.Code {
	case http.StatusNotFound:
		code, msg = CodeNotFound, "no such endpoint"
	case http.StatusMethodNotAllowed:
		code, msg = CodeMethodNotAllowed, "method not allowed on this endpoint"
	case http.StatusRequestEntityTooLarge:
		code = CodeTooLarge
	case http.StatusUnauthorized:
		code = CodeUnauthorized
	case http.StatusForbidden:
		code = CodeForbidden
	case http.StatusBadRequest:
		code = CodeInvalid
	case http.StatusServiceUnavailable:
		code = CodeUnavailable
	}
	if msg == "" {
		msg = "error " + strconv.Itoa(he.Code)
	}
	return &Error{Status: he.Code, Code: code, Message: strings.ToLower(msg[:1]) + msg[1:]}
}

// decodeError turns a JSON or YAML decoding error into a 400 naming the
// field where the decoder knows it. Decoder messages name fields and types,
// never values, so a pasted secret is not echoed.
func decodeError(err error) *Error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return toError(err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return invalidField(te.Field, "must be %s, not a JSON %s", te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return newError(http.StatusBadRequest, CodeInvalid, "body is not valid JSON (at byte %d)", se.Offset)
	}
	msg := err.Error()
	// encoding/json reports an unknown field as: json: unknown field "x".
	if i := strings.Index(msg, `unknown field "`); i >= 0 {
		name := msg[i+len(`unknown field "`):]
		if j := strings.IndexByte(name, '"'); j >= 0 {
			return invalidField(name[:j], "unknown field")
		}
	}
	if strings.Contains(msg, "unexpected end of JSON input") || errors.Is(err, errEmptyBody) {
		return newError(http.StatusBadRequest, CodeInvalid, "request body is empty or truncated")
	}
	return newError(http.StatusBadRequest, CodeInvalid, "cannot decode body: %s", msg)
}

var errEmptyBody = errors.New("empty body")
