package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll returns the data of every event, and the error that ended the stream.
func readAll(r *EventReader) ([]string, error) {
	var out []string
	for {
		data, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, string(data))
	}
}

func TestEventReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []string
	}{
		{"openai", "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, `{"b":2}`, "[DONE]"}},
		{"crlf", "data: one\r\n\r\ndata: two\r\n\r\n", []string{"one", "two"}},
		{"lone cr", "data: one\r\rdata: two\r\r", []string{"one", "two"}},
		{"mixed line ends", "data: a\r\ndata: b\n\rdata: c\r\r\n", []string{"a\nb", "c"}},
		{"comments and other fields", ": keep-alive\n\nevent: message\nid: 7\nretry: 100\n: note\ndata: x\n\n:\n\n", []string{"x"}},
		{"multi-line data", "data: line one\ndata:line two\ndata\ndata:  three\n\n", []string{"line one\nline two\n\n three"}},
		{"empty data", "data:\n\ndata\n\n", []string{"", ""}},
		{"no final blank line", "data: a\n\ndata: last", []string{"a", "last"}},
		{"no final blank line after newline", "data: a\n\ndata: last\n", []string{"a", "last"}},
		{"final cr", "data: a\r", []string{"a"}},
		{"events without data dispatch nothing", "event: ping\n\nid: 1\n\n\n\n", nil},
		{"blank lines between", "\n\n\ndata: a\n\n\n\ndata: b\n\n", []string{"a", "b"}},
		{"bom", "\xef\xbb\xbfdata: a\n\n", []string{"a"}},
		{"field names are exact", "Data: no\ndata : no\ndatum: no\ndata: yes\n\n", []string{"yes"}},
		{"empty stream", "", nil},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"data+EOF": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
		"halves":   func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
	for _, tc := range tests {
		for rname, mk := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				got, err := readAll(NewEventReader(mk(tc.stream)))
				if err != io.EOF {
					t.Fatalf("ended with %v, want io.EOF", err)
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
					t.Fatalf("events %q, want %q", got, tc.want)
				}
			})
		}
	}
}

func TestEventReaderSmallBuffers(t *testing.T) {
	// Events larger than the initial buffer, read in odd-sized pieces.
	big := strings.Repeat("x", 10000)
	stream := "data: " + big + "\n\n: c\n\ndata: " + big + "\ndata: y\n\n"
	got, err := readAll(NewEventReader(iotest.HalfReader(strings.NewReader(stream))))
	if err != io.EOF || len(got) != 2 || got[0] != big || got[1] != big+"\ny" {
		t.Fatalf("got %d events, %v", len(got), err)
	}
}

func TestEventReaderTooLarge(t *testing.T) {
	stream := "data: small\n\ndata: " + strings.Repeat("z", 2000) + "\n\ndata: after\n\n"
	r := NewEventReaderSize(strings.NewReader(stream), 1024)
	if data, err := r.Next(); err != nil || string(data) != "small" {
		t.Fatalf("first event %q, %v", data, err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("oversized event: %v, want ErrEventTooLarge", err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("error is not sticky: %v", err)
	}
	// Many lines that never end an event count too.
	r = NewEventReaderSize(strings.NewReader(strings.Repeat("data: 0123456789\n", 200)), 1024)
	if _, err := r.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("endless event: %v, want ErrEventTooLarge", err)
	}
	// Comments before any data are dropped as they come, so they never fill it.
	r = NewEventReaderSize(strings.NewReader(strings.Repeat(": ping\n", 1000)+"data: ok\n\n"), 1024)
	if data, err := r.Next(); err != nil || string(data) != "ok" {
		t.Fatalf("after many comments: %q, %v", data, err)
	}
}

func TestEventReaderReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewEventReader(io.MultiReader(strings.NewReader("data: a\n\ndata: trunc"), iotest.ErrReader(boom)))
	if data, err := r.Next(); err != nil || string(data) != "a" {
		t.Fatalf("first event %q, %v", data, err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Fatalf("truncated event: %v, want the read error", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestEventReaderNoProgress(t *testing.T) {
	if _, err := NewEventReader(zeroReader{}).Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

func TestIsDone(t *testing.T) {
	for s, want := range map[string]bool{"[DONE]": true, " [DONE] ": true, "[DONE]\n": true, "DONE": false, `{"done":true}`: false, "": false} {
		if IsDone([]byte(s)) != want {
			t.Errorf("IsDone(%q) = %v", s, !want)
		}
	}
}

// countingWriter records each Write.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

func TestWriteEvent(t *testing.T) {
	for _, data := range []string{`{"id":"x","choices":[]}`, "", "[DONE]", "two\nlines", "cr\rlf\r\nend", "trailing\n", strings.Repeat("q", 100<<10)} {
		var w countingWriter
		if err := WriteEvent(&w, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if w.writes != 1 {
			t.Errorf("%d writes, want 1", w.writes)
		}
		if !strings.HasPrefix(w.String(), "data: ") || !strings.HasSuffix(w.String(), "\n\n") {
			t.Errorf("framing: %q", w.String())
		}
		got, err := NewEventReader(&w).Next()
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data)
		if err != nil || string(got) != want {
			t.Errorf("round trip of %.40q: %.40q, %v", data, got, err)
		}
	}
}

// TestEventReaderBuffered: Buffered is true only when a complete event with
// data is already read, so a relay may hold its flush without delaying any
// chunk behind the network.
func TestEventReaderBuffered(t *testing.T) {
	tests := []struct {
		name  string
		input string // all of it arrives in one read
		want  []bool // Buffered after each event
	}{
		{"two events together", "data: a\n\ndata: b\n\n", []bool{true, false}},
		{"second event partial", "data: a\n\ndata: b\n", []bool{false}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []bool{true, false}},
		{"comment only next", "data: a\n\n: keep-alive\n\n", []bool{false}},
		{"event name then data", "data: a\n\nevent: x\ndata: b\n\n", []bool{true, false}},
		{"done follows", "data: {}\n\ndata: [DONE]\n\n", []bool{true, false}},
		{"a field named data0 is not data", "data: a\n\ndata0\n\n", []bool{false}},
		{"data with no value", "data: a\n\nid: 1\ndata\n\n", []bool{true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			er := NewEventReader(&onceReader{b: []byte(tc.input)})
			for i, want := range tc.want {
				if _, err := er.Next(); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if got := er.Buffered(); got != want {
					t.Fatalf("Buffered after event %d = %v, want %v", i, got, want)
				}
			}
		})
	}
}

// onceReader returns b in one read, then blocks forever as a quiet
// upstream would (a test fails by timing out if Next reads again).
type onceReader struct {
	b    []byte
	done bool
}

func (o *onceReader) Read(p []byte) (int, error) {
	if o.done {
		select {}
	}
	o.done = true
	return copy(p, o.b), nil
}
