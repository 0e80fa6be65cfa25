package router

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// apiError is an error answered to the client in OpenAI's shape:
// {"error":{"message","type","param","code"}}.
type apiError struct {
	Status     int
	Message    string
	Type       string
	Param      string
	Code       string
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return e.Message }

func errBadRequest(param, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: msg, Type: "invalid_request_error", Param: param}
}

var (
	errMissingKey = &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "You didn't provide an API key. Provide it as 'Authorization: Bearer <key>' (or the api-key header for the Azure API)."}
	errUnknownKey = &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "Incorrect API key provided."}
	errExpiredKey = &apiError{Status: http.StatusForbidden, Type: "invalid_request_error", Code: "key_expired",
		Message: "This API key has expired or is disabled."}
	errTooLarge = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
		Message: "The request body is larger than this gateway accepts."}
	errNotReady = &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "not_ready",
		Message: "The gateway has no configuration yet."}
)

func errModelNotFound(model string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
		Message: "The model `" + model + "` does not exist or you do not have access to it."}
}

func errModelNotAllowed(model string) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: "invalid_request_error", Param: "model", Code: "model_not_allowed",
		Message: "This API key is not allowed to use the model `" + model + "`."}
}

func errUnavailable(msg string, retryAfter time.Duration) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "no_deployment_available",
		Message: msg, RetryAfter: retryAfter}
}

func errCapacity(retryAfter time.Duration) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: "rate_limit_exceeded",
		Message: "Every deployment of this model is at its rate limit. Retry after the time in the retry-after header.", RetryAfter: retryAfter}
}

func errTimeout() *apiError {
	return &apiError{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout",
		Message: "The upstream provider did not answer in time."}
}

type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// writeError answers e in OpenAI's error shape with retry-after headers
// when e carries a wait.
func writeError(w http.ResponseWriter, e *apiError) {
	var b errorBody
	b.Error.Message, b.Error.Type = e.Message, e.Type
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		setRetryAfter(h, e.RetryAfter)
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(&b)
}

// setRetryAfter sets retry-after in whole seconds (rounded up) and
// retry-after-ms, the headers the official SDKs honour.
func setRetryAfter(h http.Header, d time.Duration) {
	secs := int64((d + time.Second - 1) / time.Second)
	h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	h.Set("Retry-After-Ms", strconv.FormatInt(max(d.Milliseconds(), 1), 10))
}
