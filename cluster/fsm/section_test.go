package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// counterSection is a small section: batches {"id":n,"add":k} add k to a
// total once per id; its state is the total and the highest id applied.
type counterSection struct {
	typ   uint8
	state atomic.Pointer[counterState]
}

type counterState struct {
	Total  int64     `json:"total"`
	LastID int64     `json:"last_id"`
	At     time.Time `json:"at"`
}

type counterBody struct {
	ID  int64 `json:"id"`
	Add int64 `json:"add"`
}

func newCounter(typ uint8) *counterSection {
	s := &counterSection{typ: typ}
	s.state.Store(&counterState{})
	return s
}

func (s *counterSection) Name() string { return "counter" }
func (s *counterSection) Type() uint8  { return s.typ }

func (s *counterSection) Validate(body []byte) error {
	var b counterBody
	return json.Unmarshal(body, &b)
}

func (s *counterSection) Apply(_ uint64, at time.Time, body []byte) (any, error) {
	var b counterBody
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	cur := s.state.Load()
	if b.ID <= cur.LastID {
		return "duplicate", nil
	}
	if b.Add < 0 {
		return nil, errors.New("negative add")
	}
	s.state.Store(&counterState{Total: cur.Total + b.Add, LastID: b.ID, At: at})
	return "applied", nil
}

func (s *counterSection) Snapshot() ([]byte, error) { return json.Marshal(s.state.Load()) }

func (s *counterSection) Restore(b []byte) error {
	st := &counterState{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, st); err != nil {
			return err
		}
	}
	s.state.Store(st)
	return nil
}

func sectionEntry(t *testing.T, typ uint8, at time.Time, id, add int64) []byte {
	t.Helper()
	b, err := EncodeSection(typ, at, fmt.Appendf(nil, `{"id":%d,"add":%d}`, id, add))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSectionApply(t *testing.T) {
	sec := newCounter(uint8(CmdUsageBatch))
	f := New(nil, sec)
	if r := applyCmd(t, f, 1, &ApplyConfig{Header: hdr("setup"), Config: baseConfig()}); r.Err != nil {
		t.Fatal(r.Err)
	}
	cases := []struct {
		name      string
		id, add   int64
		wantValue any
		wantErr   bool
		wantTotal int64
	}{
		{name: "first batch", id: 1, add: 5, wantValue: "applied", wantTotal: 5},
		{name: "second batch", id: 2, add: 7, wantValue: "applied", wantTotal: 12},
		{name: "retried batch is a duplicate", id: 2, add: 7, wantValue: "duplicate", wantTotal: 12},
		{name: "older retry is a duplicate", id: 1, add: 5, wantValue: "duplicate", wantTotal: 12},
		{name: "refused body is a domain error", id: 3, add: -1, wantErr: true, wantTotal: 12},
	}
	for i, tc := range cases {
		idx := uint64(2 + i)
		at := t0.Add(time.Duration(i) * time.Minute)
		resp := f.Apply(&raft.Log{Index: idx, Data: sectionEntry(t, sec.Type(), at, tc.id, tc.add)}).(Response)
		if (resp.Err != nil) != tc.wantErr {
			t.Fatalf("%s: err %v", tc.name, resp.Err)
		}
		if !tc.wantErr && resp.Value != tc.wantValue {
			t.Errorf("%s: value %v, want %v", tc.name, resp.Value, tc.wantValue)
		}
		if resp.Result.Index != idx || f.AppliedIndex() != idx {
			t.Errorf("%s: index %d applied %d, want %d", tc.name, resp.Result.Index, f.AppliedIndex(), idx)
		}
		if got := sec.state.Load().Total; got != tc.wantTotal {
			t.Errorf("%s: total %d, want %d", tc.name, got, tc.wantTotal)
		}
	}
	if got := sec.state.Load().At; !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("section saw at=%v, want the stamped time of its last applied entry", got)
	}
	// Section entries do not touch the configuration, its version or the audit log.
	if f.State().Version != 1 || len(f.AuditLog()) != 1 {
		t.Errorf("version %d audit %d after section writes, want 1 and 1", f.State().Version, len(f.AuditLog()))
	}
}

