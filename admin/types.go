package admin

import (
	"encoding/json"
	"time"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// The request and response bodies of the API. Server and Client share
// them, so the two cannot drift apart.

// Page is one page of a list: items sorted by name (keys by ID). Next is
// the value to pass as ?after= for the next page, empty on the last one.
type Page struct {
	Items []json.RawMessage `json:"items"`
	Next  string            `json:"next,omitempty"`
}

// page is the server side of Page.
type page struct {
	Items []any  `json:"items"`
	Next  string `json:"next,omitempty"`
}

// ProviderSpec is the body of POST and PUT /admin/v1/providers. APIKey is
// a reference stored as is (env:NAME, or the "enc:****" a GET returned,
// which keeps the current encrypted secret); APIKeyValue is a literal
// secret, encrypted with the cluster key before it is stored. Give one,
// not both.
type ProviderSpec struct {
	state.Provider
	APIKeyValue string `json:"api_key_value,omitempty"`
}

// MaskedSecret is how responses show an encrypted provider secret.
const MaskedSecret = EncPrefix + "****"

// KeyRequest is the body of POST /admin/v1/keys (and, without ID, of PUT
// /admin/v1/keys/{id}, which also takes Disabled). An empty ID gets a
// generated one.
type KeyRequest struct {
	ID        string       `json:"id,omitempty"`
	Tenant    string       `json:"tenant"`
	Models    []string     `json:"models,omitempty"`
	ExpiresAt *time.Time   `json:"expires_at,omitempty"`
	Limits    state.Limits `json:"limits,omitzero"`
	Disabled  bool         `json:"disabled,omitempty"`
}

// KeyInfo is how the API shows a virtual key: never the plaintext, only a
// short prefix of its hash to tell keys apart.
type KeyInfo struct {
	ID         string       `json:"id"`
	Tenant     string       `json:"tenant"`
	Models     []string     `json:"models,omitempty"`
	ExpiresAt  *time.Time   `json:"expires_at,omitempty"`
	Disabled   bool         `json:"disabled"`
	Limits     state.Limits `json:"limits,omitzero"`
	HashPrefix string       `json:"hash_prefix"`
}

// CreatedKey is the answer to POST /admin/v1/keys: the only time the
// plaintext key is ever shown.
type CreatedKey struct {
	KeyInfo
	Key string `json:"key"`
}

// MemberInfo is one gossip member.
type MemberInfo struct {
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	State       string    `json:"state"`
	GossipAddr  string    `json:"gossip_addr"`
	ClusterAddr string    `json:"cluster_addr"`
	APIAddr     string    `json:"api_addr,omitempty"`
	AdminAddr   string    `json:"admin_addr,omitempty"`
	Region      string    `json:"region,omitempty"`
	Zone        string    `json:"zone,omitempty"`
	Version     string    `json:"version,omitempty"`
	Since       time.Time `json:"since,omitzero"`
}

func memberInfo(m cluster.Member) MemberInfo {
	return MemberInfo{
		ID: m.ID, Name: m.Name, State: string(m.State), GossipAddr: m.GossipAddr,
		ClusterAddr: m.ClusterAddr, APIAddr: m.APIAddr, AdminAddr: m.AdminAddr,
		Region: m.Region, Zone: m.Zone, Version: m.Version, Since: m.Since,
	}
}

// ClusterInfo is the answer to GET /admin/v1/cluster.
type ClusterInfo struct {
	Status        cluster.Status `json:"status"`
	Members       []MemberInfo   `json:"members"`
	ConfigVersion uint64         `json:"config_version"`
}

// AuditLog is the answer to GET /admin/v1/audit, oldest first.
type AuditLog struct {
	Entries []fsm.AuditEntry `json:"entries"`
}

// KindDiff lists the names a configuration change adds, changes and
// removes in one kind.
type KindDiff struct {
	Added   []string `json:"added,omitempty"`
	Changed []string `json:"changed,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// Empty reports whether nothing changes.
func (d KindDiff) Empty() bool { return len(d.Added)+len(d.Changed)+len(d.Removed) == 0 }

// Diff is a configuration change by kind.
type Diff struct {
	Providers   KindDiff `json:"providers,omitzero"`
	Deployments KindDiff `json:"deployments,omitzero"`
	Models      KindDiff `json:"models,omitzero"`
	Tenants     KindDiff `json:"tenants,omitzero"`
	Keys        KindDiff `json:"keys,omitzero"`
	Policies    KindDiff `json:"policies,omitzero"`
}

// Empty reports whether nothing changes.
func (d Diff) Empty() bool {
	return d.Providers.Empty() && d.Deployments.Empty() && d.Models.Empty() &&
		d.Tenants.Empty() && d.Keys.Empty() && d.Policies.Empty()
}

// ApplyResult is the answer to POST /admin/v1/apply. With DryRun nothing
// was written and Version is the version the diff was computed against;
// otherwise Version is the version the apply produced.
type ApplyResult struct {
	DryRun  bool   `json:"dry_run"`
	Version uint64 `json:"version"`
	Diff    Diff   `json:"diff"`
}

// WriteResult is the answer to writes without a resource to show
// (snapshot restore, drain, peer removal).
type WriteResult struct {
	Version uint64 `json:"version,omitempty"`
	Status  string `json:"status,omitempty"`
}
