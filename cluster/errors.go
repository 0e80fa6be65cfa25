package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// Errors returned by the package. Library errors (raft's, context's) are
// mapped to these at the package boundary, so callers only test these with
// errors.Is. The domain errors are the fsm's, under the same names.
var (
	// ErrNotLeader: the operation must run on the leader and this node is
	// not it. Apply and Barrier forward instead of returning it.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader: no leader is known (election in progress, or no quorum).
	ErrNoLeader = errors.New("no raft leader")
	// ErrTimeout: the operation did not finish in time. For a write the
	// outcome is unknown (the commit may have happened; see Apply).
	ErrTimeout = errors.New("timed out")
	// ErrLeadershipLost: the leader lost its role while committing a write;
	// the write may or may not have been applied.
	ErrLeadershipLost = errors.New("leadership lost while committing; outcome unknown")
	// ErrShutdown: the node is shut down (or not started).
	ErrShutdown = errors.New("cluster node is shut down")
	// ErrInvalidConfig: the cluster Config is invalid.
	ErrInvalidConfig = errors.New("invalid cluster configuration")
	// ErrQuorum: removing the peer would leave fewer alive voters than a
	// quorum of the new configuration.
	ErrQuorum = errors.New("would leave the raft configuration without an alive quorum")
	// ErrMemberAlive: the peer to remove is alive in gossip; stop it first,
	// or the leader adds it back.
	ErrMemberAlive = errors.New("member is alive")
	// ErrUnknownMember: no member or raft peer has that ID.
	ErrUnknownMember = errors.New("unknown member")
	// ErrMessageTooLarge: a gossip broadcast does not fit in a packet.
	ErrMessageTooLarge = errors.New("gossip message too large")

	// Domain errors of writes; see package fsm.
	ErrNotFound = fsm.ErrNotFound
	ErrExists   = fsm.ErrExists
	ErrConflict = fsm.ErrConflict
	ErrInvalid  = fsm.ErrInvalid
)

// mapRaftErr maps hashicorp/raft errors to this package's.
func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	}
	return err
}

// mapCtxErr maps a context's error to ErrTimeout (keeping the original).
func mapCtxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// Wire codes carry errors across the forwarding RPC.
var wireCodes = []struct {
	code string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"no_leader", ErrNoLeader},
	{"timeout", ErrTimeout},
	{"leadership_lost", ErrLeadershipLost},
	{"shutdown", ErrShutdown},
	{"quorum", ErrQuorum},
	{"member_alive", ErrMemberAlive},
	{"unknown_member", ErrUnknownMember},
	{"not_found", ErrNotFound},
	{"exists", ErrExists},
	{"conflict", ErrConflict},
	{"invalid", ErrInvalid},
}

// wireError is an error as it travels in an RPC response.
type wireError struct {
	Code   string              `json:"code"`
	Msg    string              `json:"msg"`
	Fields []*state.FieldError `json:"fields,omitempty"`
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Code: "internal", Msg: err.Error()}
	for _, c := range wireCodes {
		if errors.Is(err, c.err) {
			w.Code = c.code
			break
		}
	}
	var ve *state.ValidationError
	if errors.As(err, &ve) {
		w.Fields = ve.Fields
	}
	return w
}

// remoteError is an error received from another node: it keeps the
// remote message and matches the sentinel (and the validation fields).
type remoteError struct {
	msg    string
	causes []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.causes }

func fromWire(w *wireError) error {
	if w == nil {
		return nil
	}
	e := &remoteError{msg: w.Msg}
	for _, c := range wireCodes {
		if c.code == w.Code {
			e.causes = append(e.causes, c.err)
			break
		}
	}
	if len(w.Fields) > 0 {
		e.causes = append(e.causes, &state.ValidationError{Fields: w.Fields})
	}
	return e
}
