package suite

import (
	"fmt"
	"io"

	"github.com/sluicehq/sluice/chaos/report"
)

// WriteReport writes the run's report files into dir and its summary to
// w, and returns the files written.
func WriteReport(dir string, run *report.Run, w io.Writer) ([]string, error) {
	files, err := report.WriteDir(dir, run)
	if err != nil {
		return files, fmt.Errorf("write report: %w", err)
	}
	if err := report.Summary(w, run); err != nil {
		return files, fmt.Errorf("summary: %w", err)
	}
	return files, nil
}
