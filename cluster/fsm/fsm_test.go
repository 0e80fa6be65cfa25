package fsm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/cluster/state"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func hdr(actor string) Header { return Header{Actor: actor, At: t0} }

func baseConfig() state.Config {
	return state.Config{
		Providers: []state.Provider{{Name: "az", Kind: state.KindAzure, Endpoint: "https://az.example.com", APIKey: "env:AZ"}},
		Deployments: []state.Deployment{
			{Name: "gpt4o-east", Provider: "az", Upstream: "gpt-4o", TPM: 240000, RPM: 1440},
		},
		Models:   []state.Model{{Name: "gpt-4o", Deployments: []string{"gpt4o-east"}}},
		Tenants:  []state.Tenant{{Name: "team-a"}},
		Keys:     []state.Key{{ID: "k1", Hash: state.HashKey("sk-1"), Tenant: "team-a"}},
		Policies: []state.Policy{{Name: "strict", LimitMode: state.LimitHard}},
	}
}

// applyCmd encodes cmd and applies it at index like raft would.
func applyCmd(t *testing.T, f *FSM, index uint64, cmd Command) Response {
	t.Helper()
	b, err := Encode(cmd)
	if err != nil {
		t.Fatalf("encode %T: %v", cmd, err)
	}
	resp, ok := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(Response)
	if !ok {
		t.Fatalf("Apply returned %T", resp)
	}
	return resp
}

func newBaseFSM(t *testing.T) *FSM {
	t.Helper()
	f := New(nil)
	if r := applyCmd(t, f, 1, &ApplyConfig{Header: hdr("setup"), Config: baseConfig()}); r.Err != nil {
		t.Fatalf("base config: %v", r.Err)
	}
	return f
}

