package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/fsm"
)

// sumSection adds {"add":n} bodies to a total; negative n is refused by
// Apply, a non-JSON body by Validate.
type sumSection struct {
	total  atomic.Int64
	lastAt atomic.Int64
}

func (*sumSection) Name() string { return "sum" }
func (*sumSection) Type() uint8  { return uint8(fsm.CmdUsageBatch) }

func (*sumSection) Validate(body []byte) error {
	var b struct{ Add int64 }
	return json.Unmarshal(body, &b)
}

func (s *sumSection) Apply(_ uint64, at time.Time, body []byte) (any, error) {
	var b struct{ Add int64 }
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	if b.Add < 0 {
		return nil, errors.New("negative add")
	}
	s.lastAt.Store(at.UnixNano())
	return map[string]int64{"total": s.total.Add(b.Add)}, nil
}

func (s *sumSection) Snapshot() ([]byte, error) { return json.Marshal(s.total.Load()) }

func (s *sumSection) Restore(b []byte) error {
	var v int64
	if len(b) > 0 {
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
	}
	s.total.Store(v)
	return nil
}

func TestApplySection(t *testing.T) {
	sections := map[string]*sumSection{}
	tc := newTestCluster(t)
	var nodes []*testNode
	for _, id := range []string{"n1", "n2", "n3"} {
		sec := &sumSection{}
		sections[id] = sec
		n := tc.newNode(id, func(c *Config) { c.Sections = []fsm.Section{sec} })
		tc.start(n)
		nodes = append(nodes, n)
	}
	leader := tc.waitLeader(10 * time.Second)
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	ctx := context.Background()
	cases := []struct {
		name    string
		via     *testNode
		typ     uint8
		body    string
		want    string // the JSON result
		wantErr error
		errText string
	}{
		{name: "from the leader", via: leader, typ: 32, body: `{"add":2}`, want: `{"total":2}`},
		{name: "forwarded from a follower", via: follower, typ: 32, body: `{"add":5}`, want: `{"total":7}`},
		{name: "type no section owns", via: follower, typ: 40, body: `{}`, wantErr: ErrInvalid},
		{name: "not a section type", via: follower, typ: 3, body: `{}`, wantErr: ErrInvalid},
		{name: "refused by Validate", via: follower, typ: 32, body: `nope`, wantErr: ErrInvalid},
		{name: "refused by Apply, forwarded", via: follower, typ: 32, body: `{"add":-1}`, errText: "negative add"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := time.Now()
			got, err := c.via.c.ApplySection(ctx, c.typ, []byte(c.body))
			switch {
			case c.wantErr != nil || c.errText != "":
				if err == nil || (c.wantErr != nil && !errors.Is(err, c.wantErr)) || !strings.Contains(fmt.Sprint(err), c.errText) {
					t.Fatalf("err %v, want %v %q", err, c.wantErr, c.errText)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if string(got) != c.want {
					t.Errorf("result %s, want %s", got, c.want)
				}
				// Applied on the calling node before ApplySection returns,
				// with the time the entry was accepted.
				sec := sections[c.via.id]
				var want map[string]int64
				_ = json.Unmarshal([]byte(c.want), &want)
				if sec.total.Load() != want["total"] {
					t.Errorf("local total %d, want %d", sec.total.Load(), want["total"])
				}
				if at := time.Unix(0, sec.lastAt.Load()); at.Before(before.Add(-time.Second)) || at.After(time.Now()) {
					t.Errorf("section saw at=%v", at)
				}
			}
		})
	}
	waitFor(t, 5*time.Second, "every replica's section to agree", func() error {
		for id, s := range sections {
			if s.total.Load() != 7 {
				return fmt.Errorf("%s has %d", id, s.total.Load())
			}
		}
		return nil
	})
	// Configuration writes keep working beside the section, and section
	// writes leave the configuration version alone.
	res := applyOK(t, follower.c, &fsm.ApplyConfig{Config: sampleConfig()})
	if _, err := follower.c.ApplySection(ctx, 32, []byte(`{"add":1}`)); err != nil {
		t.Fatal(err)
	}
	if v := follower.c.Snapshot().Version; v != res.Index {
		t.Errorf("config version %d after a section write, want %d", v, res.Index)
	}
}

func TestSectionsConfigValidated(t *testing.T) {
	cfg := testConfig("n1", t.TempDir(), "x")
	cfg.Sections = []fsm.Section{&sumSection{}, &sumSection{}}
	if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("two sections with one type: %v", err)
	}
}
