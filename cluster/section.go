package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/cluster/fsm"
)

// sectionResponse is a section command's outcome as it crosses the
// forwarding RPC.
type sectionResponse struct {
	Index uint64          `json:"index"`
	Value json.RawMessage `json:"value,omitempty"`
}

// ApplySection commits a command of a registered section (Config.Sections)
// from any node, forwarded to the leader like Apply, and returns the JSON
// encoding of the section's result (the same bytes whether this node leads
// or not). The entry carries the time this node accepted it, which the
// section's Apply receives as at. On success the entry is applied on this
// node before ApplySection returns.
//
// Errors are Apply's: a section's refusal is a domain error (the section's
// own error when this node leads, its message otherwise); ErrInvalid for a
// type no section owns or a body the section's Validate refuses; outcome
// unknown for ErrTimeout, ErrLeadershipLost, ErrShutdown and transport
// errors. Retry only commands the section makes idempotent (batch IDs).
func (c *Cluster) ApplySection(ctx context.Context, t uint8, body []byte) (json.RawMessage, error) {
	if c.closed.Load() || c.raft == nil {
		return nil, ErrShutdown
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		defer cancel()
	}
	b, err := fsm.EncodeSection(t, time.Now(), body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := c.fsm.Check(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var res sectionResponse
	err = c.onLeader(ctx, opSection, applyRequest{Cmd: b}, &res, func() error {
		var err error
		res, err = c.applySectionLocal(ctx, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := c.fsm.WaitApplied(ctx, res.Index); err != nil {
		return res.Value, fmt.Errorf("section write %d committed but not yet applied here: %w", res.Index, mapCtxErr(err))
	}
	return res.Value, nil
}

// applySectionLocal appends a section entry on the leader and returns the
// section's result, encoded.
func (c *Cluster) applySectionLocal(ctx context.Context, b []byte) (sectionResponse, error) {
	if err := c.fsm.Check(b); err != nil {
		return sectionResponse{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	f := c.raft.Apply(b, remaining(ctx))
	if err := f.Error(); err != nil {
		return sectionResponse{}, mapRaftErr(err)
	}
	resp, ok := f.Response().(fsm.Response)
	if !ok {
		return sectionResponse{}, fmt.Errorf("unexpected apply response %T", f.Response())
	}
	out := sectionResponse{Index: f.Index()}
	if resp.Err != nil {
		return out, resp.Err
	}
	if resp.Value != nil {
		v, err := json.Marshal(resp.Value)
		if err != nil {
			return out, fmt.Errorf("encode section result: %w", err)
		}
		out.Value = v
	}
	return out, nil
}
