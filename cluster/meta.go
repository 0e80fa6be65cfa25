package cluster

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// NodeMeta is what a node tells the others about itself in gossip. It is
// encoded and decoded only here (encodeMeta, decodeMeta).
type NodeMeta struct {
	ID          string `json:"id"`
	Name        string `json:"n,omitempty"`
	ClusterAddr string `json:"c"` // raft and forwarding RPC
	APIAddr     string `json:"api,omitempty"`
	AdminAddr   string `json:"adm,omitempty"`
	Region      string `json:"r,omitempty"`
	Zone        string `json:"z,omitempty"`
	Version     string `json:"v,omitempty"`
	// BootstrapExpect is the node's setting; nodes only bootstrap with
	// peers that expect the same number.
	BootstrapExpect int `json:"bx,omitempty"`
}

// metaFormat is the first byte of the encoded meta; bump it for an
// incompatible change and keep decoding the old one.
const metaFormat byte = 1

var errMeta = errors.New("bad node meta")

func encodeMeta(m NodeMeta) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := append([]byte{metaFormat}, body...)
	if len(out) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: node meta is %d bytes, more than gossip allows (%d)",
			ErrInvalidConfig, len(out), memberlist.MetaMaxSize)
	}
	return out, nil
}

func decodeMeta(b []byte) (NodeMeta, error) {
	var m NodeMeta
	if len(b) == 0 {
		return m, fmt.Errorf("%w: empty", errMeta)
	}
	if b[0] != metaFormat {
		return m, fmt.Errorf("%w: format %d", errMeta, b[0])
	}
	if err := json.Unmarshal(b[1:], &m); err != nil {
		return m, fmt.Errorf("%w: %w", errMeta, err)
	}
	if m.ID == "" || m.ClusterAddr == "" {
		return m, fmt.Errorf("%w: missing id or cluster address", errMeta)
	}
	return m, nil
}
