package wire

import (
	"errors"
	"strconv"
)

// Sentinel errors for callers' mistakes, as opposed to clients' (*Error).
var (
	// ErrUnknownEndpoint is returned by Parse for an Endpoint outside the defined ones.
	ErrUnknownEndpoint = errors.New("wire: unknown endpoint")
	// ErrNotObject is returned by Rewrite when the body is not a JSON object.
	ErrNotObject = errors.New("wire: body is not a JSON object")
	// ErrTooManyEdits is returned by Rewrite for a body that repeats "model"
	// or "include_usage" so often that rewriting every occurrence is refused.
	ErrTooManyEdits = errors.New("wire: body repeats a rewritten field too often")
	// ErrEventTooLarge is returned by EventReader.Next when one event exceeds the reader's limit.
	ErrEventTooLarge = errors.New("wire: server-sent event too large")
)

// Error is a client error in a request body, answered with HTTP 400 and the
// OpenAI error envelope (see AppendBody). Param names the offending field as
// OpenAI does ("messages[2].role"); empty means null, as for a body that is
// not JSON. Code is OpenAI's machine-readable code; empty means null.
type Error struct {
	Param   string
	Message string
	Code    string
}

func (e *Error) Error() string {
	if e.Param == "" {
		return "invalid request: " + e.Message
	}
	return "invalid request: " + e.Param + ": " + e.Message
}

// AppendBody appends the JSON error body OpenAI's clients expect:
// {"error":{"message":...,"type":"invalid_request_error","param":...,"code":...}}.
func (e *Error) AppendBody(dst []byte) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = appendJSONString(dst, e.Message)
	dst = append(dst, `,"type":"invalid_request_error","param":`...)
	dst = appendJSONStringOrNull(dst, e.Param)
	dst = append(dst, `,"code":`...)
	dst = appendJSONStringOrNull(dst, e.Code)
	return append(dst, "}}"...)
}

func appendJSONStringOrNull(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendJSONString(dst, s)
}

// OpenAI's codes for the errors Parse reports.
const (
	codeMissing   = "missing_required_parameter"
	codeType      = "invalid_type"
	codeEmpty     = "empty_array"
	codeEmptyStr  = "empty_string"
	codeBelowMin  = "integer_below_min_value"
	codeAboveMax  = "integer_above_max_value"
	codeValue     = "invalid_value"
	codeDuplicate = "duplicate_parameter"
)

// msgBadJSON is OpenAI's answer to a body that is not JSON.
const msgBadJSON = "We could not parse the JSON body of your request. The API expects a JSON payload, but what was sent was not valid JSON."

func errMissing(param string) *Error {
	return &Error{Param: param, Code: codeMissing, Message: "Missing required parameter: '" + param + "'."}
}

func errType(param, want, got string) *Error {
	return &Error{Param: param, Code: codeType,
		Message: "Invalid type for '" + param + "': expected " + want + ", but got " + got + " instead."}
}

func errBelow(param string, min int64, got string) *Error {
	return &Error{Param: param, Code: codeBelowMin,
		Message: "Invalid '" + param + "': integer below minimum value. Expected a value >= " +
			strconv.FormatInt(min, 10) + ", but got " + got + " instead."}
}

func errAbove(param string) *Error {
	return &Error{Param: param, Code: codeAboveMax,
		Message: "Invalid '" + param + "': integer above maximum value. Expected a value <= " +
			strconv.FormatInt(maxInt, 10) + "."}
}
