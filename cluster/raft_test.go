package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// TestRaftLogSurvivesTailTruncation replays what a follower does when a new
// leader makes it drop an uncommitted suffix that spans segment files: raft
// calls DeleteRange on the log's tail, keeps appending, and the process is
// later restarted. raft-wal before v0.4.1 left the truncated tail without an
// index block, and the next open failed with "sealed segment has no index
// block", so the node could never start again (hashicorp/raft-wal#31).
func TestRaftLogSurvivesTailTruncation(t *testing.T) {
	cases := []struct {
		name           string
		deleteFrom     uint64
		deleteTo       uint64
		appendAfter    int
		wantLast       uint64
		restartBetween bool
	}{
		{name: "last entry", deleteFrom: 44, deleteTo: 44, appendAfter: 4, wantLast: 47},
		{name: "across segments", deleteFrom: 20, deleteTo: 44, appendAfter: 4, wantLast: 23},
		{name: "across segments then restart twice", deleteFrom: 20, deleteTo: 44, appendAfter: 8, wantLast: 27, restartBetween: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			c.cfg.DataDir = t.TempDir()
			c.cfg.Raft.WALSegmentSize = 4096 // ~14 entries of 256 bytes each
			c.cfg.Raft.SnapshotRetain = 1

			open := func() *raftStores {
				t.Helper()
				s, err := c.openRaftStores()
				if err != nil {
					t.Fatalf("open raft stores: %v", err)
				}
				return s
			}
			appendLogs := func(s *raftStores, n int) {
				t.Helper()
				last, err := s.wal.LastIndex()
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < n; i += 4 {
					batch := make([]*raft.Log, 0, 4)
					for j := 0; j < 4 && i+j < n; j++ {
						idx := last + uint64(i+j) + 1
						batch = append(batch, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: payload(idx)})
					}
					if err := s.wal.StoreLogs(batch); err != nil {
						t.Fatalf("store logs: %v", err)
					}
				}
			}

			s := open()
			appendLogs(s, 44)
			if err := s.wal.DeleteRange(tc.deleteFrom, tc.deleteTo); err != nil {
				t.Fatalf("delete range: %v", err)
			}
			if tc.restartBetween {
				if err := s.close(); err != nil {
					t.Fatal(err)
				}
				s = open()
			}
			appendLogs(s, tc.appendAfter)
			if err := s.close(); err != nil {
				t.Fatal(err)
			}

			s = open()
			defer s.close()
			first, _ := s.wal.FirstIndex()
			last, _ := s.wal.LastIndex()
			if first != 1 || last != tc.wantLast {
				t.Fatalf("after restart the log holds [%d, %d], want [1, %d]", first, last, tc.wantLast)
			}
			for idx := first; idx <= last; idx++ {
				var l raft.Log
				if err := s.wal.GetLog(idx, &l); err != nil {
					t.Fatalf("get log %d after restart: %v", idx, err)
				}
				if !bytes.Equal(l.Data, payload(idx)) {
					t.Fatalf("log %d holds the wrong entry after restart", idx)
				}
			}
		})
	}
}

// payload is a 256-byte entry that names its index, so a misplaced entry is
// caught, not only a missing one.
func payload(idx uint64) []byte {
	b := bytes.Repeat([]byte{'.'}, 256)
	copy(b, fmt.Sprintf("entry %d", idx))
	return b
}
