package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/tiktoken-go/tokenizer"
)

// benchBody is a chat request of about 2 KB: a system prompt, a short
// exchange and a question, with the usual escapes.
var benchBody = func() []byte {
	msgs := []map[string]string{
		{"role": "system", "content": "You are Sluice Assistant, a support agent for an internal platform team.\n" +
			"Answer in plain English, in at most three short paragraphs. When you are not sure, say so and suggest " +
			"who to ask. Never invent configuration keys; quote them exactly as they appear in the documentation. " +
			"If the user pastes logs, point at the first line that explains the failure before anything else."},
		{"role": "user", "content": "Our nightly batch job started failing yesterday with HTTP 429 from the gateway. " +
			"Nothing changed on our side as far as I know. The job sends about 40,000 embedding requests between 01:00 " +
			"and 02:00 UTC, each with roughly 500 tokens of input."},
		{"role": "assistant", "content": "A 429 from the gateway means your requests were refused to protect the " +
			"deployment's tokens-per-minute quota. 40,000 requests of 500 tokens in an hour is about 333,000 tokens per " +
			"minute, which is above what a single embedding deployment usually allows.\n\nCheck whether another team " +
			"started using the same deployment, and whether your job honours the retry-after header."},
		{"role": "user", "content": "It does honour retry-after, with a cap of 60 seconds. Is there a way to mark our " +
			"job as batch traffic so it does not compete with interactive users? And can we see our usage per hour " +
			"somewhere? I would like to show my manager a graph of the last week before we ask for more quota."},
	}
	b, _ := json.Marshal(map[string]any{
		"model": "gpt-4o-mini", "messages": msgs, "stream": true, "temperature": 0.2, "max_tokens": 400,
		"user": "batch-team", "stream_options": map[string]bool{"include_usage": false},
	})
	return b
}()

func BenchmarkParse(b *testing.B) {
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(EndpointChat, benchBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewrite(b *testing.B) {
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrite(benchBody, "gpt-4o-mini-2024-07-18", true, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPromptTokens measures the estimate of the 2 KB body. "repeat"
// sends the same body (texts served from the cache, as for a resent
// history); "fresh" makes every text of every request new, so each is
// tokenized (only word pieces are cached, as in a running process).
func BenchmarkPromptTokens(b *testing.B) {
	req, err := Parse(EndpointChat, benchBody)
	if err != nil {
		b.Fatal(err)
	}
	for _, enc := range encodings {
		b.Run(enc+"/repeat", func(b *testing.B) {
			e := NewEstimator()
			e.Preload(enc)
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			for b.Loop() {
				e.PromptTokens(enc, EndpointChat, benchBody, &req)
			}
		})
		b.Run(enc+"/fresh", func(b *testing.B) {
			e := NewEstimator()
			e.Preload(enc)
			// Every message of every request starts with the request's
			// number, so no text is ever found in the cache.
			parts := bytes.Split(benchBody, []byte(`"content":"`))
			buf := make([]byte, 0, 2*len(benchBody))
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				buf = append(buf[:0], parts[0]...)
				for _, p := range parts[1:] {
					buf = append(buf, `"content":"`...)
					buf = strconv.AppendInt(buf, int64(i), 10)
					buf = append(buf, ' ')
					buf = append(buf, p...)
				}
				e.PromptTokens(enc, EndpointChat, buf, nil)
			}
		})
	}
}

// BenchmarkTokenize compares this package's counting with the tokenizer
// module's Count on the same 2 KB of text.
func BenchmarkTokenize(b *testing.B) {
	var text strings.Builder
	var msgs []struct{ Content string }
	var body struct{ Messages []struct{ Content string } }
	json.Unmarshal(benchBody, &body)
	msgs = body.Messages
	for _, m := range msgs {
		text.WriteString(m.Content)
	}
	s := text.String()
	for _, enc := range encodings {
		b.Run(enc+"/wire", func(b *testing.B) {
			bp := encodingFor(enc)
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				bp.count(s)
			}
		})
		b.Run(enc+"/module", func(b *testing.B) {
			c, _ := tokenizer.Get(tokenizer.Encoding(enc))
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				c.Count(s)
			}
		})
	}
}

var benchChunk = []byte(`{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1733000000,"model":"gpt-4o-mini-2024-07-18",` +
	`"system_fingerprint":"fp_0123456789","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}],"usage":null}`)

// benchStream is 1000 ordinary chunks, a usage chunk and [DONE].
var benchStream = func() []byte {
	var buf bytes.Buffer
	for range 1000 {
		WriteEvent(&buf, benchChunk)
	}
	WriteEvent(&buf, []byte(`{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":500,"completion_tokens":1000,"total_tokens":1500}}`))
	WriteEvent(&buf, []byte("[DONE]"))
	return buf.Bytes()
}()

// BenchmarkEventReader reports the cost per chunk of reading, inspecting
// and forwarding a stream, as the proxy does.
func BenchmarkEventReader(b *testing.B) {
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		r := bytes.NewReader(benchStream)
		n := 0
		for b.Loop() {
			r.Reset(benchStream)
			er := NewEventReader(r)
			for {
				if _, err := er.Next(); err == io.EOF {
					break
				}
				n++
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/chunk")
	})
	b.Run("read+usage+write", func(b *testing.B) {
		b.ReportAllocs()
		r := bytes.NewReader(benchStream)
		n := 0
		for b.Loop() {
			r.Reset(benchStream)
			er := NewEventReader(r)
			for {
				data, err := er.Next()
				if err == io.EOF {
					break
				}
				n++
				if IsDone(data) {
					continue
				}
				if _, only, _ := ChunkUsage(data); !only {
					WriteEvent(io.Discard, data)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/chunk")
	})
}

func BenchmarkChunkUsage(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ChunkUsage(benchChunk)
	}
}
