package mock

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

var dialects = []Dialect{DialectAzure, DialectOpenAI}

func TestSDKChat(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			r, srv := startRegion(t, testConfig(d))
			client := clientFor(srv, d)
			params := openai.ChatCompletionNewParams{
				Model: "gpt-4o-mini",
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("You are terse."),
					openai.UserMessage("Hello there, how are you?"),
				},
				MaxTokens: openai.Int(40),
			}
			resp, err := client.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatalf("chat: %v", err)
			}
			if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Model != "gpt-4o-mini-2024-07-18" || len(resp.Choices) != 1 {
				t.Fatalf("unexpected answer: %s", resp.RawJSON())
			}
			ch := resp.Choices[0]
			if ch.Message.Role != "assistant" || ch.Message.Content == "" {
				t.Fatalf("bad message: %s", resp.RawJSON())
			}
			if got := tokenCount(t, ch.Message.Content); int64(got) != resp.Usage.CompletionTokens {
				t.Errorf("content has %d tokens, usage says %d", got, resp.Usage.CompletionTokens)
			}
			if resp.Usage.CompletionTokens > 40 {
				t.Errorf("completion tokens %d above max_tokens", resp.Usage.CompletionTokens)
			}
			if (resp.Usage.CompletionTokens == 40) != (ch.FinishReason == "length") {
				t.Errorf("finish_reason %q with %d tokens", ch.FinishReason, resp.Usage.CompletionTokens)
			}
			body, _ := json.Marshal(params)
			want, err := PromptTokens(KindChat, body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Usage.PromptTokens != int64(want) || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
				t.Errorf("usage %+v, want prompt %d", resp.Usage, want)
			}
			raw := resp.RawJSON()
			hasFilters := strings.Contains(raw, `"prompt_filter_results"`) && strings.Contains(raw, `"content_filter_results"`)
			if hasFilters != (d == DialectAzure) {
				t.Errorf("content filter annotations present=%v in %s", hasFilters, raw)
			}
			st := r.Stats().Deployments["gpt-4o-mini"]
			if st.Requests != 1 || st.Accepted != 1 || st.Completed != 1 || st.InFlight != 0 ||
				st.PromptTokens != resp.Usage.PromptTokens || st.CompletionTokens != resp.Usage.CompletionTokens ||
				st.ChargedTokens != int64(want)+40 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestSDKChatStream(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			r, srv := startRegion(t, testConfig(d))
			client := clientFor(srv, d)
			stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
				Model:         "gpt-4o-mini",
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Stream please")},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			var (
				acc           openai.ChatCompletionAccumulator
				contentChunks int64
				usage         *openai.CompletionUsage
				finish        string
				text          strings.Builder
			)
			for stream.Next() {
				chunk := stream.Current()
				acc.AddChunk(chunk)
				if !strings.Contains(chunk.RawJSON(), `"usage"`) {
					t.Errorf("chunk without usage key: %s", chunk.RawJSON())
				}
				for _, c := range chunk.Choices {
					if c.Delta.Content != "" {
						contentChunks++
						text.WriteString(c.Delta.Content)
					}
					if c.FinishReason != "" {
						finish = c.FinishReason
					}
				}
				if chunk.JSON.Usage.Valid() && chunk.Usage.TotalTokens > 0 {
					u := chunk.Usage
					usage = &u
					if len(chunk.Choices) != 0 {
						t.Errorf("usage chunk has choices: %s", chunk.RawJSON())
					}
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if usage == nil {
				t.Fatal("no usage chunk")
			}
			if usage.CompletionTokens != contentChunks || contentChunks == 0 {
				t.Errorf("completion tokens %d, content chunks %d", usage.CompletionTokens, contentChunks)
			}
			if got := tokenCount(t, text.String()); int64(got) != contentChunks {
				t.Errorf("text tokenizes to %d, want %d", got, contentChunks)
			}
			if finish != "stop" && finish != "length" {
				t.Errorf("finish_reason %q", finish)
			}
			if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != text.String() {
				t.Errorf("accumulator content %+v", acc.Choices)
			}
			eventually(t, "stream completed in stats", func() bool {
				st := r.Stats().Deployments["gpt-4o-mini"]
				return st.Completed == 1 && st.InFlight == 0
			})
			st := r.Stats().Deployments["gpt-4o-mini"]
			if st.CompletionTokens != contentChunks || st.PromptTokens != usage.PromptTokens {
				t.Errorf("stats usage %d/%d, want %d/%d", st.PromptTokens, st.CompletionTokens, usage.PromptTokens, contentChunks)
			}
		})
	}
}

func TestSDKCompletions(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			_, srv := startRegion(t, testConfig(d))
			client := clientFor(srv, d)
			resp, err := client.Completions.New(context.Background(), openai.CompletionNewParams{
				Model:     "gpt-4o-mini",
				Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
				MaxTokens: openai.Int(16),
			})
			if err != nil {
				t.Fatalf("completions: %v", err)
			}
			if resp.Object != "text_completion" || len(resp.Choices) != 1 || resp.Choices[0].Text == "" {
				t.Fatalf("unexpected answer: %s", resp.RawJSON())
			}
			if got := tokenCount(t, resp.Choices[0].Text); int64(got) != resp.Usage.CompletionTokens || got > 16 {
				t.Errorf("text has %d tokens, usage %d", got, resp.Usage.CompletionTokens)
			}
			if want := int64(tokenCount(t, "Once upon a time")); resp.Usage.PromptTokens != want {
				t.Errorf("prompt tokens %d, want %d", resp.Usage.PromptTokens, want)
			}

			stream := client.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
				Model:         "gpt-4o-mini",
				Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			var chunks, completion int64
			for stream.Next() {
				c := stream.Current()
				for _, ch := range c.Choices {
					if ch.Text != "" {
						chunks++
					}
				}
				if c.Usage.TotalTokens > 0 {
					completion = c.Usage.CompletionTokens
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if chunks == 0 || chunks != completion {
				t.Errorf("chunks %d, completion tokens %d", chunks, completion)
			}
		})
	}
}

