package suite

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestBuildSchedule(t *testing.T) {
	nodes, regions := []string{"n1", "n2", "n3"}, []string{"eastus", "swedencentral"}
	tests := []struct {
		name      string
		maxLoad   time.Duration
		wantKinds []string // every kind, in any order; nil: only sigkill
		factor    float64
	}{
		{ScheduleSmoke, 45 * time.Second, nil, 0.8},
		{ScheduleCI, 3*time.Minute + 30*time.Second, AllFaults, 0.9},
		{ScheduleLong, 10 * time.Minute, nil, 1.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := BuildSchedule(tt.name, 42, nodes, regions, "n3")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := BuildSchedule(tt.name, 42, nodes, regions, "n3")
			if !reflect.DeepEqual(a, b) {
				t.Fatal("the same seed gave two schedules")
			}
			if a.Load > tt.maxLoad || a.LoadFactor != tt.factor {
				t.Errorf("load %v (max %v), factor %v (want %v)", a.Load, tt.maxLoad, a.LoadFactor, tt.factor)
			}
			var kinds []string
			prevEnd := a.Calm
			for _, st := range a.Steps {
				kinds = append(kinds, st.Kind)
				if st.At < prevEnd {
					t.Errorf("%s at %v overlaps the calm phase or the previous fault (ends %v)", st.Kind, st.At, prevEnd)
				}
				prevEnd = st.At + st.For
				if prevEnd > a.Load {
					t.Errorf("%s ends at %v, after the load (%v)", st.Kind, prevEnd, a.Load)
				}
			}
			if tt.wantKinds != nil {
				got := slices.Sorted(slices.Values(kinds))
				want := slices.Sorted(slices.Values(tt.wantKinds))
				if !reflect.DeepEqual(got, want) {
					t.Errorf("kinds %v, want each of %v once", got, want)
				}
			} else {
				for _, k := range kinds {
					if k != FaultSIGKILL {
						t.Errorf("unexpected kind %s", k)
					}
				}
			}
		})
	}
}

func TestBuildScheduleSeedsDiffer(t *testing.T) {
	nodes, regions := []string{"n1", "n2", "n3"}, []string{"eastus", "swedencentral"}
	orders := map[string]bool{}
	for seed := range int64(20) {
		s, err := BuildSchedule(ScheduleCI, seed, nodes, regions, "n3")
		if err != nil {
			t.Fatal(err)
		}
		key := ""
		for _, st := range s.Steps {
			key += st.Kind + ":" + st.Target + ","
		}
		orders[key] = true
	}
	if len(orders) < 10 {
		t.Errorf("20 seeds gave only %d distinct ci schedules", len(orders))
	}
}

func TestBuildScheduleErrors(t *testing.T) {
	tests := []struct {
		name           string
		schedule       string
		nodes, regions []string
	}{
		{"unknown schedule", "weekly", []string{"n1"}, []string{"r"}},
		{"no nodes", ScheduleCI, nil, []string{"r"}},
		{"no regions", ScheduleCI, []string{"n1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := BuildSchedule(tt.schedule, 1, tt.nodes, tt.regions, ""); err == nil {
				t.Error("no error")
			}
		})
	}
}
