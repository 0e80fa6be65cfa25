package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Errors returned by this package.
var (
	// ErrNilRun is returned when a function is given a nil *Run.
	ErrNilRun = errors.New("report: nil run")
	// ErrNonFinite is returned by WriteJSON when the Run holds a NaN or an
	// infinity, which JSON cannot represent.
	ErrNonFinite = errors.New("report: non-finite number")
)

// File names written by WriteDir.
const (
	JSONFile    = "report.json"
	SummaryFile = "summary.txt"
	ChartFile   = "chart.svg"
)

// Passed reports whether every invariant held. A nil Run, or one without
// any invariant, has not passed: it checked nothing.
func (r *Run) Passed() bool {
	if r == nil || len(r.Invariants) == 0 {
		return false
	}
	for _, inv := range r.Invariants {
		if !inv.OK {
			return false
		}
	}
	return true
}

// Failed returns the invariants that did not hold, in their original order.
func (r *Run) Failed() []Invariant {
	if r == nil {
		return nil
	}
	var out []Invariant
	for _, inv := range r.Invariants {
		if !inv.OK {
			out = append(out, inv)
		}
	}
	return out
}

// WriteJSON writes r as indented JSON followed by a newline. It fails with
// ErrNonFinite, naming the fields, if r holds a NaN or an infinity.
func WriteJSON(w io.Writer, r *Run) error {
	if r == nil {
		return ErrNilRun
	}
	if bad := nonFinite(r); len(bad) > 0 {
		return fmt.Errorf("%w in %v", ErrNonFinite, bad)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: encode json: %w", err)
	}
	return nil
}

// nonFinite lists the fields of r holding a NaN or an infinity (at most a
// few, so that the error stays one line).
func nonFinite(r *Run) []string {
	const maxListed = 5
	var bad []string
	add := func(name string, v float64) {
		if (math.IsNaN(v) || math.IsInf(v, 0)) && len(bad) < maxListed {
			bad = append(bad, name)
		}
	}
	for _, k := range sortedKeys(r.Figures) {
		add(fmt.Sprintf("figures[%q]", k), r.Figures[k])
	}
	for i, s := range r.Shares {
		add(fmt.Sprintf("shares[%d].tokens_per_min", i), s.Tokens)
		add(fmt.Sprintf("shares[%d].requests_per_min", i), s.Requests)
	}
	return bad
}

// WriteDir writes report.json, summary.txt and chart.svg into dir, creating
// it if missing, and returns the paths it wrote. It tries all three files
// even when one fails, so that a Run JSON cannot encode still leaves its
// summary and chart behind; the error joins every failure. Each file is
// written to a temporary name and renamed, so a reader never sees half a
// file.
func WriteDir(dir string, r *Run) ([]string, error) {
	if r == nil {
		return nil, ErrNilRun
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: create %s: %w", dir, err)
	}
	outputs := []struct {
		name  string
		write func(io.Writer, *Run) error
	}{
		{JSONFile, WriteJSON},
		{SummaryFile, Summary},
		{ChartFile, Chart},
	}
	var (
		paths []string
		errs  []error
	)
	for _, o := range outputs {
		path := filepath.Join(dir, o.name)
		if err := writeFile(path, r, o.write); err != nil {
			errs = append(errs, err)
			continue
		}
		paths = append(paths, path)
	}
	return paths, errors.Join(errs...)
}

// writeFile renders r with write into memory, then writes it to a
// temporary file beside path and renames it into place.
func writeFile(path string, r *Run, write func(io.Writer, *Run) error) error {
	var buf bytes.Buffer
	if err := write(&buf, r); err != nil {
		return fmt.Errorf("report: render %s: %w", filepath.Base(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	_, err = tmp.Write(buf.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
