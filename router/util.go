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

type staticResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Choices []staticChoice `json:"choices"`
	Usage   *wire.Usage    `json:"usage"`
}

// staticBody is a complete answer carrying the model's static response.
func staticBody(ep wire.Endpoint, id string, created int64, model, text string) []byte {
	stop := "stop"
	out := staticResponse{ID: id, Object: "chat.completion", Created: created, Model: model, Usage: &wire.Usage{}}
	if ep == wire.EndpointCompletions {
		out.Object = "text_completion"
		out.Choices = []staticChoice{{Text: &text, FinishReason: &stop}}
	} else {
		out.Choices = []staticChoice{{Message: map[string]any{"role": "assistant", "content": text}, FinishReason: &stop}}
	}
	b, _ := json.Marshal(out)
	return b
}

// staticStream is the same answer as SSE events, ending with [DONE].
func staticStream(id string, created int64, model, text string, usage bool) [][]byte {
	stop := "stop"
	chunk := func(delta map[string]any, fin *string) []byte {
		b, _ := json.Marshal(staticResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []staticChoice{{Delta: delta, FinishReason: fin}}})
		return b
	}
	evs := [][]byte{
		chunk(map[string]any{"role": "assistant", "content": ""}, nil),
		chunk(map[string]any{"content": text}, nil),
		chunk(map[string]any{}, &stop),
	}
	if usage {
		b, _ := json.Marshal(staticResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []staticChoice{}, Usage: &wire.Usage{}})
		evs = append(evs, b)
	}
	return append(evs, []byte("[DONE]"))
}
