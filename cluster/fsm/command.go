package fsm

import (
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// CommandType is the first byte of every log entry.
type CommandType uint8

// IgnorableFlag, set on a type byte, tells replicas that do not know the
// type to skip the entry instead of panicking. Use it only for commands
// whose absence on an old replica cannot make replicas disagree about
// anything an old replica serves.
const IgnorableFlag CommandType = 0x80

// Command types. The numbers are part of the log format: never renumber,
// never reuse a retired number.
const (
	// 0 is never a command: a zero byte is a corrupt entry.

	CmdApplyConfig      CommandType = 1 // replace the whole configuration
	CmdUpsertProvider   CommandType = 2
	CmdDeleteProvider   CommandType = 3
	CmdUpsertDeployment CommandType = 4
	CmdDeleteDeployment CommandType = 5
	CmdUpsertModel      CommandType = 6
	CmdDeleteModel      CommandType = 7
	CmdUpsertTenant     CommandType = 8
	CmdDeleteTenant     CommandType = 9
	CmdUpsertKey        CommandType = 10
	CmdDeleteKey        CommandType = 11
	CmdUpsertPolicy     CommandType = 12
	CmdDeletePolicy     CommandType = 13

	// 14-31 are reserved for further configuration resources.

	// 32-63 belong to sections (section.go): replicated state beside the
	// configuration, each owning one type, applied by the Section the FSM
	// was built with. Their entries are the type byte, the acceptance time
	// (8 bytes) and the section's own body (EncodeSection); their state is
	// one snapshot record under the same number.

	// CmdUsageBatch is the usage-ledger section (quota/ledger): batches
	// applied at most once per batch ID.
	CmdUsageBatch CommandType = 32
	// CmdQuotaLease is reserved for the quota lease section (grants from
	// the allocator).
	CmdQuotaLease CommandType = 33

	// 34-63 are reserved for further sections.
)

// Header carries what every command has: who, when, and an optional
// precondition. It is embedded in each command.
type Header struct {
	// Actor names who asked for the write (an admin user, a key ID, a node);
	// it goes to the audit log.
	Actor string `json:"actor,omitempty"`
	// At is when the write was accepted. The cluster stamps it on the node
	// that receives the request when it is zero; Apply never reads a clock.
	At time.Time `json:"at"`
	// IfVersion, when non-zero, makes the write fail with ErrConflict unless
	// the current configuration version equals it (optimistic concurrency
	// for read-modify-write clients).
	IfVersion uint64 `json:"if_version,omitempty"`
}

// CommandHeader returns the command's header for stamping.
func (h *Header) CommandHeader() *Header { return h }

// Command is a write to the replicated state. Only the types in this
// package are registered; Encode refuses anything else.
type Command interface {
	Type() CommandType
	CommandHeader() *Header
}

// Mode selects upsert semantics.
type Mode string

// Upsert modes.
const (
	// ModeUpsert creates or replaces (the default).
	ModeUpsert Mode = ""
	// ModeCreate fails with ErrExists when the resource exists.
	ModeCreate Mode = "create"
	// ModeUpdate fails with ErrNotFound when the resource does not exist.
	ModeUpdate Mode = "update"
)

// ApplyConfig replaces the whole configuration.
type ApplyConfig struct {
	Header
	Config state.Config `json:"config"`
}

// UpsertProvider creates or replaces a provider, keyed by name.
type UpsertProvider struct {
	Header
	Mode     Mode           `json:"mode,omitempty"`
	Provider state.Provider `json:"provider"`
}

// DeleteProvider deletes a provider by name.
type DeleteProvider struct {
	Header
	Name string `json:"name"`
}

// UpsertDeployment creates or replaces a deployment, keyed by name.
type UpsertDeployment struct {
	Header
	Mode       Mode             `json:"mode,omitempty"`
	Deployment state.Deployment `json:"deployment"`
}

// DeleteDeployment deletes a deployment by name.
type DeleteDeployment struct {
	Header
	Name string `json:"name"`
}

// UpsertModel creates or replaces a model, keyed by name.
type UpsertModel struct {
	Header
	Mode  Mode        `json:"mode,omitempty"`
	Model state.Model `json:"model"`
}

// DeleteModel deletes a model by name.
type DeleteModel struct {
	Header
	Name string `json:"name"`
}

// UpsertTenant creates or replaces a tenant, keyed by name.
type UpsertTenant struct {
	Header
	Mode   Mode         `json:"mode,omitempty"`
	Tenant state.Tenant `json:"tenant"`
}

// DeleteTenant deletes a tenant by name.
type DeleteTenant struct {
	Header
	Name string `json:"name"`
}

// UpsertKey creates or replaces a virtual key, keyed by ID.
type UpsertKey struct {
	Header
	Mode Mode      `json:"mode,omitempty"`
	Key  state.Key `json:"key"`
}

// DeleteKey deletes a virtual key by ID.
type DeleteKey struct {
	Header
	ID string `json:"id"`
}

// UpsertPolicy creates or replaces a policy, keyed by name.
type UpsertPolicy struct {
	Header
	Mode   Mode         `json:"mode,omitempty"`
	Policy state.Policy `json:"policy"`
}

// DeletePolicy deletes a policy by name.
type DeletePolicy struct {
	Header
	Name string `json:"name"`
}

// Type implementations.

func (*ApplyConfig) Type() CommandType      { return CmdApplyConfig }
func (*UpsertProvider) Type() CommandType   { return CmdUpsertProvider }
func (*DeleteProvider) Type() CommandType   { return CmdDeleteProvider }
func (*UpsertDeployment) Type() CommandType { return CmdUpsertDeployment }
func (*DeleteDeployment) Type() CommandType { return CmdDeleteDeployment }
func (*UpsertModel) Type() CommandType      { return CmdUpsertModel }
func (*DeleteModel) Type() CommandType      { return CmdDeleteModel }
func (*UpsertTenant) Type() CommandType     { return CmdUpsertTenant }
func (*DeleteTenant) Type() CommandType     { return CmdDeleteTenant }
func (*UpsertKey) Type() CommandType        { return CmdUpsertKey }
func (*DeleteKey) Type() CommandType        { return CmdDeleteKey }
func (*UpsertPolicy) Type() CommandType     { return CmdUpsertPolicy }
func (*DeletePolicy) Type() CommandType     { return CmdDeletePolicy }

// Result is what an accepted command returns.
type Result struct {
	// Index is the raft index of the entry; after it is applied, the
	// published Snapshot has Version == Index.
	Index uint64 `json:"index"`
	// Created is true when an upsert created the resource.
	Created bool `json:"created,omitempty"`
}

// Response is the value FSM.Apply returns for every entry.
type Response struct {
	Result Result
	// Err is a domain error (ErrNotFound, ErrExists, ErrConflict,
	// ErrInvalid); the state is unchanged when it is set.
	Err error
	// Skipped is true for an ignorable entry of a type this build does not know.
	Skipped bool
	// Value is a section's result for a section entry (see Section.Apply).
	Value any
}
