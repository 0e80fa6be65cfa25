package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// change is what a handler computes from the current image: the next
// configuration and what to write in the audit record.
type change struct {
	config  state.Config
	op      string // apply, upsert, delete
	kind    string // config, provider, deployment, ...
	name    string
	created bool
}

// entry is one row of the command table.
type entry struct {
	name   string
	goType reflect.Type
	decode func([]byte) (Command, error)
	apply  func(cur *image, cmd Command) (change, error)
}

// registry is the table from command type to handler.
type registry struct {
	byType map[CommandType]*entry
}

func newRegistry() *registry { return &registry{byType: map[CommandType]*entry{}} }

// add registers a handler; registering a type twice, or a type with the
// ignorable flag, is a programming error and panics at start-up.
func (r *registry) add(t CommandType, e *entry) {
	if t == 0 || t&IgnorableFlag != 0 {
		panic(fmt.Sprintf("fsm: cannot register command type %d", t))
	}
	if old, dup := r.byType[t]; dup {
		panic(fmt.Sprintf("fsm: command type %d registered twice (%s, %s)", t, old.name, e.name))
	}
	r.byType[t] = e
}

// register adds the handler for command type T; P is *T.
func register[T any, P interface {
	*T
	Command
}](r *registry, name string, apply func(cur *image, cmd P) (change, error)) {
	var zero T
	t := P(&zero).Type()
	r.add(t, &entry{
		name:   name,
		goType: reflect.TypeFor[P](),
		decode: func(b []byte) (Command, error) {
			p := P(new(T))
			if err := json.Unmarshal(b, p); err != nil {
				return nil, err
			}
			return p, nil
		},
		apply: func(cur *image, cmd Command) (change, error) { return apply(cur, cmd.(P)) },
	})
}

// commands is the one table of every command this build applies.
var commands = buildCommands()

func buildCommands() *registry {
	r := newRegistry()
	register(r, "apply-config", applyConfig)
	register(r, "upsert-provider", func(c *image, cmd *UpsertProvider) (change, error) {
		return upsert(providers, c, cmd.Mode, cmd.Provider)
	})
	register(r, "delete-provider", func(c *image, cmd *DeleteProvider) (change, error) {
		return remove(providers, c, cmd.Name)
	})
	register(r, "upsert-deployment", func(c *image, cmd *UpsertDeployment) (change, error) {
		return upsert(deployments, c, cmd.Mode, cmd.Deployment)
	})
	register(r, "delete-deployment", func(c *image, cmd *DeleteDeployment) (change, error) {
		return remove(deployments, c, cmd.Name)
	})
	register(r, "upsert-model", func(c *image, cmd *UpsertModel) (change, error) {
		return upsert(models, c, cmd.Mode, cmd.Model)
	})
	register(r, "delete-model", func(c *image, cmd *DeleteModel) (change, error) {
		return remove(models, c, cmd.Name)
	})
	register(r, "upsert-tenant", func(c *image, cmd *UpsertTenant) (change, error) {
		return upsert(tenants, c, cmd.Mode, cmd.Tenant)
	})
	register(r, "delete-tenant", func(c *image, cmd *DeleteTenant) (change, error) {
		return remove(tenants, c, cmd.Name)
	})
	register(r, "upsert-key", func(c *image, cmd *UpsertKey) (change, error) {
		return upsert(keys, c, cmd.Mode, cmd.Key)
	})
	register(r, "delete-key", func(c *image, cmd *DeleteKey) (change, error) {
		return remove(keys, c, cmd.ID)
	})
	register(r, "upsert-policy", func(c *image, cmd *UpsertPolicy) (change, error) {
		return upsert(policies, c, cmd.Mode, cmd.Policy)
	})
	register(r, "delete-policy", func(c *image, cmd *DeletePolicy) (change, error) {
		return remove(policies, c, cmd.Name)
	})
	return r
}

// ErrUnknownCommand is returned by Encode, Decode and Check for a type this
// build does not know.
var ErrUnknownCommand = errors.New("unknown command type")

// Encode returns the log entry for cmd: its type byte, then its JSON.
func Encode(cmd Command) ([]byte, error) {
	if cmd == nil || reflect.ValueOf(cmd).IsNil() {
		return nil, errors.New("fsm: nil command")
	}
	e, ok := commands.byType[cmd.Type()]
	if !ok || e.goType != reflect.TypeOf(cmd) {
		return nil, fmt.Errorf("%w: %d (%T)", ErrUnknownCommand, cmd.Type(), cmd)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.name, err)
	}
	out := make([]byte, 0, 1+len(body))
	out = append(out, byte(cmd.Type()))
	return append(out, body...), nil
}

// Decode parses a log entry. An ignorable unknown type returns
// (nil, ErrUnknownCommand) as does a plain unknown type; use Check to tell
// which a leader may accept.
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrUnknownCommand)
	}
	t := CommandType(b[0]) &^ IgnorableFlag
	e, ok := commands.byType[t]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCommand, b[0])
	}
	cmd, err := e.decode(b[1:])
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", e.name, err)
	}
	return cmd, nil
}

// Check decides whether a leader may append entry b to the log: it must
// decode (or be an ignorable type), because an entry that every replica
// panics on would take the whole cluster down. Entries forwarded by other
// nodes pass through it before raft sees them.
func Check(b []byte) error {
	if len(b) > 0 && CommandType(b[0])&IgnorableFlag != 0 {
		if _, ok := commands.byType[CommandType(b[0])&^IgnorableFlag]; !ok {
			return nil
		}
	}
	_, err := Decode(b)
	return err
}

// Stamp fills the header's At with now when it is zero, and Actor with
// actor when it is empty. The cluster calls it on the node that accepts a
// write, so Apply never needs a clock.
func Stamp(cmd Command, now time.Time, actor string) {
	h := cmd.CommandHeader()
	if h.At.IsZero() {
		h.At = now.UTC()
	}
	if h.Actor == "" {
		h.Actor = actor
	}
}
