package router

import "time"

// Record is the usage of one finished request, handed to a Sink.
type Record struct {
	RequestID        string    `json:"request_id"`
	Time             time.Time `json:"time"`
	Tenant           string    `json:"tenant"`
	KeyID            string    `json:"key_id"`
	Class            string    `json:"class"`
	Model            string    `json:"model"`
	Deployment       string    `json:"deployment,omitempty"`
	Region           string    `json:"region,omitempty"`
	Endpoint         string    `json:"endpoint"`
	Stream           bool      `json:"stream"`
	Status           int       `json:"status"`
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	// Estimated is set when the upstream reported no usage and the numbers
	// are Sluice's own estimate (for example a stream cut mid-way).
	Estimated bool          `json:"estimated,omitempty"`
	Attempts  int           `json:"attempts"`
	Latency   time.Duration `json:"latency_ns"`
	// LimitExceeded names a soft tenant limit that was exceeded, if any.
	LimitExceeded string `json:"limit_exceeded,omitempty"`
	// Cached is set when the answer came from the response cache: no
	// upstream was called, the tokens are the cached answer's.
	Cached bool `json:"cached,omitempty"`
}

// Sink receives usage records. Record must not block the request path for
// long: durable sinks buffer and batch.
type Sink interface {
	Record(r *Record)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(r *Record)

// Record calls f(r).
func (f SinkFunc) Record(r *Record) { f(r) }
