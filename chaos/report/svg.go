package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// svg accumulates an SVG document. Every string that comes from the Run
// passes through esc; numbers are printed with one decimal so the output
// is deterministic and small.
type svg struct{ buf bytes.Buffer }

func (s *svg) printf(format string, args ...any) { fmt.Fprintf(&s.buf, format, args...) }

// esc escapes s for XML text and attribute values. Characters XML cannot
// carry at all (most control characters) become U+FFFD.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}

// num formats a coordinate.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "0"
	}
	v = math.Round(v*10) / 10
	if v == 0 {
		return "0" // no "-0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// clip shortens s to at most n runes, marking the cut with an ellipsis.
func clip(s string, n int) string {
	s = oneLine(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// text writes a text element; attrs is raw attribute text (already safe).
func (s *svg) text(x, y float64, attrs, body string) {
	s.printf(`<text x="%s" y="%s" %s>%s</text>`+"\n", num(x), num(y), attrs, esc(body))
}

func (s *svg) line(x1, y1, x2, y2 float64, attrs string) {
	s.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" %s/>`+"\n", num(x1), num(y1), num(x2), num(y2), attrs)
}

func (s *svg) rect(x, y, w, h float64, attrs string) {
	if w < 0 {
		x, w = x+w, -w
	}
	if h < 0 {
		y, h = y+h, -h
	}
	s.printf(`<rect x="%s" y="%s" width="%s" height="%s" %s/>`+"\n", num(x), num(y), num(w), num(h), attrs)
}

// nodeColours are distinguishable colours for node lines; red is kept for
// limits and over-limit windows.
var nodeColours = []string{
	"#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
	"#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79",
}

// nodeDashes vary the line style once the colours run out.
var nodeDashes = []string{"", "6 3", "2 2", "8 3 2 3"}

func nodeStyle(i int) (colour, dash string) {
	return nodeColours[i%len(nodeColours)], nodeDashes[(i/len(nodeColours))%len(nodeDashes)]
}

// faultColours colour each fault kind's band, line and label.
var faultColours = map[string]string{
	"sigkill":         "#6d4c41",
	"leader-kill":     "#c2185b",
	"restart":         "#00838f",
	"rolling-restart": "#1565c0",
	"pause":           "#ef6c00",
	"partition":       "#6a1b9a",
	"netem":           "#558b2f",
	"region-down":     "#455a64",
	"429-storm":       "#b08800",
}

func faultColour(kind string) string {
	if c, ok := faultColours[kind]; ok {
		return c
	}
	return "#616161"
}

const (
	colourLimit  = "#d62728"
	colourOver   = "#d62728"
	colourTokens = "#6baed6"
	colourReqs   = "#9e9e9e"
	colourPass   = "#2e7d32"
	colourGrid   = "#e0e0e0"
	colourAxis   = "#616161"
	fontFamily   = `font-family="Helvetica, Arial, sans-serif"`
)
