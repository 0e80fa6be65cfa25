package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

var seedBodies = []string{
	`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!"}]}`,
	`{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"max_tokens":10,"messages":[{"role":"system","content":"Be \"brief\".\n"},{"role":"user","name":"a","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"u"}}]}],"tools":[{"type":"function","function":{"name":"f"}}]}`,
	`{"model":"m","prompt":["a","b"],"best_of":2,"n":1,"stream":false}`,
	`{"model":"e","input":[[1,2],[3]]}`,
	`{"mod\u0065l":"x","messages":[{"role":"user","content":null,"tool_calls":[{"id":"1"}]}],"model":"y"}`,
	`{"messages":[],"max_completion_tokens":-1}`,
	`[1,2]`, `{"a":`, ``, `{}`, `{"stream_options":null,"stream":true}`,
}

func FuzzParse(f *testing.F) {
	for i, b := range seedBodies {
		f.Add(uint8(i), []byte(b), i%2 == 0)
	}
	e := NewEstimator()
	f.Fuzz(func(t *testing.T, epByte uint8, body []byte, modelOptional bool) {
		ep := Endpoint(epByte % 3)
		req, err := Parse(ep, body, ParseOptions{ModelOptional: modelOptional})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not *Error", err)
			}
			if !json.Valid(pe.AppendBody(nil)) {
				t.Fatalf("error body is not JSON: %s", pe.AppendBody(nil))
			}
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("Parse accepted what encoding/json rejects: %v", err)
		}
		if raw, ok := m["model"]; ok && string(raw) != "null" {
			var model string
			if err := json.Unmarshal(raw, &model); err != nil {
				t.Fatalf("model %s: %v", raw, err)
			}
			// encoding/json replaces invalid UTF-8 with U+FFFD; Parse keeps
			// the bytes (an unknown model either way), so compare only
			// names that were valid as sent.
			if utf8.Valid(raw) && model != req.Model {
				t.Fatalf("Model = %q, encoding/json reads %q", req.Model, model)
			}
		}
		if ep != EndpointEmbeddings {
			var stream bool
			json.Unmarshal(m["stream"], &stream)
			if stream != req.Stream {
				t.Fatalf("Stream = %v, encoding/json reads %v", req.Stream, stream)
			}
		}
		for _, enc := range encodings {
			if n := e.PromptTokens(enc, ep, body, &req); n < 0 {
				t.Fatalf("PromptTokens = %d", n)
			}
		}
	})
}

func FuzzRewrite(f *testing.F) {
	for i, b := range seedBodies {
		f.Add([]byte(b), "gpt-4o-mini", i%2 == 0, i%3 == 0)
	}
	f.Add([]byte(`{"model":"a"}`), "q\"\\\n\x00é", true, true)
	f.Fuzz(func(t *testing.T, body []byte, model string, setModel, forceUsage bool) {
		in := bytes.Clone(body)
		out, err := Rewrite(body, model, setModel, forceUsage)
		if !bytes.Equal(body, in) {
			t.Fatal("Rewrite modified its input")
		}
		var before map[string]json.RawMessage
		if json.Unmarshal(body, &before) != nil || before == nil {
			return // not a JSON object: only the absence of panics is required
		}
		if err != nil {
			if errors.Is(err, ErrTooManyEdits) {
				return
			}
			t.Fatalf("Rewrite of a JSON object: %v", err)
		}
		var after map[string]json.RawMessage
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		for k, v := range before {
			if setModel && k == "model" || forceUsage && k == "stream_options" {
				continue
			}
			if !bytes.Equal(after[k], v) {
				t.Fatalf("field %q changed: %s -> %s", k, v, after[k])
			}
		}
		if again, err := Rewrite(out, model, setModel, forceUsage); err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %s -> %s (%v)", out, again, err)
		}
		if setModel && utf8.ValidString(model) {
			var got string
			if json.Unmarshal(after["model"], &got) != nil || got != model {
				t.Fatalf("model = %s, want %q", after["model"], model)
			}
		}
		if forceUsage {
			var so struct {
				IncludeUsage bool `json:"include_usage"`
			}
			if json.Unmarshal(after["stream_options"], &so) != nil || !so.IncludeUsage {
				t.Fatalf("stream_options = %s", after["stream_options"])
			}
		}
		// Parse(Rewrite(x)) reads the model set.
		for _, ep := range []Endpoint{EndpointChat, EndpointCompletions, EndpointEmbeddings} {
			req, err := Parse(ep, body, ParseOptions{ModelOptional: true})
			if err != nil || !setModel || !utf8.ValidString(model) {
				continue
			}
			req2, err := Parse(ep, out, ParseOptions{ModelOptional: true})
			if forceUsage && !req.Stream && ep != EndpointEmbeddings {
				continue // stream_options without stream is rightly refused
			}
			if err != nil || req2.Model != model {
				t.Fatalf("Parse(Rewrite) = %q, %v; want model %q\n%s", req2.Model, err, model, out)
			}
		}
	})
}

// refEvents parses a whole stream the simplest way, as the oracle for FuzzEventReader.
func refEvents(s string) []string {
	s = strings.TrimPrefix(s, "\ufeff")
	var lines []string
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
	var out, data []string
	has := false
	for _, l := range append(lines, "") {
		switch {
		case l == "":
			if has {
				out = append(out, strings.Join(data, "\n"))
			}
			data, has = nil, false
		case l[0] == ':':
		default:
			name, val, _ := strings.Cut(l, ":")
			val = strings.TrimPrefix(val, " ")
			if name == "data" {
				data, has = append(data, val), true
			}
		}
	}
	return out
}

func FuzzEventReader(f *testing.F) {
	f.Add([]byte("data: {\"a\":1}\n\ndata: [DONE]\n\n"))
	f.Add([]byte(": c\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\ndata: c"))
	f.Add([]byte("\xef\xbb\xbfdata:x\r\rdata\n\n\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		want := refEvents(string(stream))
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(stream),
			"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
			"half":     iotest.HalfReader(bytes.NewReader(stream)),
			"data+EOF": iotest.DataErrReader(bytes.NewReader(stream)),
		} {
			got, err := readAll(NewEventReaderSize(r, 1<<16))
			if err != io.EOF {
				t.Fatalf("%s: ended with %v", name, err)
			}
			if len(got) != len(want) || strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("%s: events %q, want %q", name, got, want)
			}
		}
		// Buffered never promises an event that Next would wait for.
		for name, src := range map[string]io.Reader{
			"whole": bytes.NewReader(stream),
			"half":  iotest.HalfReader(bytes.NewReader(stream)),
		} {
			g := &gatedReader{r: src}
			er := NewEventReaderSize(g, 1<<16)
			for i := 0; ; i++ {
				g.forbid = er.Buffered()
				_, err := er.Next()
				if g.forbid && (g.readWhileForbidden || err != nil) {
					t.Fatalf("%s: Buffered was true before event %d, but Next read more input (%v) or failed (%v)", name, i, g.readWhileForbidden, err)
				}
				if err != nil {
					break
				}
			}
		}
		for _, data := range want { // WriteEvent frames what it reads back
			var buf bytes.Buffer
			WriteEvent(&buf, []byte(data))
			back, err := NewEventReader(&buf).Next()
			if err != nil || string(back) != data {
				t.Fatalf("round trip of %q: %q, %v", data, back, err)
			}
		}
	})
}

// gatedReader records a Read made while forbid is set.
type gatedReader struct {
	r                  io.Reader
	forbid             bool
	readWhileForbidden bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.forbid {
		g.readWhileForbidden = true
	}
	return g.r.Read(p)
}
