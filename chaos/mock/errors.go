package mock

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// apiError is an error answer. Empty typ, param and code are sent as null.
type apiError struct {
	status  int
	message string
	typ     string
	param   string
	code    string
	// retryAfter, when positive, sets retry-after (whole seconds, rounded
	// up) and retry-after-ms / x-ms-retry-after-ms.
	retryAfter time.Duration
}

func strOrNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// writeError sends e as the JSON error envelope.
func (c *call) writeError(e apiError) {
	if e.retryAfter > 0 {
		setRetryAfter(c.w.Header(), e.retryAfter)
	}
	body := apiErrorBody{Error: apiErrorDetail{
		Message: e.message, Type: strOrNull(e.typ), Param: strOrNull(e.param), Code: strOrNull(e.code),
	}}
	c.writeJSON(e.status, body)
}

// setRetryAfter sets the three retry-after headers for a wait of d.
func setRetryAfter(h http.Header, d time.Duration) {
	ms := ceilDiv(d, time.Millisecond)
	secs := max(ceilDiv(d, time.Second), 1)
	h.Set("retry-after", strconv.FormatInt(secs, 10))
	h.Set("retry-after-ms", strconv.FormatInt(ms, 10))
	h.Set("x-ms-retry-after-ms", strconv.FormatInt(ms, 10))
}

func ceilDiv(d, unit time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + unit - 1) / unit)
}

func (c *call) azure() bool { return c.r.cfg.Dialect == DialectAzure }

func (c *call) errUnauthorized(missing bool) apiError {
	if c.azure() {
		return apiError{status: http.StatusUnauthorized, code: "401", message: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}
	}
	if missing {
		return apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."}
	}
	return apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "invalid_api_key", message: "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."}
}

// errNotFound is the answer for an unknown path (Azure: also for a missing
// api-version, as Azure does).
func (c *call) errNotFound() apiError {
	if c.azure() {
		return apiError{status: http.StatusNotFound, code: "404", message: "Resource not found"}
	}
	return apiError{status: http.StatusNotFound, typ: "invalid_request_error", message: fmt.Sprintf("Invalid URL (%s %s)", c.req.Method, c.req.URL.Path)}
}

func (c *call) errMethod() apiError {
	if c.azure() {
		return apiError{status: http.StatusMethodNotAllowed, code: "405", message: "Method not allowed"}
	}
	return apiError{status: http.StatusMethodNotAllowed, typ: "invalid_request_error", message: fmt.Sprintf("Invalid method for URL (%s %s)", c.req.Method, c.req.URL.Path)}
}

func (c *call) errDeploymentNotFound(name string) apiError {
	if c.azure() {
		return apiError{status: http.StatusNotFound, code: "DeploymentNotFound", message: "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}
	}
	return apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "model_not_found", message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", name)}
}

// errOperation answers an operation the deployment's kind does not serve.
func (c *call) errOperation(d *deployment, op Kind) apiError {
	if c.azure() {
		return apiError{status: http.StatusBadRequest, code: "OperationNotSupported", message: fmt.Sprintf("The %s operation does not work with the specified model, %s. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.", operationWord(op), d.cfg.Model)}
	}
	if op == KindEmbedding {
		return apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: "model", code: "model_not_supported", message: fmt.Sprintf("The model `%s` does not support embeddings.", d.cfg.Name)}
	}
	return apiError{status: http.StatusNotFound, typ: "invalid_request_error", param: "model", message: "This is not a chat model and thus not supported in the v1/chat/completions endpoint. Did you mean to use v1/embeddings?"}
}

func operationWord(op Kind) string {
	switch op {
	case KindChat:
		return "chatCompletion"
	case KindCompletion:
		return "completion"
	default:
		return "embeddings"
	}
}

// operationName is Azure's name of an operation in 429 messages.
func operationName(op Kind) string {
	switch op {
	case KindChat:
		return "ChatCompletions_Create"
	case KindCompletion:
		return "Completions_Create"
	default:
		return "Embeddings_Create"
	}
}

func errRequest(re *requestError) apiError {
	return apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: re.param, code: re.code, message: re.message}
}

func (c *call) errTooLarge(limit int64) apiError {
	return apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", code: "request_too_large", message: fmt.Sprintf("Request body too large: the limit is %d bytes.", limit)}
}

// errRateLimited is a 429 for a wait of d; limitedBy is "requests" or
// "tokens".
func (c *call) errRateLimited(d time.Duration, limitedBy string) apiError {
	secs := max(ceilDiv(d, time.Second), 1)
	if c.azure() {
		what := "call rate limit"
		if limitedBy == "tokens" {
			what = "token rate limit"
		}
		return apiError{status: http.StatusTooManyRequests, code: "429", retryAfter: d, message: fmt.Sprintf(
			"Requests to the %s Operation under Azure OpenAI API version %s have exceeded %s of your current OpenAI S0 pricing tier. Please retry after %d seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
			operationName(c.op), c.apiVersion, what, secs)}
	}
	unit, limit := "requests per min (RPM)", c.dep.cfg.RPM
	if limitedBy == "tokens" {
		unit, limit = "tokens per min (TPM)", c.dep.cfg.TPM
	}
	return apiError{status: http.StatusTooManyRequests, typ: limitedBy, code: "rate_limit_exceeded", retryAfter: d, message: fmt.Sprintf(
		"Rate limit reached for %s in organization org-mock on %s: Limit %d. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.",
		c.dep.cfg.Name, unit, limit, d.Round(time.Millisecond))}
}

func (c *call) err500() apiError {
	if c.azure() {
		return apiError{status: http.StatusInternalServerError, typ: "server_error", code: "InternalServerError", message: "The server had an error while processing your request. Sorry about that!"}
	}
	return apiError{status: http.StatusInternalServerError, typ: "server_error", code: "internal_server_error", message: "The server had an error while processing your request. Sorry about that!"}
}

func (c *call) err503(retryAfter time.Duration) apiError {
	if c.azure() {
		return apiError{status: http.StatusServiceUnavailable, typ: "server_error", code: "ServiceUnavailable", retryAfter: retryAfter, message: "The service is temporarily unable to process your request. Please try again later."}
	}
	return apiError{status: http.StatusServiceUnavailable, typ: "server_error", code: "service_unavailable", retryAfter: retryAfter, message: "The server is overloaded or not ready yet."}
}
