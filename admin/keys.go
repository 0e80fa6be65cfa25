package admin

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// Virtual keys. The cluster stores only the SHA-256 of a key; the
// plaintext is generated here, returned once by the create call and never
// kept, logged or shown again.

// KeyPrefix starts every generated virtual key.
const KeyPrefix = "sk-sluice-"

// Generated lengths, in base62 characters: a key carries about 238 bits.
const (
	keySecretLen = 40
	keyIDLen     = 12
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomBase62 returns n uniformly random base62 characters (bytes of 248
// and above are rejected so that every character is equally likely).
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails (it crashes instead)
		for _, b := range buf {
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

// NewKey returns a new random virtual key: KeyPrefix and 40 base62 characters.
func NewKey() string { return KeyPrefix + randomBase62(keySecretLen) }

// keyInfo is the shown form of a key: a short hash prefix, no hash.
func keyInfo(k state.Key) KeyInfo {
	h := strings.ToLower(strings.TrimPrefix(k.Hash, "sha256:"))
	if len(h) > 12 {
		h = h[:12]
	}
	return KeyInfo{
		ID: k.ID, Tenant: k.Tenant, Models: k.Models, ExpiresAt: k.ExpiresAt,
		Disabled: k.Disabled, Limits: k.Limits, HashPrefix: "sha256:" + h,
	}
}

// createKey generates a key, stores its hash and returns the plaintext.
func (s *Server) createKey(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := decodeStrict[KeyRequest](s, body)
	if err != nil {
		return err
	}
	if req.Tenant == "" {
		return invalidField("tenant", "required")
	}
	if req.ID == "" {
		req.ID = "key-" + randomBase62(keyIDLen)
	}
	plaintext := NewKey()
	k := state.Key{
		ID: req.ID, Hash: state.HashKey(plaintext), Tenant: req.Tenant, Models: req.Models,
		ExpiresAt: req.ExpiresAt, Disabled: req.Disabled, Limits: req.Limits,
	}
	h, err := s.header(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	res, err := s.store.Apply(ctx, &fsm.UpsertKey{Header: h, Mode: fsm.ModeCreate, Key: k})
	if err != nil {
		return err
	}
	shown := keyInfo(k)
	if snap, err := s.store.Read(ctx, false); err == nil {
		if rk, ok := snap.KeyByID(k.ID); ok {
			shown = keyInfo(*rk.Key)
		}
	}
	c.Response().Header().Set(VersionHeader, strconv.FormatUint(res.Index, 10))
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, CreatedKey{KeyInfo: shown, Key: plaintext})
}

// updateKey replaces a key's tenant, models, expiry, limits and disabled
// flag, keeping its hash. It never creates a key: there would be no
// plaintext to hand out.
func (s *Server) updateKey(c echo.Context) error {
	id, err := pathName(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := decodeStrict[KeyRequest](s, body)
	if err != nil {
		return err
	}
	if req.ID != "" && req.ID != id {
		return invalidField("id", "%q does not match %q in the path", req.ID, id)
	}
	return s.modifyKey(c, id, func(k *state.Key) {
		k.Tenant, k.Models, k.ExpiresAt, k.Limits, k.Disabled = req.Tenant, req.Models, req.ExpiresAt, req.Limits, req.Disabled
	})
}

// revokeKey disables a key; it stays listed (and in usage records) until
// deleted.
func (s *Server) revokeKey(c echo.Context) error {
	id, err := pathName(c)
	if err != nil {
		return err
	}
	return s.modifyKey(c, id, func(k *state.Key) { k.Disabled = true })
}

// modifyKey changes the stored key id with change and answers with it.
func (s *Server) modifyKey(c echo.Context, id string, change func(*state.Key)) error {
	h, err := s.header(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	res, err := s.modify(ctx, h, func(snap *state.Snapshot) (fsm.Command, error) {
		rk, ok := snap.KeyByID(id)
		if !ok {
			return nil, newError(http.StatusNotFound, CodeNotFound, "key %q not found", id)
		}
		k := state.Config{Keys: []state.Key{*rk.Key}}.Clone().Keys[0]
		change(&k)
		return &fsm.UpsertKey{Header: h, Mode: fsm.ModeUpdate, Key: k}, nil
	})
	if err != nil {
		return err
	}
	return respondWritten(ctx, s, c, keyKind, state.Key{ID: id}, res)
}

// maxModifyAttempts bounds read-modify-write retries on version conflicts.
const maxModifyAttempts = 5

// modify runs a read-modify-write: build computes the command from the
// current snapshot, which is written only if the configuration is still at
// that version (IfVersion); on a conflict it reads again, consistently,
// and retries. A caller's explicit ?if_version= is kept and not retried.
func (s *Server) modify(ctx context.Context, h fsm.Header, build func(*state.Snapshot) (fsm.Command, error)) (fsm.Result, error) {
	explicit := h.IfVersion != 0
	consistent := false
	for attempt := 1; ; attempt++ {
		snap, err := s.store.Read(ctx, consistent)
		if err != nil {
			return fsm.Result{}, err
		}
		cmd, err := build(snap)
		if err != nil {
			return fsm.Result{}, err
		}
		if !explicit {
			cmd.CommandHeader().IfVersion = snap.Version
		}
		res, err := s.store.Apply(ctx, cmd)
		if err == nil || explicit || !errors.Is(err, cluster.ErrConflict) || attempt == maxModifyAttempts {
			return res, err
		}
		// This node's snapshot may be behind the leader's: read through a
		// barrier before trying again.
		consistent = true
	}
}