func TestApplyCommands(t *testing.T) {
	dep2 := state.Deployment{Name: "gpt4o-west", Provider: "az", Upstream: "gpt-4o", TPM: 1000}
	cases := []struct {
		name    string
		cmd     Command
		wantErr error
		field   string // for ErrInvalid: a field the error must name
		created bool
		check   func(t *testing.T, s *state.Snapshot)
	}{
		{name: "apply config replaces", cmd: &ApplyConfig{Config: state.Config{}},
			check: func(t *testing.T, s *state.Snapshot) {
				if len(s.Config.Providers) != 0 || len(s.Config.Models) != 0 {
					t.Errorf("config not replaced: %+v", s.Config)
				}
			}},
		{name: "apply invalid config", cmd: &ApplyConfig{Config: state.Config{Models: []state.Model{{Name: "m"}}}},
			wantErr: ErrInvalid, field: "models[0].deployments"},
		{name: "upsert provider new", cmd: &UpsertProvider{Provider: state.Provider{Name: "oa", Kind: state.KindOpenAI, Endpoint: "https://api.openai.com", APIKey: "env:OA"}},
			created: true, check: func(t *testing.T, s *state.Snapshot) {
				if _, ok := s.Provider("oa"); !ok {
					t.Error("provider oa missing")
				}
			}},
		{name: "upsert provider replace", cmd: &UpsertProvider{Provider: state.Provider{Name: "az", Kind: state.KindAzure, Endpoint: "https://az2.example.com", APIKey: "env:AZ"}},
			check: func(t *testing.T, s *state.Snapshot) {
				if p, _ := s.Provider("az"); p.Endpoint != "https://az2.example.com" {
					t.Errorf("endpoint %q", p.Endpoint)
				}
			}},
		{name: "upsert provider literal key", cmd: &UpsertProvider{Provider: state.Provider{Name: "az", Kind: state.KindAzure, Endpoint: "https://az.example.com", APIKey: "sk-secret"}},
			wantErr: ErrInvalid, field: "providers[0].api_key"},
		{name: "create existing provider", cmd: &UpsertProvider{Mode: ModeCreate, Provider: baseConfig().Providers[0]}, wantErr: ErrExists},
		{name: "update missing provider", cmd: &UpsertProvider{Mode: ModeUpdate, Provider: state.Provider{Name: "nope", Kind: state.KindOpenAICompatible, Endpoint: "http://x"}}, wantErr: ErrNotFound},
		{name: "upsert bad mode", cmd: &UpsertProvider{Mode: "merge", Provider: baseConfig().Providers[0]}, wantErr: ErrInvalid, field: "mode"},
		{name: "upsert without name", cmd: &UpsertTenant{Tenant: state.Tenant{}}, wantErr: ErrInvalid, field: "tenant.name"},
		{name: "delete provider in use", cmd: &DeleteProvider{Name: "az"}, wantErr: ErrInvalid, field: "deployments[0].provider"},
		{name: "delete missing provider", cmd: &DeleteProvider{Name: "nope"}, wantErr: ErrNotFound},
		{name: "delete without name", cmd: &DeleteProvider{}, wantErr: ErrInvalid, field: "name"},
		{name: "upsert deployment", cmd: &UpsertDeployment{Deployment: dep2}, created: true,
			check: func(t *testing.T, s *state.Snapshot) {
				if d, ok := s.Deployment("gpt4o-west"); !ok || d.TPM != 1000 {
					t.Errorf("deployment %+v", d)
				}
			}},
		{name: "upsert deployment negative tpm", cmd: &UpsertDeployment{Deployment: state.Deployment{Name: "gpt4o-east", Provider: "az", Upstream: "gpt-4o", TPM: -1}},
			wantErr: ErrInvalid, field: "deployments[0].tpm"},
		{name: "upsert deployment unknown provider", cmd: &UpsertDeployment{Deployment: state.Deployment{Name: "x", Provider: "ghost", Upstream: "u"}},
			wantErr: ErrInvalid, field: "deployments[1].provider"},
		{name: "delete deployment used by model", cmd: &DeleteDeployment{Name: "gpt4o-east"}, wantErr: ErrInvalid, field: "models[0].deployments[0]"},
		{name: "delete missing deployment", cmd: &DeleteDeployment{Name: "ghost"}, wantErr: ErrNotFound},
		{name: "upsert model", cmd: &UpsertModel{Model: state.Model{Name: "mini", StaticResponse: "busy"}}, created: true,
			check: func(t *testing.T, s *state.Snapshot) {
				if m, ok := s.Model("mini"); !ok || m.StaticResponse != "busy" {
					t.Errorf("model %+v", m)
				}
			}},
		{name: "upsert model self fallback", cmd: &UpsertModel{Model: state.Model{Name: "gpt-4o", Deployments: []string{"gpt4o-east"}, Fallbacks: []string{"gpt-4o"}}},
			wantErr: ErrInvalid, field: "models[0].fallbacks[0]"},
		{name: "delete model", cmd: &DeleteModel{Name: "gpt-4o"},
			check: func(t *testing.T, s *state.Snapshot) {
				if _, ok := s.Model("gpt-4o"); ok {
					t.Error("model still there")
				}
			}},
		{name: "delete missing model", cmd: &DeleteModel{Name: "ghost"}, wantErr: ErrNotFound},
		{name: "upsert tenant", cmd: &UpsertTenant{Tenant: state.Tenant{Name: "team-b", Policy: "strict"}}, created: true,
			check: func(t *testing.T, s *state.Snapshot) {
				if tn, ok := s.Tenant("team-b"); !ok || tn.Policy.Name != "strict" {
					t.Errorf("tenant %+v", tn)
				}
			}},
		{name: "upsert tenant unknown policy", cmd: &UpsertTenant{Tenant: state.Tenant{Name: "team-b", Policy: "ghost"}},
			wantErr: ErrInvalid, field: "tenants[1].policy"},
		{name: "delete tenant with keys", cmd: &DeleteTenant{Name: "team-a"}, wantErr: ErrInvalid, field: "keys[0].tenant"},
		{name: "delete missing tenant", cmd: &DeleteTenant{Name: "ghost"}, wantErr: ErrNotFound},
		{name: "upsert key", cmd: &UpsertKey{Key: state.Key{ID: "k2", Hash: state.HashKey("sk-2"), Tenant: "team-a"}}, created: true,
			check: func(t *testing.T, s *state.Snapshot) {
				if k, ok := s.Authenticate("sk-2"); !ok || k.ID != "k2" {
					t.Errorf("key sk-2 does not authenticate")
				}
			}},
		{name: "upsert key bad hash", cmd: &UpsertKey{Key: state.Key{ID: "k2", Hash: "abc", Tenant: "team-a"}},
			wantErr: ErrInvalid, field: "keys[1].hash"},
		{name: "delete key", cmd: &DeleteKey{ID: "k1"},
			check: func(t *testing.T, s *state.Snapshot) {
				if _, ok := s.Authenticate("sk-1"); ok {
					t.Error("deleted key still authenticates")
				}
			}},
		{name: "delete missing key", cmd: &DeleteKey{ID: "ghost"}, wantErr: ErrNotFound},
		{name: "upsert policy", cmd: &UpsertPolicy{Policy: state.Policy{Name: "soft", LimitMode: state.LimitSoft}}, created: true},
		{name: "upsert policy bad retries", cmd: &UpsertPolicy{Policy: state.Policy{Name: "strict", Retry: state.RetryPolicy{MaxAttempts: 99}}},
			wantErr: ErrInvalid, field: "policies[0].retry.max_attempts"},
		{name: "delete policy", cmd: &DeletePolicy{Name: "strict"}},
		{name: "delete missing policy", cmd: &DeletePolicy{Name: "ghost"}, wantErr: ErrNotFound},
		{name: "if-version matches", cmd: &DeletePolicy{Header: Header{IfVersion: 1}, Name: "strict"}},
		{name: "if-version conflict", cmd: &DeletePolicy{Header: Header{IfVersion: 7}, Name: "strict"}, wantErr: ErrConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newBaseFSM(t)
			before := f.State()
			*tc.cmd.CommandHeader() = Header{Actor: "alice", At: t0.Add(time.Minute), IfVersion: tc.cmd.CommandHeader().IfVersion}
			resp := applyCmd(t, f, 2, tc.cmd)
			if f.AppliedIndex() != 2 {
				t.Errorf("applied index %d, want 2", f.AppliedIndex())
			}
			if tc.wantErr != nil {
				if !errors.Is(resp.Err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", resp.Err, tc.wantErr)
				}
				if tc.field != "" {
					var ve *state.ValidationError
					if !errors.As(resp.Err, &ve) {
						t.Fatalf("err %v is not a *state.ValidationError", resp.Err)
					}
					if !hasField(ve, tc.field) {
						t.Errorf("err %v does not name field %q", resp.Err, tc.field)
					}
				}
				if f.State() != before {
					t.Error("rejected command changed the state")
				}
				if n := len(f.AuditLog()); n != 1 {
					t.Errorf("rejected command wrote audit: %d records", n)
				}
				return
			}
			if resp.Err != nil {
				t.Fatalf("unexpected err: %v", resp.Err)
			}
			if resp.Result.Index != 2 || resp.Result.Created != tc.created {
				t.Errorf("result %+v, want index 2 created %v", resp.Result, tc.created)
			}
			s := f.State()
			if s.Version != 2 {
				t.Errorf("snapshot version %d, want 2", s.Version)
			}
			audit := f.AuditLog()
			if len(audit) != 2 {
				t.Fatalf("audit has %d records, want 2", len(audit))
			}
			last := audit[1]
			if last.Index != 2 || last.Actor != "alice" || !last.At.Equal(t0.Add(time.Minute)) {
				t.Errorf("audit record %+v", last)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func hasField(ve *state.ValidationError, field string) bool {
	for _, f := range ve.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

func TestEncodeDecodeEveryCommand(t *testing.T) {
	cfg := baseConfig()
	cmds := []Command{
		&ApplyConfig{Header: hdr("a"), Config: cfg},
		&UpsertProvider{Header: hdr("a"), Mode: ModeCreate, Provider: cfg.Providers[0]},
		&DeleteProvider{Header: hdr("a"), Name: "az"},
		&UpsertDeployment{Header: hdr("a"), Deployment: cfg.Deployments[0]},
		&DeleteDeployment{Header: hdr("a"), Name: "d"},
		&UpsertModel{Header: hdr("a"), Model: cfg.Models[0]},
		&DeleteModel{Header: hdr("a"), Name: "m"},
		&UpsertTenant{Header: hdr("a"), Tenant: cfg.Tenants[0]},
		&DeleteTenant{Header: hdr("a"), Name: "t"},
		&UpsertKey{Header: hdr("a"), Key: cfg.Keys[0]},
		&DeleteKey{Header: hdr("a"), ID: "k"},
		&UpsertPolicy{Header: hdr("a"), Mode: ModeUpdate, Policy: cfg.Policies[0]},
		&DeletePolicy{Header: Header{Actor: "a", At: t0, IfVersion: 9}, Name: "p"},
	}
	if len(cmds) != len(commands.byType) {
		t.Fatalf("test covers %d commands, table has %d", len(cmds), len(commands.byType))
	}
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("encode %T: %v", c, err)
		}
		if CommandType(b[0]) != c.Type() {
			t.Errorf("%T: type byte %d", c, b[0])
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %T: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%T round trip:\n got %+v\nwant %+v", c, got, c)
		}
		if err := Check(b); err != nil {
			t.Errorf("Check(%T) = %v", c, err)
		}
	}
}

// foreign is a Command type the table does not know.
type foreign struct{ Header }

func (*foreign) Type() CommandType { return 60 }

func TestEncodeRefusesUnregistered(t *testing.T) {
	if _, err := Encode(&foreign{}); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Encode((*ApplyConfig)(nil)); err == nil {
		t.Fatal("nil command encoded")
	}
}

func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatalf("did not panic")
		}
		if !strings.Contains(r.(string), want) {
			t.Fatalf("panic %q does not contain %q", r, want)
		}
	}()
	fn()
}

