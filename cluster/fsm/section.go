package fsm

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Section types occupy command types 32-63 (see the constants in
// command.go). A section owns exactly one type; the same number names its
// record in a snapshot.
const (
	// MinSectionType and MaxSectionType bound the command types a Section
	// may own.
	MinSectionType = uint8(32)
	MaxSectionType = uint8(63)
)

// Section is replicated state kept beside the configuration: the usage
// ledger, quota leases. It owns one command type in 32-63 and its own
// state, which travels in the FSM's snapshots as one record.
//
// The interface uses only standard-library types so that a package which
// must not import the cluster can implement it structurally.
//
// A section is owned by one FSM: pass a fresh value to every FSM (tests run
// several nodes in one process).
type Section interface {
	// Name labels the section in logs and errors.
	Name() string
	// Type is the command type the section owns, in 32-63.
	Type() uint8
	// Apply applies one committed entry. It runs on raft's apply goroutine
	// and must be deterministic: no clock (at is the time the node that
	// accepted the entry stamped into it), no randomness, no I/O. A
	// returned error is a domain outcome, the same on every replica: it is
	// handed to the writer and the section must leave its state unchanged.
	// The result must encode to JSON (it crosses the forwarding RPC).
	Apply(index uint64, at time.Time, body []byte) (result any, err error)
	// Snapshot encodes the current state. It is called on the apply
	// goroutine when raft snapshots, and from any goroutine for an
	// operator backup, so it must read a consistent state without racing
	// Apply (for example an immutable view behind an atomic pointer).
	Snapshot() ([]byte, error)
	// Restore replaces the state with one written by Snapshot. A nil or
	// empty b restores the empty state (a snapshot taken before the
	// section existed). It is called on the apply goroutine.
	Restore(b []byte) error
}

// SectionValidator is implemented by a section that can refuse a body
// before the leader appends it to the log; FSM.Check calls it.
type SectionValidator interface {
	Validate(body []byte) error
}

// sectionHeaderLen is the type byte plus the big-endian Unix nanoseconds
// of the time the entry was accepted.
const sectionHeaderLen = 1 + 8

// EncodeSection returns the log entry for a section command: the type
// byte, the acceptance time, then body. The node that accepts the write
// calls it, so Apply never reads a clock.
func EncodeSection(t uint8, at time.Time, body []byte) ([]byte, error) {
	if t < MinSectionType || t > MaxSectionType {
		return nil, fmt.Errorf("%w: %d is not a section type", ErrUnknownCommand, t)
	}
	out := make([]byte, sectionHeaderLen, sectionHeaderLen+len(body))
	out[0] = t
	binary.BigEndian.PutUint64(out[1:], uint64(at.UnixNano()))
	return append(out, body...), nil
}

// decodeSection splits a section entry (its type byte already checked).
func decodeSection(b []byte) (time.Time, []byte, error) {
	if len(b) < sectionHeaderLen {
		return time.Time{}, nil, fmt.Errorf("section entry of %d bytes is shorter than its header", len(b))
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(b[1:sectionHeaderLen]))).UTC()
	return at, b[sectionHeaderLen:], nil
}

// isSectionType reports whether t lies in the range sections own.
func isSectionType(t CommandType) bool {
	return uint8(t) >= MinSectionType && uint8(t) <= MaxSectionType
}

// buildSections indexes sections by type. Two sections with one type, or
// a type outside 32-63, are programming errors and panic, like a command
// registered twice.
func buildSections(list []Section) map[CommandType]Section {
	m := make(map[CommandType]Section, len(list))
	for _, s := range list {
		if s == nil {
			panic("fsm: nil section")
		}
		t := CommandType(s.Type())
		if !isSectionType(t) {
			panic(fmt.Sprintf("fsm: section %s has type %d, outside %d-%d", s.Name(), t, MinSectionType, MaxSectionType))
		}
		if old, dup := m[t]; dup {
			panic(fmt.Sprintf("fsm: section type %d registered twice (%s, %s)", t, old.Name(), s.Name()))
		}
		m[t] = s
	}
	return m
}

// ValidateSections reports the error buildSections would panic with, for
// callers that check their configuration first.
func ValidateSections(list []Section) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	buildSections(list)
	return nil
}

// applySection runs a section entry. A body the section refuses is a
// domain error, not a panic: the section decides what it can decode.
func (f *FSM) applySection(s Section, index uint64, data []byte) Response {
	at, body, err := decodeSection(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: %s at index %d: %v", s.Name(), index, err))
	}
	v, err := s.Apply(index, at, body)
	if err != nil {
		return Response{Result: Result{Index: index}, Err: fmt.Errorf("%s: %w", s.Name(), err)}
	}
	return Response{Result: Result{Index: index}, Value: v}
}

// Check is the package Check that also accepts entries of this FSM's
// sections (validated by the section when it implements
// SectionValidator). Unknown types stay refused.
func (f *FSM) Check(b []byte) error {
	if len(b) > 0 {
		if s, ok := f.sections[CommandType(b[0])]; ok {
			_, body, err := decodeSection(b)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			if v, ok := s.(SectionValidator); ok {
				if err := v.Validate(body); err != nil {
					return fmt.Errorf("%w: %s: %w", ErrInvalid, s.Name(), err)
				}
			}
			return nil
		}
	}
	return Check(b)
}

// restoreSections hands each section its record from a snapshot, or nil
// when the snapshot has none.
func (f *FSM) restoreSections(records map[CommandType][]byte) error {
	for t, s := range f.sections {
		if err := s.Restore(records[t]); err != nil {
			return fmt.Errorf("restore section %s: %w", s.Name(), err)
		}
	}
	return nil
}
