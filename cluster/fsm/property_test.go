package fsm

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/sluicehq/sluice/cluster/state"
)

// genCommand draws a command over a small universe of names, so that a
// run mixes accepted writes with every kind of rejection.
func genCommand(t *rapid.T) Command {
	name := rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "name")
	mode := rapid.SampledFrom([]Mode{ModeUpsert, ModeCreate, ModeUpdate}).Draw(t, "mode")
	h := Header{Actor: "p", At: time.Unix(rapid.Int64Range(0, 1e9).Draw(t, "at"), 0).UTC()}
	switch rapid.IntRange(0, 10).Draw(t, "kind") {
	case 0:
		return &UpsertProvider{Header: h, Mode: mode, Provider: state.Provider{Name: name, Kind: state.KindOpenAICompatible, Endpoint: "http://" + name}}
	case 1:
		return &DeleteProvider{Header: h, Name: name}
	case 2:
		return &UpsertDeployment{Header: h, Mode: mode, Deployment: state.Deployment{Name: name,
			Provider: rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "provider"), Upstream: "u",
			TPM: rapid.Int64Range(-1, 1000).Draw(t, "tpm")}}
	case 3:
		return &DeleteDeployment{Header: h, Name: name}
	case 4:
		return &UpsertModel{Header: h, Mode: mode, Model: state.Model{Name: name,
			Deployments: rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "c"}), 0, 2).Draw(t, "deps")}}
	case 5:
		return &DeleteModel{Header: h, Name: name}
	case 6:
		return &UpsertTenant{Header: h, Mode: mode, Tenant: state.Tenant{Name: name}}
	case 7:
		return &DeleteTenant{Header: h, Name: name}
	case 8:
		return &UpsertKey{Header: h, Mode: mode, Key: state.Key{ID: name, Hash: state.HashKey(name), Tenant: "a"}}
	case 9:
		return &DeleteKey{Header: h, ID: name}
	default:
		return &UpsertPolicy{Header: h, Mode: mode, Policy: state.Policy{Name: name}}
	}
}

// TestReplicasAgree applies the same random log to two FSMs, one of which
// is rebuilt from a snapshot half-way, and checks they end identical and
// that every published snapshot is valid.
func TestReplicasAgree(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		a, b := New(nil), New(nil)
		n := rapid.IntRange(1, 60).Draw(rt, "n")
		restoreAt := rapid.IntRange(0, n).Draw(rt, "restoreAt")
		for i := 1; i <= n; i++ {
			data, err := Encode(genCommand(rt))
			if err != nil {
				rt.Fatal(err)
			}
			l := &raft.Log{Index: uint64(i), Data: data}
			ra, rb := a.Apply(l).(Response), b.Apply(l).(Response)
			if (ra.Err == nil) != (rb.Err == nil) || ra.Result != rb.Result {
				rt.Fatalf("replicas disagree at %d: %+v vs %+v", i, ra, rb)
			}
			if err := state.Validate(&a.cur.Load().config); err != nil {
				rt.Fatalf("invalid state after %d: %v", i, err)
			}
			if i == restoreAt {
				var buf bytes.Buffer
				if err := b.WriteSnapshot(&buf); err != nil {
					rt.Fatal(err)
				}
				b = New(nil)
				if err := b.Restore(ioNopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
					rt.Fatal(err)
				}
			}
		}
		var sa, sb bytes.Buffer
		if err := a.WriteSnapshot(&sa); err != nil {
			rt.Fatal(err)
		}
		if err := b.WriteSnapshot(&sb); err != nil {
			rt.Fatal(err)
		}
		if !bytes.Equal(sa.Bytes(), sb.Bytes()) {
			rt.Fatalf("final states differ")
		}
	})
}
