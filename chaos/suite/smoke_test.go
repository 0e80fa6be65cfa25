package suite

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestSmoke runs the smoke schedule end to end (binaries built, three
// processes, one SIGKILL) when SLUICE_CHAOS_SMOKE=1. make chaos runs the
// command instead.
func TestSmoke(t *testing.T) {
	if os.Getenv("SLUICE_CHAOS_SMOKE") != "1" {
		t.Skip("set SLUICE_CHAOS_SMOKE=1 to run the chaos smoke schedule")
	}
	r, err := NewRunner(Options{Schedule: ScheduleSmoke, Seed: 1, Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, inv := range run.Invariants {
		t.Logf("%v %s: %s", inv.OK, inv.Name, inv.Detail)
	}
	for _, n := range run.Notes {
		t.Log(n)
	}
	if !run.Passed() {
		t.Error("an invariant failed")
	}
}
