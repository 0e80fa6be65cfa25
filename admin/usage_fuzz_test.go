package admin

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice/quota/ledger"
)

// FuzzUsageQuery feeds arbitrary query strings to the usage parameter
// parser: it must never panic, must answer a 400 naming a parameter or a
// query the ledger accepts, and never a window that ends before it starts.
func FuzzUsageQuery(f *testing.F) {
	for _, s := range []string{
		"", "tenant=acme&from=-1h", "group_by=tenant,model,bucket=hour", "from=2026-11-01T00:00:00Z&to=now",
		"bucket=day&format=csv", "from=-7d&to=-1d", "group_by=,", "from=-9223372036854775807ns", "to=+1h&from=-0s",
		"group_by=bucket=minute,bucket=hour", "format=json&key=k%00", "from=-99999999999d",
	} {
		f.Add(s, "")
	}
	f.Add("", "text/csv")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw, accept string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseUsageQuery(q, accept, now)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != 400 || len(ae.Fields) != 1 {
				t.Fatalf("%q: error %v is not a 400 naming one parameter", raw, err)
			}
			return
		}
		if err := p.group.Validate(); err != nil {
			t.Fatalf("%q: parser accepted a grouping the ledger refuses: %v", raw, err)
		}
		if !p.filter.From.IsZero() && !p.filter.To.IsZero() && !p.filter.From.Before(p.filter.To) {
			t.Fatalf("%q: window %v..%v", raw, p.filter.From, p.filter.To)
		}
		if p.format != usageJSON && p.format != usageCSV {
			t.Fatalf("%q: format %q", raw, p.format)
		}
		if _, err := ledger.NewSection().View().Query(p.filter, p.group); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
	})
}