func TestSectionCheck(t *testing.T) {
	f := New(nil, newCounter(uint8(CmdUsageBatch)))
	plain := New(nil)
	good := sectionEntry(t, uint8(CmdUsageBatch), t0, 1, 1)
	other := sectionEntry(t, uint8(CmdQuotaLease), t0, 1, 1)
	bad, _ := EncodeSection(uint8(CmdUsageBatch), t0, []byte("not json"))
	cfg, _ := Encode(&ApplyConfig{Config: baseConfig()})
	cases := []struct {
		name string
		f    *FSM
		b    []byte
		want error
	}{
		{"registered section", f, good, nil},
		{"config command still accepted", f, cfg, nil},
		{"section type not registered here", f, other, ErrUnknownCommand},
		{"section body refused by Validate", f, bad, ErrInvalid},
		{"short section entry", f, good[:4], ErrInvalid},
		{"FSM without sections refuses", plain, good, ErrUnknownCommand},
		{"package Check refuses section types", nil, good, ErrUnknownCommand},
	}
	for _, tc := range cases {
		var err error
		if tc.f == nil {
			err = Check(tc.b)
		} else {
			err = tc.f.Check(tc.b)
		}
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: Check = %v, want %v", tc.name, err, tc.want)
		}
	}
	// An FSM without the section panics on the entry, like any unknown type.
	mustPanic(t, "unknown command type 32", func() { plain.Apply(&raft.Log{Index: 1, Data: good}) })
}

func TestSectionRegistration(t *testing.T) {
	cases := []struct {
		name string
		secs []Section
		want string
	}{
		{"below range", []Section{newCounter(31)}, "outside 32-63"},
		{"above range", []Section{newCounter(64)}, "outside 32-63"},
		{"twice", []Section{newCounter(40), newCounter(40)}, "registered twice"},
	}
	for _, tc := range cases {
		if err := ValidateSections(tc.secs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ValidateSections = %v", tc.name, err)
		}
		mustPanic(t, tc.want, func() { New(nil, tc.secs...) })
	}
	if err := ValidateSections([]Section{newCounter(32), newCounter(33)}); err != nil {
		t.Errorf("valid sections: %v", err)
	}
}

func TestSectionSnapshotRestore(t *testing.T) {
	sec := newCounter(uint8(CmdUsageBatch))
	f := New(nil, sec)
	applyCmd(t, f, 1, &ApplyConfig{Header: hdr("setup"), Config: baseConfig()})
	f.Apply(&raft.Log{Index: 2, Data: sectionEntry(t, sec.Type(), t0, 1, 40)})
	f.Apply(&raft.Log{Index: 3, Data: sectionEntry(t, sec.Type(), t0, 2, 2)})
	data := persist(t, f)

	t.Run("round trip", func(t *testing.T) {
		sec2 := newCounter(uint8(CmdUsageBatch))
		g := New(nil, sec2)
		if err := g.Restore(ioNopCloser{bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
		if got := *sec2.state.Load(); got.Total != 42 || got.LastID != 2 {
			t.Errorf("restored section %+v", got)
		}
		if g.AppliedIndex() != 3 || g.State().Version != 1 {
			t.Errorf("applied %d version %d", g.AppliedIndex(), g.State().Version)
		}
		// Exactly once survives the snapshot: a retry of batch 2 is a duplicate.
		resp := g.Apply(&raft.Log{Index: 4, Data: sectionEntry(t, sec2.Type(), t0, 2, 2)}).(Response)
		if resp.Value != "duplicate" || sec2.state.Load().Total != 42 {
			t.Errorf("retry after restore: %v total %d", resp.Value, sec2.state.Load().Total)
		}
		if again := persist(t, New(nil, newCounter(32))); bytes.Equal(again, data) {
			t.Error("an empty FSM wrote the same snapshot")
		}
		var buf bytes.Buffer
		if err := f.WriteSnapshot(&buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
			t.Errorf("WriteSnapshot differs from Persist (err %v)", err)
		}
	})
	t.Run("snapshot without the section restores it empty", func(t *testing.T) {
		old := persist(t, newBaseFSM(t))
		sec2 := newCounter(uint8(CmdUsageBatch))
		sec2.state.Store(&counterState{Total: 99, LastID: 9})
		g := New(nil, sec2)
		if err := g.Restore(ioNopCloser{bytes.NewReader(old)}); err != nil {
			t.Fatal(err)
		}
		if got := *sec2.state.Load(); got.Total != 0 || got.LastID != 0 {
			t.Errorf("section not emptied: %+v", got)
		}
	})
	t.Run("unknown section record is skipped", func(t *testing.T) {
		g := New(nil) // no sections
		if err := g.Restore(ioNopCloser{bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
		if len(g.Config().Keys) != 1 {
			t.Errorf("config not restored")
		}
		if _, err := ReadSnapshot(bytes.NewReader(data)); err != nil {
			t.Errorf("ReadSnapshot: %v", err)
		}
	})
	t.Run("bad section state fails the restore", func(t *testing.T) {
		bad := append(append([]byte{}, data[:len(data)-4]...), byte(33|ignorableRecord), 1, '{', byte(recEnd), 2, '{', '}')
		lease := newCounter(33)
		g := New(nil, lease)
		before := g.State()
		if err := g.Restore(ioNopCloser{bytes.NewReader(bad)}); err == nil {
			t.Fatal("restore accepted a section state its section refuses")
		}
		if g.State() != before {
			t.Error("failed restore changed the state")
		}
	})
}
