package router_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStreamChunksLeaveAsTheyArrive: a streamed chunk reaches the client
// before the upstream sends anything more. The upstream here sends two
// chunks together, then waits until the client has seen them; then a third,
// and waits again. A relay that held a chunk back for more input would
// never finish.
func TestStreamChunksLeaveAsTheyArrive(t *testing.T) {
	step := make(chan struct{})
	chunk := func(content string) string {
		return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}` + "\n\n"
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fl := w.(http.Flusher)
		send := func(s string) bool {
			_, _ = io.WriteString(w, s)
			fl.Flush()
			select {
			case <-step:
				return true
			case <-r.Context().Done():
				return false
			}
		}
		if !send(chunk("one")+chunk("two")) || !send(chunk("three")) {
			return
		}
		_, _ = io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`+"\n\ndata: [DONE]\n\n")
	}))
	defer up.Close()
	e := newEnv(t, envOpts{regionsNo: 1, editCfg: func(c *stateConfig) { c.Providers[0].Endpoint = up.URL }})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/v1/chat/completions", strings.NewReader(chatBody(true, 8)))
	req.Header.Set("Authorization", "Bearer "+demoKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	var seen []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, `"content":"two"`), strings.Contains(line, `"content":"three"`):
			seen = append(seen, line)
			step <- struct{}{} // the upstream may go on
		case line == "data: [DONE]":
			if len(seen) != 2 {
				t.Fatalf("[DONE] after %d of the 2 awaited chunks", len(seen))
			}
			return
		}
	}
	t.Fatalf("the stream ended without [DONE] after %d awaited chunks (a chunk held back?): %v", len(seen), sc.Err())
}
