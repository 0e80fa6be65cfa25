package fsm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/cluster/state"
)

// AuditLimit bounds the replicated audit list. It is a constant, not a
// setting, because every replica must trim at the same point.
const AuditLimit = 1000

// AuditEntry records one accepted write.
type AuditEntry struct {
	Index uint64    `json:"index"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor,omitempty"`
	Op    string    `json:"op"`   // apply, upsert, delete
	Kind  string    `json:"kind"` // config, provider, deployment, model, tenant, key, policy
	Name  string    `json:"name,omitempty"`
}

// FSM implements raft.FSM. Apply, Snapshot and Restore are called by raft
// on one goroutine; everything else may be called from any goroutine.
type FSM struct {
	logger   *slog.Logger
	sections map[CommandType]Section // fixed at New

	cur     atomic.Pointer[image]
	applied atomic.Uint64 // index of the last entry handed to Apply or restored

	mu      sync.Mutex
	advance chan struct{} // closed when applied moves; nil when nobody waits
	subs    map[*subscriber]struct{}
}

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM holding the empty configuration (version 0) and the
// given sections, each owned by this FSM from now on. A section type
// outside 32-63, or two sections with one type, panic (see
// ValidateSections).
func New(logger *slog.Logger, sections ...Section) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &FSM{logger: logger, sections: buildSections(sections), subs: map[*subscriber]struct{}{}}
	f.cur.Store(emptyImage())
	return f
}

// Apply applies one committed log entry. It panics on an entry it cannot
// decode, or of an unknown type without IgnorableFlag.
func (f *FSM) Apply(l *raft.Log) any {
	resp := f.apply(l.Index, l.Data)
	f.setApplied(l.Index)
	return resp
}

func (f *FSM) apply(index uint64, data []byte) Response {
	if len(data) == 0 {
		panic(fmt.Sprintf("fsm: empty log entry at index %d", index))
	}
	t := CommandType(data[0])
	if sec, ok := f.sections[t]; ok {
		return f.applySection(sec, index, data)
	}
	e, ok := commands.byType[t&^IgnorableFlag]
	if !ok {
		if t&IgnorableFlag != 0 {
			f.logger.Warn("skipping unknown ignorable command", "type", int(t&^IgnorableFlag), "index", index)
			return Response{Result: Result{Index: index}, Skipped: true}
		}
		panic(fmt.Sprintf("fsm: unknown command type %d at index %d", t, index))
	}
	cmd, err := e.decode(data[1:])
	if err != nil {
		panic(fmt.Sprintf("fsm: undecodable %s at index %d: %v", e.name, index, err))
	}
	cur := f.cur.Load()
	h := cmd.CommandHeader()
	if h.IfVersion != 0 && h.IfVersion != cur.snap.Version {
		return Response{Err: fmt.Errorf("%w: version is %d, not %d", ErrConflict, cur.snap.Version, h.IfVersion)}
	}
	ch, err := e.apply(cur, cmd)
	if err != nil {
		return Response{Err: err}
	}
	snap, err := state.Build(ch.config, index)
	if err != nil {
		return Response{Err: fmt.Errorf("%s %s: %w", ch.op, describe(ch), err)}
	}
	next := &image{
		config: ch.config,
		audit: appendAudit(cur.audit, AuditEntry{
			Index: index, At: h.At, Actor: h.Actor, Op: ch.op, Kind: ch.kind, Name: ch.name,
		}),
		snap: snap,
	}
	f.swap(next)
	return Response{Result: Result{Index: index, Created: ch.created}}
}

func describe(ch change) string {
	if ch.name == "" {
		return ch.kind
	}
	return fmt.Sprintf("%s %q", ch.kind, ch.name)
}

// appendAudit returns a new list: the old one may be held by readers.
func appendAudit(old []AuditEntry, e AuditEntry) []AuditEntry {
	keep := old
	if len(keep) >= AuditLimit {
		keep = keep[len(keep)-AuditLimit+1:]
	}
	out := make([]AuditEntry, 0, len(keep)+1)
	out = append(out, keep...)
	return append(out, e)
}

// swap installs a new image and notifies subscribers.
func (f *FSM) swap(next *image) {
	f.cur.Store(next)
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.offer(next.snap)
	}
}

func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.mu.Lock()
	if f.advance != nil {
		close(f.advance)
		f.advance = nil
	}
	f.mu.Unlock()
}

// State returns the current snapshot. It never returns nil.
func (f *FSM) State() *state.Snapshot { return f.cur.Load().snap }

// Config returns a copy of the current configuration as written (without
// defaults applied).
func (f *FSM) Config() state.Config { return f.cur.Load().config.Clone() }

// AuditLog returns a copy of the audit records, oldest first.
func (f *FSM) AuditLog() []AuditEntry {
	return append([]AuditEntry(nil), f.cur.Load().audit...)
}

// AppliedIndex is the raft index of the last entry this FSM has applied
// (accepted or rejected) or restored.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until AppliedIndex() >= index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		if f.applied.Load() >= index {
			return nil
		}
		f.mu.Lock()
		if f.applied.Load() >= index {
			f.mu.Unlock()
			return nil
		}
		if f.advance == nil {
			f.advance = make(chan struct{})
		}
		ch := f.advance
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// subscriber holds the latest snapshot not yet received.
type subscriber struct{ ch chan *state.Snapshot }

// offer replaces any unread snapshot with s; it never blocks. f.mu is held.
func (s *subscriber) offer(snap *state.Snapshot) {
	select {
	case <-s.ch:
	default:
	}
	s.ch <- snap
}

// Subscribe returns a channel that receives the current snapshot at once
// and then each new one. Delivery never blocks the FSM: a slow receiver
// sees only the latest snapshot. Call cancel to stop; it is idempotent and
// does not close the channel.
func (f *FSM) Subscribe() (<-chan *state.Snapshot, func()) {
	s := &subscriber{ch: make(chan *state.Snapshot, 1)}
	f.mu.Lock()
	f.subs[s] = struct{}{}
	s.offer(f.cur.Load().snap)
	f.mu.Unlock()
	return s.ch, func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}
}

// Snapshot captures the current image and every section's state; Persist
// encodes them beside Apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	secs, err := f.sectionStates()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{img: f.cur.Load(), applied: f.applied.Load(), sections: secs}, nil
}

// sectionStates encodes every section, in type order.
func (f *FSM) sectionStates() ([]sectionState, error) {
	out := make([]sectionState, 0, len(f.sections))
	for t, s := range f.sections {
		b, err := s.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("snapshot section %s: %w", s.Name(), err)
		}
		out = append(out, sectionState{t: t, state: b})
	}
	slices.SortFunc(out, func(a, b sectionState) int { return int(a.t) - int(b.t) })
	return out, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	img, applied, secs, err := readImage(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if err := f.restoreSections(secs); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.swap(img)
	f.setApplied(applied)
	f.logger.Info("restored snapshot", "version", img.snap.Version, "applied", applied)
	return nil
}

// WriteSnapshot writes the current state in the snapshot format, for an
// operator's backup.
func (f *FSM) WriteSnapshot(w io.Writer) error {
	img, applied := f.cur.Load(), f.applied.Load()
	secs, err := f.sectionStates()
	if err != nil {
		return err
	}
	return writeImage(w, img, applied, secs)
}

type fsmSnapshot struct {
	img      *image
	applied  uint64
	sections []sectionState
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeImage(sink, s.img, s.applied, s.sections); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
