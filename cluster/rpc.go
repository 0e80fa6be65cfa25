package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The forwarding RPC: on a connection that started with muxRPC, the client
// writes one request frame and reads one response frame; then both close.
// A frame is a 4-byte big-endian length and that many bytes of JSON. One
// call per connection keeps it simple and safe (no stale pooled
// connections, no ambiguity about which call a failure belongs to);
// forwarded writes are rare enough that the dial does not matter.

// RPC operations.
const (
	opApply      = "apply"       // leader: append a command
	opReadIndex  = "read_index"  // leader: index a consistent read must wait for
	opStatus     = "status"      // any: does this node have raft state, who leads
	opPromise    = "promise"     // any: bootstrap lock (bootstrap.go)
	opRemovePeer = "remove_peer" // leader: remove a raft peer
	opSection    = "section"     // leader: append a section command (section.go)
)

const maxFrame = 64 << 20

type rpcRequest struct {
	Op   string          `json:"op"`
	From string          `json:"from"`
	Body json.RawMessage `json:"body,omitempty"`
}

type rpcResponse struct {
	Body json.RawMessage `json:"body,omitempty"`
	Err  *wireError      `json:"err,omitempty"`
}

type applyRequest struct {
	Cmd []byte `json:"cmd"`
}

type indexResponse struct {
	Index uint64 `json:"index"`
}

type statusResponse struct {
	ID       string `json:"id"`
	HasState bool   `json:"has_state"`
	LeaderID string `json:"leader_id,omitempty"`
}

type removePeerRequest struct {
	ID string `json:"id"`
}

func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(body) > maxFrame {
		return fmt.Errorf("rpc frame of %d bytes exceeds %d", len(body), maxFrame)
	}
	buf := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	_, err = w.Write(append(buf, body...))
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("rpc frame of %d bytes exceeds %d", n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// serveRPC answers one call on conn; the mux closes conn afterwards.
func (c *Cluster) serveRPC(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(c.cfg.RPCTimeout))
	var req rpcRequest
	if err := readFrame(bufio.NewReader(conn), &req); err != nil {
		c.logger.Debug("bad rpc request", "remote", conn.RemoteAddr().String(), "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RPCTimeout)
	defer cancel()
	body, err := c.handleRPC(ctx, req)
	resp := rpcResponse{Err: toWire(err)}
	if err == nil && body != nil {
		if resp.Body, err = json.Marshal(body); err != nil {
			resp = rpcResponse{Err: toWire(err)}
		}
	}
	if err := writeFrame(conn, resp); err != nil {
		c.logger.Debug("rpc response not sent", "op", req.Op, "remote", conn.RemoteAddr().String(), "error", err)
	}
}

func (c *Cluster) handleRPC(ctx context.Context, req rpcRequest) (any, error) {
	if c.closed.Load() {
		return nil, ErrShutdown
	}
	decode := func(v any) error {
		if err := json.Unmarshal(req.Body, v); err != nil {
			return fmt.Errorf("%w: bad %s request: %w", ErrInvalid, req.Op, err)
		}
		return nil
	}
	switch req.Op {
	case opApply:
		var a applyRequest
		if err := decode(&a); err != nil {
			return nil, err
		}
		res, err := c.applyLocal(ctx, a.Cmd)
		if err != nil {
			return nil, err
		}
		return res, nil
	case opSection:
		var a applyRequest
		if err := decode(&a); err != nil {
			return nil, err
		}
		res, err := c.applySectionLocal(ctx, a.Cmd)
		if err != nil {
			return nil, err
		}
		return res, nil
	case opReadIndex:
		idx, err := c.readIndexLocal(ctx)
		if err != nil {
			return nil, err
		}
		return indexResponse{Index: idx}, nil
	case opStatus:
		_, leader := c.raft.LeaderWithID()
		return statusResponse{ID: c.id, HasState: c.hasRaftState(), LeaderID: string(leader)}, nil
	case opPromise:
		var p promiseRequest
		if err := decode(&p); err != nil {
			return nil, err
		}
		return c.boot.answer(p, c.hasRaftState), nil
	case opRemovePeer:
		var r removePeerRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return struct{}{}, c.removePeerLocal(ctx, r.ID)
	}
	return nil, fmt.Errorf("%w: unknown rpc op %q", ErrInvalid, req.Op)
}

// errNotSent marks a call that failed before the request left this node,
// so retrying it cannot apply anything twice.
var errNotSent = errors.New("request not sent")

// call performs one RPC to the cluster port at addr.
func (c *Cluster) call(ctx context.Context, addr, op string, req, resp any) error {
	deadline := time.Now().Add(c.cfg.RPCTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return fmt.Errorf("%w: %w", errNotSent, context.DeadlineExceeded)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotSent, err)
	}
	conn, err := dialMux(addr, muxRPC, timeout)
	if err != nil {
		return fmt.Errorf("%w: dial %s: %w", errNotSent, addr, err)
	}
	defer conn.Close()
	// Unblock the exchange if ctx ends before the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	_ = conn.SetDeadline(deadline)
	if err := writeFrame(conn, rpcRequest{Op: op, From: c.id, Body: body}); err != nil {
		return fmt.Errorf("%w: write %s: %w", errNotSent, op, err)
	}
	var r rpcResponse
	if err := readFrame(bufio.NewReader(conn), &r); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%w: %s to %s: %w", ErrTimeout, op, addr, err)
		}
		return fmt.Errorf("%s to %s: %w", op, addr, err)
	}
	if r.Err != nil {
		return fromWire(r.Err)
	}
	if resp != nil && r.Body != nil {
		if err := json.Unmarshal(r.Body, resp); err != nil {
			return fmt.Errorf("%s to %s: bad response: %w", op, addr, err)
		}
	}
	return nil
}
