package wire

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestRewrite(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		model      string
		setModel   bool
		forceUsage bool
		want       string
	}{
		{"nothing to do", `{"model": "a",  "x":1}`, "b", false, false, `{"model": "a",  "x":1}`},
		{"set model keeps the rest byte for byte",
			"{\n  \"z\": 1.50,\n  \"model\" : \"gpt-4o\" ,\n  \"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}], \"a\": {\"model\":\"inner\"}\n}",
			"gpt-4o-2024-08-06", true, false,
			"{\n  \"z\": 1.50,\n  \"model\" : \"gpt-4o-2024-08-06\" ,\n  \"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}], \"a\": {\"model\":\"inner\"}\n}"},
		{"set model when absent", `{"messages":[]}`, "m", true, false, `{"model":"m","messages":[]}`},
		{"set model in empty object", `{ }`, "m", true, false, `{"model":"m" }`},
		{"model needing escapes", `{"model":"x"}`, "a\"b\\c\n", true, false, `{"model":"a\"b\\c\n"}`},
		{"set model replaces a non-string", `{"model":null,"n":1}`, "m", true, false, `{"model":"m","n":1}`},
		{"azure keeps model", `{"model":"whatever","stream":true}`, "deployment", false, true,
			`{"stream_options":{"include_usage":true},"model":"whatever","stream":true}`},
		{"usage merged into stream_options", `{"stream":true,"stream_options":{"future":"x"}}`, "", false, true,
			`{"stream":true,"stream_options":{"include_usage":true,"future":"x"}}`},
		{"usage into empty stream_options", `{"stream":true,"stream_options":{}}`, "", false, true,
			`{"stream":true,"stream_options":{"include_usage":true}}`},
		{"include_usage false overridden", `{"stream":true,"stream_options":{"include_usage":false,"b":2}}`, "", false, true,
			`{"stream":true,"stream_options":{"include_usage":true,"b":2}}`},
		{"include_usage null overridden", `{"stream_options":{ "include_usage" : null }}`, "", false, true,
			`{"stream_options":{ "include_usage" : true }}`},
		{"stream_options null replaced", `{"stream":true,"stream_options":null}`, "", false, true,
			`{"stream":true,"stream_options":{"include_usage":true}}`},
		{"both", `{"model":"alias","stream":true,"tools":[{"type":"function"}]}`, "real", true, true,
			`{"stream_options":{"include_usage":true},"model":"real","stream":true,"tools":[{"type":"function"}]}`},
		{"both when absent", `{"stream":true}`, "m", true, true,
			`{"model":"m","stream_options":{"include_usage":true},"stream":true}`},
		{"every duplicate rewritten", `{"model":"a","model":"b","stream_options":{"include_usage":false,"include_usage":false}}`, "m", true, true,
			`{"model":"m","model":"m","stream_options":{"include_usage":true,"include_usage":true}}`},
		{"escaped key recognised", `{"mod\u0065l":"a"}`, "m", true, false, `{"mod\u0065l":"m"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			got, err := Rewrite(body, tc.model, tc.setModel, tc.forceUsage)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Rewrite =\n%s\nwant\n%s", got, tc.want)
			}
			if string(body) != tc.body {
				t.Fatalf("Rewrite modified its input: %s", body)
			}
			if !json.Valid(got) {
				t.Fatalf("output is not JSON: %s", got)
			}
			again, err := Rewrite(got, tc.model, tc.setModel, tc.forceUsage)
			if err != nil || string(again) != string(got) {
				t.Fatalf("Rewrite is not idempotent: %s", again)
			}
			if &again[0] != &got[0] {
				t.Error("a second, no-op Rewrite copied the body")
			}
		})
	}
}

func TestRewriteNoCopyWhenUnchanged(t *testing.T) {
	body := []byte(`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	got, err := Rewrite(body, "m", true, true)
	if err != nil || &got[0] != &body[0] {
		t.Fatalf("Rewrite = %s, %v; want body itself", got, err)
	}
}

func TestRewriteParsesBack(t *testing.T) {
	body := []byte(`{"model":"alias","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}]}`)
	out, err := Rewrite(body, "gpt-4o-mini", true, true)
	if err != nil {
		t.Fatal(err)
	}
	req, err := Parse(EndpointChat, out)
	if err != nil {
		t.Fatal(err)
	}
	if req.Model != "gpt-4o-mini" || !req.IncludeUsage || !req.Stream {
		t.Fatalf("Parse(Rewrite) = %+v", exported(req))
	}
}

func TestRewriteNotObject(t *testing.T) {
	for _, body := range []string{``, `[]`, `"x"`, `{"a":`, `{"a" 1}`} {
		if _, err := Rewrite([]byte(body), "m", true, true); !errors.Is(err, ErrNotObject) {
			t.Errorf("Rewrite(%q) error = %v, want ErrNotObject", body, err)
		}
	}
}
