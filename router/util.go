package router

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	mrand "math/rand/v2"
	"sync"

	"github.com/sluicehq/sluice/router/wire"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return // let big buffers go rather than pin them
	}
	b.Reset()
	bufPool.Put(b)
}

func randN(n int) int { return mrand.IntN(n) }

// newRequestID returns a random request id.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

type staticChoice struct {
	Index        int            `json:"index"`
	Message      map[string]any `json:"message,omitempty"`
	Text         *string        `json:"text,omitempty"`
	Delta        map[string]any `json:"delta,omitempty"`
	FinishReason *string        `json:"finish_reason"`
}

// usageJSON is wire.Usage in the API's spelling.
type usageJSON struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

func toUsageJSON(u wire.Usage) *usageJSON {
	return &usageJSON{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

type staticResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Choices []staticChoice `json:"choices"`
	Usage   *usageJSON     `json:"usage"`
}

// staticBody is a complete answer carrying the model's static response.
func staticBody(ep wire.Endpoint, id string, created int64, model, text string) []byte {
	return answerBody(ep, id, created, model, text, "stop", wire.Usage{})
}

// answerBody is a complete single-choice answer with the given text,
// finish reason and usage.
func answerBody(ep wire.Endpoint, id string, created int64, model, text, finish string, u wire.Usage) []byte {
	out := staticResponse{ID: id, Object: "chat.completion", Created: created, Model: model, Usage: toUsageJSON(u)}
	if ep == wire.EndpointCompletions {
		out.Object = "text_completion"
		out.Choices = []staticChoice{{Text: &text, FinishReason: &finish}}
	} else {
		out.Choices = []staticChoice{{Message: map[string]any{"role": "assistant", "content": text}, FinishReason: &finish}}
	}
	b, _ := json.Marshal(out)
	return b
}

// staticStream is the same answer as SSE events, ending with [DONE].
func staticStream(id string, created int64, model, text string, usage bool) [][]byte {
	var u *wire.Usage
	if usage {
		u = &wire.Usage{}
	}
	return answerStream(id, created, model, text, "stop", u)
}

// answerStream is a single-choice chat answer as SSE events: the role
// chunk, the content chunk, the finish chunk, a usage chunk when u is not
// nil, then [DONE].
func answerStream(id string, created int64, model, text, finish string, u *wire.Usage) [][]byte {
	chunk := func(delta map[string]any, fin *string) []byte {
		b, _ := json.Marshal(staticResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []staticChoice{{Delta: delta, FinishReason: fin}}})
		return b
	}
	evs := [][]byte{
		chunk(map[string]any{"role": "assistant", "content": ""}, nil),
		chunk(map[string]any{"content": text}, nil),
		chunk(map[string]any{}, &finish),
	}
	if u != nil {
		b, _ := json.Marshal(staticResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []staticChoice{}, Usage: toUsageJSON(*u)})
		evs = append(evs, b)
	}
	return append(evs, []byte("[DONE]"))
}
