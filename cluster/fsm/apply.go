package fsm

import (
	"fmt"

	"github.com/sluicehq/sluice/cluster/state"
)

// image is one immutable version of the replicated state. A new image is
// built for every accepted write; the old one is never modified, so readers
// may hold it without locks.
type image struct {
	// config is the configuration as written, without defaults, so that a
	// default changed by a later release applies to old configurations too.
	config state.Config
	// audit holds the newest AuditLimit records, oldest first.
	audit []AuditEntry
	// snap is config built and indexed; snap.Version is the index of the
	// last accepted write.
	snap *state.Snapshot
}

func emptyImage() *image { return &image{snap: state.Empty()} }

func applyConfig(_ *image, cmd *ApplyConfig) (change, error) {
	return change{config: cmd.Config.Clone(), op: "apply", kind: "config"}, nil
}

// resource describes one list of the configuration, for the generic
// upsert and delete below.
type resource[T any] struct {
	kind     string
	keyField string
	items    func(*state.Config) *[]T
	key      func(*T) string
}

var (
	providers = resource[state.Provider]{"provider", "name",
		func(c *state.Config) *[]state.Provider { return &c.Providers },
		func(p *state.Provider) string { return p.Name }}
	deployments = resource[state.Deployment]{"deployment", "name",
		func(c *state.Config) *[]state.Deployment { return &c.Deployments },
		func(d *state.Deployment) string { return d.Name }}
	models = resource[state.Model]{"model", "name",
		func(c *state.Config) *[]state.Model { return &c.Models },
		func(m *state.Model) string { return m.Name }}
	tenants = resource[state.Tenant]{"tenant", "name",
		func(c *state.Config) *[]state.Tenant { return &c.Tenants },
		func(t *state.Tenant) string { return t.Name }}
	keys = resource[state.Key]{"key", "id",
		func(c *state.Config) *[]state.Key { return &c.Keys },
		func(k *state.Key) string { return k.ID }}
	policies = resource[state.Policy]{"policy", "name",
		func(c *state.Config) *[]state.Policy { return &c.Policies },
		func(p *state.Policy) string { return p.Name }}
)

func upsert[T any](r resource[T], cur *image, mode Mode, item T) (change, error) {
	name := r.key(&item)
	if name == "" {
		return change{}, invalid(r.kind+"."+r.keyField, "required")
	}
	switch mode {
	case ModeUpsert, ModeCreate, ModeUpdate:
	default:
		return change{}, invalid("mode", fmt.Sprintf("unknown mode %q (want create, update or empty)", mode))
	}
	// Clone deep-copies every list, so the item can be replaced in place
	// without touching the current image. The upserted item is cloned too:
	// a command's slices must not be shared with the state.
	next := cur.config.Clone()
	item = cloneItem(r, item)
	list := r.items(&next)
	for i := range *list {
		if r.key(&(*list)[i]) == name {
			if mode == ModeCreate {
				return change{}, fmt.Errorf("%s %q: %w", r.kind, name, ErrExists)
			}
			(*list)[i] = item
			return change{config: next, op: "upsert", kind: r.kind, name: name}, nil
		}
	}
	if mode == ModeUpdate {
		return change{}, fmt.Errorf("%s %q: %w", r.kind, name, ErrNotFound)
	}
	*list = append(*list, item)
	return change{config: next, op: "upsert", kind: r.kind, name: name, created: true}, nil
}

func remove[T any](r resource[T], cur *image, name string) (change, error) {
	if name == "" {
		return change{}, invalid(r.keyField, "required")
	}
	next := cur.config.Clone()
	list := r.items(&next)
	for i := range *list {
		if r.key(&(*list)[i]) == name {
			*list = append((*list)[:i], (*list)[i+1:]...)
			return change{config: next, op: "delete", kind: r.kind, name: name}, nil
		}
	}
	return change{}, fmt.Errorf("%s %q: %w", r.kind, name, ErrNotFound)
}

// cloneItem deep-copies one item by cloning a one-item configuration, so
// the copy rules live only in state.Config.Clone.
func cloneItem[T any](r resource[T], item T) T {
	var c state.Config
	*r.items(&c) = []T{item}
	c = c.Clone()
	return (*r.items(&c))[0]
}
