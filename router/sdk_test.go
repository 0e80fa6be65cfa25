package router_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func chatParams(maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are terse."),
			openai.UserMessage("Say hello to the team."),
		},
		MaxTokens: openai.Int(maxTokens),
	}
}

func TestSDKChat(t *testing.T) {
	e := newEnv(t, envOpts{})
	for name, c := range map[string]openai.Client{"openai": e.client(), "azure": e.azureClient()} {
		t.Run(name, func(t *testing.T) {
			var resp *http.Response
			out, err := c.Chat.Completions.New(context.Background(), chatParams(20), option.WithResponseInto(&resp))
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Choices) != 1 || out.Choices[0].Message.Content == "" {
				t.Fatalf("empty answer: %+v", out)
			}
			if out.Usage.PromptTokens == 0 || out.Usage.CompletionTokens == 0 || out.Usage.CompletionTokens > 20 {
				t.Fatalf("usage %+v", out.Usage)
			}
			if resp.Header.Get("X-Sluice-Deployment") == "" || resp.Header.Get("X-Request-Id") == "" {
				t.Fatalf("missing sluice headers: %v", resp.Header)
			}
		})
	}
}

func TestSDKStream(t *testing.T) {
	e := newEnv(t, envOpts{})
	for name, c := range map[string]openai.Client{"openai": e.client(), "azure": e.azureClient()} {
		for _, usage := range []bool{true, false} {
			t.Run(name+map[bool]string{true: "/with-usage", false: "/without-usage"}[usage], func(t *testing.T) {
				p := chatParams(16)
				if usage {
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				before := len(e.recordsSnapshot())
				s := c.Chat.Completions.NewStreaming(context.Background(), p)
				var acc openai.ChatCompletionAccumulator
				var content strings.Builder
				var usageChunks int
				for s.Next() {
					ch := s.Current()
					acc.AddChunk(ch)
					if len(ch.Choices) > 0 {
						content.WriteString(ch.Choices[0].Delta.Content)
					}
					if ch.Usage.TotalTokens > 0 {
						usageChunks++
					}
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				if content.Len() == 0 {
					t.Fatal("no content streamed")
				}
				if usage && usageChunks != 1 {
					t.Fatalf("asked for usage, got %d usage chunks", usageChunks)
				}
				if !usage && usageChunks != 0 {
					t.Fatalf("did not ask for usage, got %d usage chunks", usageChunks)
				}
				// The stream settles with the provider's real usage either way.
				// The record is emitted after the last byte reached the client.
				waitFor(t, 2*time.Second, "the usage record", func() bool { return len(e.recordsSnapshot()) == before+1 })
				recs := e.recordsSnapshot()[before:]
				if len(recs) != 1 || recs[0].CompletionTokens == 0 || recs[0].PromptTokens == 0 || recs[0].Estimated {
					t.Fatalf("usage record %+v", recs)
				}
				if usage && acc.Usage.CompletionTokens != recs[0].CompletionTokens {
					t.Fatalf("client saw %d completion tokens, record %d", acc.Usage.CompletionTokens, recs[0].CompletionTokens)
				}
			})
		}
	}
}

// TestStreamRawNoUsageChunk reads the raw SSE: with include_usage unset
// nothing usage-only reaches the client, and the stream ends with [DONE].
func TestStreamRawNoUsageChunk(t *testing.T) {
	e := newEnv(t, envOpts{})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/chat/completions", strings.NewReader(chatBody(true, 8)))
	req.Header.Set("Authorization", "Bearer "+demoKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var events []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
		}
	}
	if len(events) < 3 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	for _, ev := range events {
		if strings.Contains(ev, `"choices":[]`) && strings.Contains(ev, `"prompt_tokens"`) {
			t.Fatalf("usage chunk reached a client that did not ask: %s", ev)
		}
	}
}

func TestSDKCompletionsEmbeddingsModels(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	ctx := context.Background()
	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model: "gpt-4o-mini", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(12),
	})
	if err != nil || len(comp.Choices) != 1 || comp.Choices[0].Text == "" {
		t.Fatalf("completions: %v %+v", err, comp)
	}
	for name, client := range map[string]openai.Client{"openai": c, "azure": e.azureClient()} {
		emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta"}},
		})
		if err != nil || len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 1536 || emb.Usage.PromptTokens == 0 {
			t.Fatalf("%s embeddings: %v", name, err)
		}
	}
	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "gpt-4o-mini,text-embedding-3-small" {
		t.Fatalf("models %v", ids)
	}
}

// TestModelsOnlyAllowed lists only the models a key may use.
func TestModelsOnlyAllowed(t *testing.T) {
	e := newEnv(t, envOpts{editCfg: func(c *stateConfig) {
		c.Keys[0].Models = []string{"text-embedding-3-small"}
	}})
	c := e.client()
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "text-embedding-3-small" {
		t.Fatalf("models %+v", page.Data)
	}
}
