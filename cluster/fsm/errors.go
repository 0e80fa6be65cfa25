package fsm

import (
	"errors"

	"github.com/sluicehq/sluice/cluster/state"
)

// Domain errors returned as the result of a command. They are part of the
// replicated outcome: every replica returns the same one for the same entry.
var (
	// ErrNotFound: the command names a resource that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a create found the resource already present.
	ErrExists = errors.New("already exists")
	// ErrConflict: the command's IfVersion does not match the current version.
	ErrConflict = errors.New("version conflict")
	// ErrInvalid: the command, or the configuration it would produce, is
	// invalid. It is state.ErrInvalid, so errors.Is works with either name,
	// and errors.As finds the *state.ValidationError naming the fields.
	ErrInvalid = state.ErrInvalid
)

// invalid returns a validation error for one field.
func invalid(field, msg string) error {
	return &state.ValidationError{Fields: []*state.FieldError{{Field: field, Msg: msg}}}
}
