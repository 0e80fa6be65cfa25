package ledger

import (
	"errors"
	"time"
)

// SectionType is the raft command type of usage batches (the cluster's
// fsm.CmdUsageBatch).
const SectionType uint8 = 32

// Compaction constants. They are part of the replicated behaviour: every
// replica must use the same values, so they are not settings.
const (
	// Horizon is how long rows stay per minute before they are rolled into
	// per-hour rows.
	Horizon = 48 * time.Hour
	// Retention is how long rows (and idle batch incarnations) are kept.
	Retention = 35 * 24 * time.Hour
	// MaxFuture is how far ahead of the entry's time a row may be stamped
	// (clock skew between nodes); later rows go to the entry's minute.
	MaxFuture = time.Hour
)

// Errors.
var (
	// ErrInvalidBatch: a batch that does not decode or breaks a rule (no
	// node, sequence 0, negative counts). It is refused before raft sees it.
	ErrInvalidBatch = errors.New("invalid usage batch")
	// ErrInvalidQuery: a query the View cannot answer (unknown group-by
	// field or bucket).
	ErrInvalidQuery = errors.New("invalid usage query")
)

// Labels identify what a row counts.
type Labels struct {
	Tenant     string `json:"tenant,omitempty"`
	Key        string `json:"key,omitempty"`
	Model      string `json:"model,omitempty"`
	Deployment string `json:"deployment,omitempty"`
	Region     string `json:"region,omitempty"`
	Class      string `json:"class,omitempty"`
	Cached     bool   `json:"cached,omitempty"`
}

// Counts are what a row adds up.
type Counts struct {
	Requests         int64 `json:"requests"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// Errors counts requests answered with a status of 400 or more.
	Errors int64 `json:"errors"`
}

// Add returns c + o.
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Requests:         c.Requests + o.Requests,
		PromptTokens:     c.PromptTokens + o.PromptTokens,
		CompletionTokens: c.CompletionTokens + o.CompletionTokens,
		Errors:           c.Errors + o.Errors,
	}
}

// Tokens is prompt plus completion tokens.
func (c Counts) Tokens() int64 { return c.PromptTokens + c.CompletionTokens }

func (c Counts) negative() bool {
	return c.Requests < 0 || c.PromptTokens < 0 || c.CompletionTokens < 0 || c.Errors < 0
}

// Row is one aggregate in a batch or a snapshot: the counts of one label
// combination in the bucket starting at Bucket (Unix seconds, UTC).
type Row struct {
	Bucket int64 `json:"bucket"`
	Labels
	Counts
}

// BatchID makes a batch unique: Seq orders the batches of one incarnation
// of one node.
type BatchID struct {
	Node        string `json:"node"`
	Incarnation uint64 `json:"inc"`
	Seq         uint64 `json:"seq"`
}

// Batch is the body of a usage command.
type Batch struct {
	ID   BatchID `json:"id"`
	Rows []Row   `json:"rows"`
}

func (b *Batch) validate() error {
	if b.ID.Node == "" || b.ID.Seq == 0 {
		return errors.New("batch ID needs a node and a sequence above 0")
	}
	for i := range b.Rows {
		if b.Rows[i].Counts.negative() {
			return errors.New("negative counts")
		}
	}
	return nil
}

// ApplyResult is what the section returns for a batch.
type ApplyResult struct {
	// Duplicate is set when the batch (or a later one of its incarnation)
	// was already applied: nothing was counted.
	Duplicate bool `json:"duplicate,omitempty"`
	// Rows is how many rows were counted; Dropped how many were older than
	// Retention and discarded.
	Rows    int `json:"rows"`
	Dropped int `json:"dropped,omitempty"`
}
