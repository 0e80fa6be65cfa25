package quota

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// TestDurableDayBudget: with a ledger, a day budget counts what the
// ledger holds plus this node's recent charges, and refreshes follow the
// ledger.
func TestDurableDayBudget(t *testing.T) {
	var inLedger atomic.Int64
	l := New(Config{Leased: true})
	l.SetLedger(func(tenant, key string, from, to time.Time) int64 {
		if tenant != "t" || key != "" {
			t.Errorf("ledger asked for %q/%q", tenant, key)
		}
		return inLedger.Load()
	})
	s := l.Tenant(&state.ResolvedTenant{Tenant: &state.Tenant{Name: "t", Limits: state.Limits{TokensPerDay: 100}}})
	now := time.Now()
	admit := func(n int64) error {
		tk, _, err := s.Admit(now.UnixNano(), n, false)
		if err == nil {
			tk.Done(now.UnixNano(), n)
		}
		return err
	}
	if err := admit(60); err != nil {
		t.Fatal(err)
	}
	if err := admit(60); err != ErrDaily {
		t.Fatalf("second 60 tokens of a 100 budget: %v, want ErrDaily", err)
	}
	// Another node used 30 and the ledger has everything: 90 of 100.
	inLedger.Store(90)
	now = now.Add(10 * time.Second) // this node's own charge left its recent window
	l.RefreshBudgets(now)
	if err := admit(20); err != ErrDaily {
		t.Fatalf("20 tokens with 90 of 100 used: %v, want ErrDaily", err)
	}
	if err := admit(10); err != nil {
		t.Fatalf("10 tokens with 90 of 100 used: %v", err)
	}
}

// TestBatchHeadroom: while interactive requests asked for a deployment
// within its token window, batch charges of their own stop at the batch
// fraction of the capacity; without interactive demand they may use all
// of it.
func TestBatchHeadroom(t *testing.T) {
	d := NewDeployment(&state.Deployment{Name: "d", RPM: 600, TPM: 6_000_000,
		RPMWindow: state.Duration(time.Second), TPMWindow: state.Duration(10 * time.Second)}, DefaultSlots, false)
	d.SetBatchFraction(0.5)
	now := time.Now().UnixNano()
	count := func(batch bool) (n int) {
		for range 20 {
			if _, _, err := d.ReserveClass(now, 10, batch); err == nil {
				n++
			}
		}
		return n
	}
	// No interactive demand yet: batch may take the whole window (10).
	if n := count(true); n != 10 {
		t.Fatalf("batch alone admitted %d of 10", n)
	}
	// A window later, an interactive request arrives: batch stops at 5.
	now += int64(2 * time.Second)
	if _, _, err := d.ReserveClass(now, 10, false); err != nil {
		t.Fatal(err)
	}
	if n := count(true); n != 5 {
		t.Fatalf("batch with interactive demand admitted %d, want 5 (half of 10)", n)
	}
	if _, _, err := d.ReserveClass(now, 10, true); err != ErrBatchHeadroom {
		t.Fatalf("batch over its fraction: %v, want ErrBatchHeadroom", err)
	}
	// Interactive requests still get the rest.
	if n := count(false); n != 4 {
		t.Fatalf("interactive admitted %d of the remaining 4", n)
	}
	// A cancelled batch reservation gives its part of the fraction back.
	now += int64(2 * time.Second)
	if _, _, err := d.ReserveClass(now, 10, false); err != nil {
		t.Fatal(err)
	}
	var last Reservation
	for range 5 {
		r, _, err := d.ReserveClass(now, 10, true)
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	d.Cancel(last)
	if _, _, err := d.ReserveClass(now, 10, true); err != nil {
		t.Fatalf("batch after a cancelled batch reservation: %v", err)
	}
	// Interactive demand of 8 of 10 a window: batch gets only what it
	// leaves with 10% to spare (10 - 8.8 = 1.2, so one), although it is
	// far from its fraction.
	now += int64(2 * time.Second)
	if n := count(false); n != 10 {
		t.Fatalf("interactive alone admitted %d of 10", n)
	}
	now += int64(2 * time.Second)
	for range 8 {
		if _, _, err := d.ReserveClass(now, 10, false); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(true); n != 1 {
		t.Fatalf("batch beside interactive demand of 8 admitted %d, want 1", n)
	}
}

// TestBatchYieldsWhenInteractiveIsShort: once an interactive charge finds
// the share spent, batch charges take nothing, even below their fraction,
// until a second passes without that; then the fraction rule is back.
func TestBatchYieldsWhenInteractiveIsShort(t *testing.T) {
	d := NewDeployment(&state.Deployment{Name: "d", RPM: 600, TPM: 6_000_000,
		RPMWindow: state.Duration(time.Second), TPMWindow: state.Duration(10 * time.Second)}, DefaultSlots, false)
	d.SetBatchFraction(0.5)
	now := time.Now().UnixNano()
	for i := range 10 {
		if _, _, err := d.ReserveClass(now, 10, false); err != nil {
			t.Fatalf("interactive charge %d of the 10 the window holds: %v", i+1, err)
		}
	}
	if _, _, err := d.ReserveClass(now, 10, false); err != ErrRequests {
		t.Fatalf("11th interactive charge: %v, want ErrRequests", err)
	}
	// The share grows (a new round): batch still yields right after the
	// interactive refusal, although the window is now only half used.
	d.SetCapacity(20, Unlimited)
	_, wait, err := d.ReserveClass(now+int64(100*time.Millisecond), 10, true)
	if err != ErrBatchHeadroom || wait != shareWait {
		t.Fatalf("batch right after an interactive refusal: %v (wait %v), want ErrBatchHeadroom after %v", err, wait, shareWait)
	}
	if _, _, err := d.ReserveClass(now+int64(100*time.Millisecond), 10, false); err != nil {
		t.Fatalf("interactive charge after the share grew: %v", err)
	}
	// A window and a second later nothing was refused: batch is back
	// under its fraction.
	later := now + int64(1100*time.Millisecond)
	if _, _, err := d.ReserveClass(later, 10, true); err != nil {
		t.Fatalf("batch a second after the last interactive refusal: %v", err)
	}
}