func TestSDKEmbeddings(t *testing.T) {
	for _, d := range dialects {
		for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
			t.Run(string(d)+"/"+string(format), func(t *testing.T) {
				r, srv := startRegion(t, testConfig(d))
				client := clientFor(srv, d)
				inputs := []string{"hello world", "the quick brown fox"}
				resp, err := client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
					Model:          "text-embedding-3-small",
					Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
					EncodingFormat: format,
				})
				if err != nil {
					t.Fatalf("embeddings: %v", err)
				}
				if len(resp.Data) != 2 || resp.Model != "text-embedding-3-small" {
					t.Fatalf("unexpected answer: %.300s", resp.RawJSON())
				}
				want := int64(tokenCount(t, inputs[0]) + tokenCount(t, inputs[1]))
				if resp.Usage.PromptTokens != want || resp.Usage.TotalTokens != want {
					t.Errorf("usage %+v, want %d", resp.Usage, want)
				}
				for i, e := range resp.Data {
					if e.Index != int64(i) || len(e.Embedding) != DefaultEmbeddingDims {
						t.Fatalf("item %d: index %d, %d dims", i, e.Index, len(e.Embedding))
					}
					var norm float64
					for _, v := range e.Embedding {
						norm += v * v
					}
					if math.Abs(norm-1) > 1e-4 {
						t.Errorf("item %d: norm² %v", i, norm)
					}
					exp := EmbeddingVector("text-embedding-3-small", "s:"+inputs[i], DefaultEmbeddingDims, DefaultEmbeddingDims)
					if float32(e.Embedding[7]) != exp[7] {
						t.Errorf("item %d not deterministic: %v vs %v", i, e.Embedding[7], exp[7])
					}
				}
				if st := r.Stats().Deployments["text-embedding-3-small"]; st.ChargedTokens != want || st.PromptTokens != want {
					t.Errorf("stats %+v", st)
				}

				small, err := client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
					Model:          "text-embedding-3-small",
					Input:          openai.EmbeddingNewParamsInputUnion{OfString: openai.String(inputs[0])},
					EncodingFormat: format,
					Dimensions:     openai.Int(256),
				})
				if err != nil {
					t.Fatalf("embeddings with dimensions: %v", err)
				}
				if got := len(small.Data[0].Embedding); got != 256 {
					t.Errorf("dimensions: got %d", got)
				}
			})
		}
	}
}

func TestSDKModels(t *testing.T) {
	_, srv := startRegion(t, testConfig(DialectOpenAI))
	client := openaiClient(srv, testKey)
	page, err := client.Models.List(context.Background())
	if err != nil {
		t.Fatalf("models: %v", err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy == "" {
			t.Errorf("model %+v", m)
		}
	}
	if strings.Join(ids, ",") != "gpt-4o-mini,text-embedding-3-small" {
		t.Errorf("ids %v", ids)
	}
	m, err := client.Models.Get(context.Background(), "gpt-4o-mini")
	if err != nil || m.ID != "gpt-4o-mini" {
		t.Errorf("get model: %v %+v", err, m)
	}
	if _, err := client.Models.Get(context.Background(), "nope"); err == nil {
		t.Error("get unknown model: no error")
	}
}

func TestSDKErrors(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			_, srv := startRegion(t, testConfig(d))
			var client openai.Client
			if d == DialectAzure {
				client = azureClient(srv, "wrong")
			} else {
				client = openaiClient(srv, "wrong")
			}
			_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			var apiErr *openai.Error
			if !asError(err, &apiErr) || apiErr.StatusCode != 401 {
				t.Fatalf("want 401, got %v", err)
			}
			client = clientFor(srv, d)
			_, err = client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "no-such", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			if !asError(err, &apiErr) || apiErr.StatusCode != 404 {
				t.Fatalf("want 404, got %v", err)
			}
			wantCode := "model_not_found"
			if d == DialectAzure {
				wantCode = "DeploymentNotFound"
			}
			if apiErr.Code != wantCode {
				t.Errorf("code %q, want %q", apiErr.Code, wantCode)
			}
		})
	}
}

func TestSDKAzureV1Path(t *testing.T) {
	r, srv := startRegion(t, testConfig(DialectAzure))
	client := openai.NewClient(
		option.WithBaseURL(srv.URL+"/openai/v1/"),
		option.WithHeader("api-key", testKey),
		option.WithHTTPClient(srv.Client()),
		option.WithMaxRetries(0),
	)
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if len(resp.Choices) != 1 || !strings.Contains(resp.RawJSON(), "prompt_filter_results") {
		t.Errorf("answer %s", resp.RawJSON())
	}
	if st := r.Stats().Deployments["gpt-4o-mini"]; st.Completed != 1 {
		t.Errorf("stats %+v", st)
	}
}