func TestUnknownCommandPanics(t *testing.T) {
	f := newBaseFSM(t)
	mustPanic(t, "unknown command type 60", func() {
		f.Apply(&raft.Log{Index: 2, Data: []byte{60, '{', '}'}})
	})
	if err := Check([]byte{60, '{', '}'}); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("Check accepted an unknown type: %v", err)
	}
}

func TestUndecodableCommandPanics(t *testing.T) {
	f := newBaseFSM(t)
	mustPanic(t, "undecodable upsert-tenant", func() {
		f.Apply(&raft.Log{Index: 2, Data: []byte{byte(CmdUpsertTenant), '{', 'x'}})
	})
	mustPanic(t, "empty log entry", func() { f.Apply(&raft.Log{Index: 3}) })
	if err := Check([]byte{byte(CmdUpsertTenant), '{'}); err == nil {
		t.Error("Check accepted an undecodable entry")
	}
}

func TestIgnorableUnknownCommandSkipped(t *testing.T) {
	f := newBaseFSM(t)
	before := f.State()
	entry := []byte{byte(CmdUsageBatch | IgnorableFlag), '{', '}'}
	if err := Check(entry); err != nil {
		t.Fatalf("Check refused an ignorable entry: %v", err)
	}
	resp := f.Apply(&raft.Log{Index: 2, Data: entry}).(Response)
	if !resp.Skipped || resp.Err != nil {
		t.Fatalf("resp %+v, want skipped", resp)
	}
	if f.State() != before || f.AppliedIndex() != 2 {
		t.Errorf("skipped entry changed state (applied %d)", f.AppliedIndex())
	}
	// A known type with the flag set is applied normally.
	b, _ := Encode(&DeleteKey{Header: hdr("a"), ID: "k1"})
	b[0] |= byte(IgnorableFlag)
	if resp := f.Apply(&raft.Log{Index: 3, Data: b}).(Response); resp.Err != nil || resp.Skipped {
		t.Fatalf("flagged known command: %+v", resp)
	}
	if _, ok := f.State().KeyByID("k1"); ok {
		t.Error("flagged known command not applied")
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	r := newRegistry()
	register(r, "a", applyConfig)
	mustPanic(t, "registered twice", func() { register(r, "b", applyConfig) })
	mustPanic(t, "cannot register", func() { r.add(IgnorableFlag|5, &entry{name: "x"}) })
}

func TestAuditBounded(t *testing.T) {
	f := newBaseFSM(t)
	for i := uint64(2); i < AuditLimit+50; i++ {
		resp := applyCmd(t, f, i, &UpsertTenant{Header: hdr("loop"), Tenant: state.Tenant{Name: "team-b", Plan: "p"}})
		if resp.Err != nil {
			t.Fatal(resp.Err)
		}
	}
	audit := f.AuditLog()
	if len(audit) != AuditLimit {
		t.Fatalf("audit has %d records, want %d", len(audit), AuditLimit)
	}
	if audit[len(audit)-1].Index != AuditLimit+49 || audit[0].Index != 50 {
		t.Errorf("audit spans %d..%d", audit[0].Index, audit[len(audit)-1].Index)
	}
}

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed {
		t.Fatal("sink not closed")
	}
	return sink.Bytes()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f := newBaseFSM(t)
	applyCmd(t, f, 2, &UpsertKey{Header: hdr("bob"), Key: state.Key{ID: "k2", Hash: state.HashKey("sk-2"), Tenant: "team-a",
		Models: []string{"gpt-4o"}, ExpiresAt: ptr(t0.Add(24 * time.Hour))}})
	applyCmd(t, f, 3, &UpsertDeployment{Header: hdr("bob"), Deployment: state.Deployment{Name: "w", Provider: "az", Upstream: "u",
		TPMWindow: state.Duration(5 * time.Second), Weight: 2.5}})
	applyCmd(t, f, 5, &DeleteKey{Header: hdr("bob"), ID: "ghost"}) // rejected, but applied index moves
	data := persist(t, f)

	g := New(nil)
	ch, cancel := g.Subscribe()
	defer cancel()
	<-ch // the empty snapshot
	if err := g.Restore(ioNopCloser{bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if got := <-ch; got.Version != 3 {
		t.Errorf("subscriber got version %d after restore, want 3", got.Version)
	}
	if g.AppliedIndex() != 5 || g.State().Version != 3 {
		t.Errorf("applied %d version %d, want 5 and 3", g.AppliedIndex(), g.State().Version)
	}
	if !reflect.DeepEqual(jsonOf(t, g.Config()), jsonOf(t, f.Config())) {
		t.Errorf("config differs after restore:\n%s\n%s", jsonOf(t, g.Config()), jsonOf(t, f.Config()))
	}
	if !reflect.DeepEqual(g.AuditLog(), f.AuditLog()) {
		t.Errorf("audit differs after restore")
	}
	if again := persist(t, g); !bytes.Equal(again, data) {
		t.Error("snapshot of the restored FSM differs from the original")
	}
	img, err := ReadSnapshot(bytes.NewReader(data))
	if err != nil || img.Version != 3 || len(img.Config.Keys) != 2 {
		t.Fatalf("ReadSnapshot: %+v, %v", img, err)
	}
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	f := newBaseFSM(t)
	data := persist(t, f)
	cases := map[string][]byte{
		"empty":     nil,
		"bad magic": append([]byte("NOT"), data[3:]...),
		"truncated": data[:len(data)-5],
		"unknown record": append(append([]byte{}, data[:len(data)-4]...), // drop recEnd
			byte(50), 2, '{', '}', byte(recEnd), 2, '{', '}'),
	}
	for name, b := range cases {
		g := newBaseFSM(t)
		before := g.State()
		if err := g.Restore(ioNopCloser{bytes.NewReader(b)}); err == nil {
			t.Errorf("%s: restore succeeded", name)
		}
		if g.State() != before {
			t.Errorf("%s: failed restore changed state", name)
		}
	}
	// An unknown record with the ignorable bit is skipped.
	ok := append(append([]byte{}, data[:len(data)-4]...), byte(50|ignorableRecord), 2, '{', '}', byte(recEnd), 2, '{', '}')
	if err := New(nil).Restore(ioNopCloser{bytes.NewReader(ok)}); err != nil {
		t.Errorf("ignorable record: %v", err)
	}
}

func TestSubscribeLatestWins(t *testing.T) {
	f := New(nil)
	ch, cancel := f.Subscribe()
	for i := uint64(1); i <= 5; i++ {
		applyCmd(t, f, i, &UpsertPolicy{Header: hdr("a"), Policy: state.Policy{Name: "p"}})
	}
	if got := <-ch; got.Version != 5 {
		t.Fatalf("slow subscriber got version %d, want the latest (5)", got.Version)
	}
	cancel()
	cancel()
	applyCmd(t, f, 6, &DeletePolicy{Header: hdr("a"), Name: "p"})
	select {
	case s := <-ch:
		t.Fatalf("cancelled subscriber got version %d", s.Version)
	default:
	}
}

func TestWaitApplied(t *testing.T) {
	f := New(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := f.WaitApplied(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 2) }()
	applyCmd(t, f, 1, &UpsertPolicy{Header: hdr("a"), Policy: state.Policy{Name: "p"}})
	applyCmd(t, f, 2, &UpsertPolicy{Header: hdr("a"), Policy: state.Policy{Name: "p", LimitMode: "bogus"}}) // rejected
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type ioNopCloser struct{ *bytes.Reader }

func (ioNopCloser) Close() error { return nil }

func ptr[T any](v T) *T { return &v }

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
