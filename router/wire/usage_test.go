package wire

import "testing"

func TestChunkUsage(t *testing.T) {
	tests := []struct {
		name      string
		chunk     string
		usage     Usage
		usageOnly bool
		hasUsage  bool
	}{
		{"usage chunk",
			`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0}}}`,
			Usage{12, 34, 46}, true, true},
		{"azure first chunk",
			`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}`,
			Usage{}, false, false},
		{"normal chunk with usage null",
			`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}`,
			Usage{}, false, false},
		{"normal chunk without usage",
			`{"id":"c","choices":[{"index":0,"delta":{"content":"the \"usage\" word in text"}}]}`,
			Usage{}, false, false},
		{"usage on a content chunk (vLLM continuous stats)",
			`{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`,
			Usage{5, 1, 6}, false, true},
		{"completions usage chunk, whitespace, key order",
			`{ "usage" : { "total_tokens" : 9 , "prompt_tokens" : 4 , "completion_tokens" : 5 } , "choices" : [ ] }`,
			Usage{4, 5, 9}, true, true},
		{"no total", `{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":5}}`, Usage{4, 5, 9}, true, true},
		{"choices absent", `{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`, Usage{1, 2, 3}, true, true},
		{"quoted usage in text, then real usage",
			`{"choices":[{"delta":{"content":"say \"usage"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}`,
			Usage{2, 3, 5}, false, true},
		{"usage as a string value", `{"choices":[{"delta":{"content":"usage"}}],"usage":null}`, Usage{}, false, false},
		{"usage key inside a choice is not the chunk's", `{"choices":[{"usage":{"prompt_tokens":1}}],"usage":null}`, Usage{}, false, false},
		{"not json", `[DONE]`, Usage{}, false, false},
		{"garbage with usage", `{"usage":{"prompt_tokens":"x"`, Usage{}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, only, has := ChunkUsage([]byte(tc.chunk))
			if u != tc.usage || only != tc.usageOnly || has != tc.hasUsage {
				t.Errorf("ChunkUsage = %+v, %v, %v; want %+v, %v, %v", u, only, has, tc.usage, tc.usageOnly, tc.hasUsage)
			}
		})
	}
}

func TestBodyUsage(t *testing.T) {
	tests := []struct {
		body string
		want Usage
		ok   bool
	}{
		{`{"id":"x","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"usage"}}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}`, Usage{10, 2, 12}, true},
		{`{"object":"list","data":[{"embedding":[0.1]}],"model":"e","usage":{"prompt_tokens":8,"total_tokens":8}}`, Usage{8, 0, 8}, true},
		{`{"choices":[],"usage":null}`, Usage{}, false},
		{`{"error":{"message":"x"}}`, Usage{}, false},
		{``, Usage{}, false},
	}
	for _, tc := range tests {
		u, ok := BodyUsage([]byte(tc.body))
		if u != tc.want || ok != tc.ok {
			t.Errorf("BodyUsage(%s) = %+v, %v; want %+v, %v", tc.body, u, ok, tc.want, tc.ok)
		}
	}
}
