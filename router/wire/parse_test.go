package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		ep   Endpoint
		opts ParseOptions
		body string
		want Request // only exported fields are compared
	}{
		{"chat minimal", EndpointChat, ParseOptions{},
			`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
			Request{Model: "gpt-4o", Choices: 1}},
		{"chat everything", EndpointChat, ParseOptions{}, ` {
			"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
			"model": "gpt-4.1", "stream": true, "stream_options": {"include_usage": true, "future": 1},
			"max_tokens": 50, "max_completion_tokens": 100, "n": 2, "logprobs": true, "top_logprobs": 3,
			"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
			"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
			"tool_choice": "auto", "user": "u-1", "seed": 7, "unknown_future_field": [1, {"a": null}]
		} `, Request{Model: "gpt-4.1", Stream: true, IncludeUsage: true, MaxTokens: 100, HasMaxTokens: true, Choices: 2}},
		{"chat max_tokens only", EndpointChat, ParseOptions{},
			`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":256}`,
			Request{Model: "m", MaxTokens: 256, HasMaxTokens: true, Choices: 1}},
		{"chat max_tokens zero", EndpointChat, ParseOptions{},
			`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`,
			Request{Model: "m", MaxTokens: 0, HasMaxTokens: true, Choices: 1}},
		{"chat integral float", EndpointChat, ParseOptions{},
			`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":100.0,"n":1e0}`,
			Request{Model: "m", MaxTokens: 100, HasMaxTokens: true, Choices: 1}},
		{"chat nulls are absent", EndpointChat, ParseOptions{},
			`{"model":"m","messages":[{"role":"user","content":null}],"max_tokens":null,"max_completion_tokens":null,"stream":null,"stream_options":null,"n":null}`,
			Request{Model: "m", Choices: 1}},
		{"chat null max_completion_tokens falls back to max_tokens", EndpointChat, ParseOptions{},
			`{"model":"m","messages":[{"role":"user"}],"max_completion_tokens":null,"max_tokens":9}`,
			Request{Model: "m", MaxTokens: 9, HasMaxTokens: true, Choices: 1}},
		{"chat include_usage false", EndpointChat, ParseOptions{},
			`{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Stream: true, Choices: 1}},
		{"chat stream false", EndpointChat, ParseOptions{},
			`{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Choices: 1}},
		{"escaped keys and model", EndpointChat, ParseOptions{},
			`{"mod\u0065l":"gpt-\u0034o","messages":[{"r\u006fle":"user","content":"x"}]}`,
			Request{Model: "gpt-4o", Choices: 1}},
		{"completions string", EndpointCompletions, ParseOptions{},
			`{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi","max_tokens":7,"stream":true,"best_of":3,"n":2,"echo":true}`,
			Request{Model: "gpt-3.5-turbo-instruct", Stream: true, MaxTokens: 7, HasMaxTokens: true, Choices: 3}},
		{"completions array", EndpointCompletions, ParseOptions{},
			`{"model":"m","prompt":["a","b"],"max_completion_tokens":"not read for completions"}`,
			Request{Model: "m", Choices: 1}},
		{"embeddings string", EndpointEmbeddings, ParseOptions{},
			`{"model":"text-embedding-3-small","input":"hello","dimensions":256,"encoding_format":"base64"}`,
			Request{Model: "text-embedding-3-small", Choices: 1}},
		{"embeddings token ids, stream fields not read", EndpointEmbeddings, ParseOptions{},
			`{"model":"e","input":[[1,2,3],[4]],"stream":"ignored","max_tokens":-1}`,
			Request{Model: "e", Choices: 1}},
		{"azure without model", EndpointChat, ParseOptions{ModelOptional: true},
			`{"messages":[{"role":"user","content":"x"}]}`, Request{Choices: 1}},
		{"azure null model", EndpointChat, ParseOptions{ModelOptional: true},
			`{"model":null,"messages":[{"role":"user","content":"x"}]}`, Request{Choices: 1}},
		{"azure empty model", EndpointEmbeddings, ParseOptions{ModelOptional: true},
			`{"model":"","input":"x"}`, Request{Choices: 1}},
		{"azure model kept", EndpointChat, ParseOptions{ModelOptional: true},
			`{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, Request{Model: "gpt-4o", Choices: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.ep, []byte(tc.body), tc.opts)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if exported(got) != tc.want {
				t.Errorf("Parse = %+v, want %+v", exported(got), tc.want)
			}
		})
	}
}

func exported(r Request) Request {
	return Request{Model: r.Model, Stream: r.Stream, IncludeUsage: r.IncludeUsage,
		MaxTokens: r.MaxTokens, HasMaxTokens: r.HasMaxTokens, Choices: r.Choices}
}

func TestParseInvalid(t *testing.T) {
	chat := func(extra string) string {
		return `{"model":"m","messages":[{"role":"user","content":"x"}]` + extra + `}`
	}
	tests := []struct {
		name  string
		ep    Endpoint
		body  string
		param string
		code  string
	}{
		{"not json", EndpointChat, `{"model":`, "", ""},
		{"trailing garbage", EndpointChat, chat("") + "x", "", ""},
		{"empty body", EndpointChat, ``, "", ""},
		{"array body", EndpointChat, `[]`, "", codeType},
		{"string body", EndpointChat, `"hi"`, "", codeType},
		{"too deep", EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, "", codeValue},
		{"missing model", EndpointChat, `{"messages":[{"role":"user","content":"x"}]}`, "model", codeMissing},
		{"null model", EndpointChat, `{"model":null,"messages":[{"role":"user","content":"x"}]}`, "model", codeMissing},
		{"model not string", EndpointChat, `{"model":5,"messages":[{"role":"user","content":"x"}]}`, "model", codeType},
		{"empty model", EndpointChat, `{"model":"","messages":[{"role":"user","content":"x"}]}`, "model", codeEmptyStr},
		{"stream not bool", EndpointChat, chat(`,"stream":"true"`), "stream", codeType},
		{"stream_options not object", EndpointChat, chat(`,"stream":true,"stream_options":true`), "stream_options", codeType},
		{"include_usage not bool", EndpointChat, chat(`,"stream":true,"stream_options":{"include_usage":1}`), "stream_options.include_usage", codeType},
		{"stream_options without stream", EndpointChat, chat(`,"stream_options":{"include_usage":true}`), "stream_options", codeValue},
		{"max_tokens negative", EndpointChat, chat(`,"max_tokens":-1`), "max_tokens", codeBelowMin},
		{"max_tokens decimal", EndpointChat, chat(`,"max_tokens":1.5`), "max_tokens", codeType},
		{"max_tokens string", EndpointChat, chat(`,"max_tokens":"10"`), "max_tokens", codeType},
		{"max_tokens huge", EndpointChat, chat(`,"max_tokens":1e30`), "max_tokens", codeAboveMax},
		{"max_tokens huge integer", EndpointChat, chat(`,"max_tokens":99999999999999999999`), "max_tokens", codeAboveMax},
		{"max_tokens huge negative", EndpointChat, chat(`,"max_tokens":-99999999999999999999`), "max_tokens", codeBelowMin},
		{"max_completion_tokens negative", EndpointChat, chat(`,"max_completion_tokens":-5`), "max_completion_tokens", codeBelowMin},
		{"n zero", EndpointChat, chat(`,"n":0`), "n", codeBelowMin},
		{"best_of not integer", EndpointCompletions, `{"model":"m","prompt":"x","best_of":true}`, "best_of", codeType},
		{"messages missing", EndpointChat, `{"model":"m"}`, "messages", codeMissing},
		{"messages null", EndpointChat, `{"model":"m","messages":null}`, "messages", codeMissing},
		{"messages object", EndpointChat, `{"model":"m","messages":{}}`, "messages", codeType},
		{"messages empty", EndpointChat, `{"model":"m","messages":[]}`, "messages", codeEmpty},
		{"message not object", EndpointChat, `{"model":"m","messages":[1]}`, "messages[0]", codeType},
		{"role missing", EndpointChat, `{"model":"m","messages":[{"content":"x"}]}`, "messages[0].role", codeMissing},
		{"role not string", EndpointChat, `{"model":"m","messages":[{"role":"user"},{"role":5}]}`, "messages[1].role", codeType},
		{"duplicate model", EndpointChat, `{"model":"cheap","messages":[{"role":"user"}],"model":"dear"}`, "model", codeDuplicate},
		{"duplicate escaped model", EndpointChat, `{"model":"cheap","messages":[{"role":"user"}],"mod\u0065l":"dear"}`, "model", codeDuplicate},
		{"duplicate stream", EndpointChat, chat(`,"stream":false,"stream":true`), "stream", codeDuplicate},
		{"duplicate max_tokens", EndpointChat, chat(`,"max_tokens":1,"max_tokens":100000`), "max_tokens", codeDuplicate},
		{"duplicate messages", EndpointChat, chat(`,"messages":[{"role":"user","content":"y"}]`), "messages", codeDuplicate},
		{"prompt missing", EndpointCompletions, `{"model":"m"}`, "prompt", codeMissing},
		{"prompt number", EndpointCompletions, `{"model":"m","prompt":5}`, "prompt", codeType},
		{"input missing", EndpointEmbeddings, `{"model":"m"}`, "input", codeMissing},
		{"input object", EndpointEmbeddings, `{"model":"m","input":{}}`, "input", codeType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.ep, []byte(tc.body))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error = %v, want *Error", err)
			}
			if e.Param != tc.param || e.Code != tc.code {
				t.Errorf("Parse error = param %q code %q (%s), want param %q code %q", e.Param, e.Code, e.Message, tc.param, tc.code)
			}
			if e.Message == "" {
				t.Error("empty message")
			}
			var env struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(e.AppendBody(nil), &env); err != nil {
				t.Fatalf("AppendBody is not JSON: %v", err)
			}
			if env.Error.Type != "invalid_request_error" || env.Error.Message != e.Message ||
				(env.Error.Param == nil) != (tc.param == "") || (env.Error.Code == nil) != (tc.code == "") {
				t.Errorf("AppendBody = %s", e.AppendBody(nil))
			}
		})
	}
}

func TestParseBadJSONMessage(t *testing.T) {
	_, err := Parse(EndpointChat, []byte(`{"model": "m", "messages": [}`))
	var e *Error
	if !errors.As(err, &e) || !strings.HasPrefix(e.Message, "We could not parse the JSON body of your request.") || e.Param != "" {
		t.Fatalf("Parse error = %#v", err)
	}
}

func TestParseUnknownEndpoint(t *testing.T) {
	_, err := Parse(Endpoint(3), []byte(`{}`))
	if !errors.Is(err, ErrUnknownEndpoint) {
		t.Fatalf("Parse error = %v, want ErrUnknownEndpoint", err)
	}
}

// TestParseDoesNotAliasBody checks that a Request survives its body being
// reused, as pooled buffers are.
func TestParseDoesNotAliasBody(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`)
	req, err := Parse(EndpointChat, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'X'
	}
	if req.Model != "gpt-4o" {
		t.Fatalf("Model = %q after the body changed", req.Model)
	}
}

func TestEndpointString(t *testing.T) {
	for ep, want := range map[Endpoint][2]string{
		EndpointChat:        {"chat", "/chat/completions"},
		EndpointCompletions: {"completions", "/completions"},
		EndpointEmbeddings:  {"embeddings", "/embeddings"},
		Endpoint(3):         {"unknown", ""},
		Endpoint(255):       {"unknown", ""},
	} {
		if ep.String() != want[0] || ep.Path() != want[1] {
			t.Errorf("%d: String %q Path %q, want %q", ep, ep.String(), ep.Path(), want)
		}
	}
}
