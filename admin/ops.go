package admin

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// Cluster operations: status, membership, audit, peers, backup, drain.

func (s *Server) clusterInfo(c echo.Context) error {
	st := s.store.Status()
	info := ClusterInfo{Status: st, Members: s.memberInfos(), ConfigVersion: st.ConfigVersion}
	return c.JSON(http.StatusOK, info)
}

func (s *Server) members(c echo.Context) error {
	return c.JSON(http.StatusOK, s.memberInfos())
}

func (s *Server) memberInfos() []MemberInfo {
	ms := s.store.Members()
	out := make([]MemberInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberInfo(m))
	}
	return out
}

// audit returns the replicated audit log, oldest first; ?limit=N keeps
// the newest N.
func (s *Server) audit(c echo.Context) error {
	entries := s.store.AuditLog()
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return invalidField("limit", "must be a positive integer")
		}
		if n < len(entries) {
			entries = entries[len(entries)-n:]
		}
	}
	if entries == nil {
		entries = entries[:0:0]
	}
	return c.JSON(http.StatusOK, AuditLog{Entries: entries})
}

func (s *Server) removePeer(c echo.Context) error {
	id, err := url.PathUnescape(c.Param("id"))
	if err != nil || id == "" {
		return newError(http.StatusBadRequest, CodeInvalid, "bad peer id in path")
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if err := s.store.RemovePeer(ctx, id); err != nil {
		return err
	}
	s.logger.Info("raft peer removed", "peer", id, "actor", actor(c))
	return c.NoContent(http.StatusNoContent)
}

// downloadSnapshot sends a backup of the state. By default it first waits
// for a barrier so the backup holds every acknowledged write;
// ?consistent=false backs up this node's state as it is, which works even
// without a leader (disaster recovery).
func (s *Server) downloadSnapshot(c echo.Context) error {
	snap, err := s.readDefault(c, true)
	if err != nil {
		return err
	}
	// Buffered, so a failure is still answered as a JSON error.
	var buf bytes.Buffer
	if err := s.store.WriteSnapshot(&buf); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	name := fmt.Sprintf("sluice-%d-%s.snap", snap.Version, time.Now().UTC().Format("20060102T150405Z"))
	h := c.Response().Header()
	h.Set(echo.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	h.Set(echo.HeaderCacheControl, "no-store")
	return c.Blob(http.StatusOK, echo.MIMEOctetStream, buf.Bytes())
}

// restoreSnapshot applies the configuration of an uploaded snapshot as one
// replicated write, recorded in the audit log under the caller's name.
func (s *Server) restoreSnapshot(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	res, err := s.store.RestoreSnapshot(ctx, bytes.NewReader(body), actor(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(VersionHeader, strconv.FormatUint(res.Index, 10))
	return c.JSON(http.StatusOK, WriteResult{Version: res.Index, Status: "restored"})
}

func (s *Server) drain(c echo.Context) error {
	if s.cfg.Drainer == nil {
		return newError(http.StatusNotImplemented, CodeNotImplemented, "this node was started without a drainer")
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if err := s.cfg.Drainer.Drain(ctx); err != nil {
		return err
	}
	s.logger.Info("node drained", "actor", actor(c))
	return c.JSON(http.StatusOK, WriteResult{Status: "drained"})
}
