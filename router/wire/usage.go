package wire

import (
	"bytes"
)

// Usage is the token accounting an upstream reports for one request.
type Usage struct {
	PromptTokens, CompletionTokens, TotalTokens int64
}

// ChunkUsage inspects one chat or completions stream chunk. hasUsage
// reports a non-null usage object, and u its numbers. usageOnly reports the
// chunk that stream_options.include_usage adds at the end: usage set and
// choices empty (or null, or absent). That is the chunk to drop when Sluice
// forced include_usage and the client had not asked for it. Azure's first
// chunk also has "choices":[] (with prompt_filter_results) but no usage, so
// it is not usage-only; neither is a chunk with "usage":null, as OpenAI and
// vLLM put on every chunk once include_usage is on. A chunk with both
// choices and usage (vLLM's continuous usage stats) has usage but is not
// usage-only.
func ChunkUsage(data []byte) (u Usage, usageOnly bool, hasUsage bool) {
	if !mayHaveUsage(data) {
		return Usage{}, false, false // the common case, without a scan
	}
	s := view(data)
	var choices, usage value
	members(s, rootValue(s), func(k string, v value) bool {
		switch {
		case keyIs(k, "usage"):
			usage = v
		case keyIs(k, "choices"):
			choices = v
		}
		return true
	})
	if !usage.isObject() {
		return Usage{}, false, false
	}
	return readUsage(s, usage), !choices.exists() || choices.isNull() || emptyArray(s, choices), true
}

// mayHaveUsage reports whether a chunk may carry a non-null usage: false when
// every "usage" in it is followed by :null, as on the ordinary chunks of a
// stream with include_usage on. A top-level usage key is one of those
// occurrences (upstreams do not escape key letters), so a false answer is
// never wrong; anything else goes to the full scan.
func mayHaveUsage(data []byte) bool {
	const key = `"usage"`
	for {
		i := bytes.Index(data, []byte(key))
		if i < 0 {
			return false
		}
		data = data[i+len(key):]
		j := 0
		for j < len(data) && isSpace(data[j]) {
			j++
		}
		if j == len(data) || data[j] != ':' {
			return true
		}
		for j++; j < len(data) && isSpace(data[j]); j++ {
		}
		if !bytes.HasPrefix(data[j:], []byte("null")) {
			return true
		}
		data = data[j+len("null"):]
	}
}

// BodyUsage returns the usage of a non-streamed response body, and whether
// it has one.
func BodyUsage(body []byte) (Usage, bool) {
	s := view(body)
	var usage value
	members(s, rootValue(s), func(k string, v value) bool {
		if keyIs(k, "usage") {
			usage = v
		}
		return true
	})
	if !usage.isObject() {
		return Usage{}, false
	}
	return readUsage(s, usage), true
}

// readUsage reads the counts of a usage object. Embeddings report no
// completion_tokens; an absent total is the sum.
func readUsage(s string, o value) Usage {
	var u Usage
	hasTotal := false
	members(s, o, func(k string, v value) bool {
		n, ok, _ := integer(v.raw)
		if !ok || n < 0 {
			return true
		}
		switch {
		case keyIs(k, "prompt_tokens"):
			u.PromptTokens = n
		case keyIs(k, "completion_tokens"):
			u.CompletionTokens = n
		case keyIs(k, "total_tokens"):
			u.TotalTokens, hasTotal = n, true
		}
		return true
	})
	if !hasTotal {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return u
}

func emptyArray(s string, v value) bool {
	if !v.isArray() {
		return false
	}
	i := skipSpace(s, v.off+1)
	return i < len(s) && s[i] == ']'
}
