package mock

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// generated is the output of one chat or completions request.
type generated struct {
	tokens     [][]string // per choice, each entry one o200k_base token
	finish     []string   // per choice: "stop" or "length"
	completion int        // total output tokens
}

func (c *call) generate(p *parsedRequest) generated {
	cfg := c.dep.cfg
	limit := p.outputLimit(cfg.DefaultMaxTokens)
	n := p.choices()
	g := generated{tokens: make([][]string, n), finish: make([]string, n)}
	for i := range n {
		count, capped := sampleCompletionTokens(c.rng, cfg.Completion.MeanTokens, limit)
		g.tokens[i] = c.r.vocab.generateText(c.rng, count)
		g.finish[i] = "stop"
		if capped {
			g.finish[i] = "length"
		}
		g.completion += count
	}
	return g
}

// answerText answers a chat or completions request, streamed or not.
func (c *call) answerText(p *parsedRequest, cut bool) {
	g := c.generate(p)
	if p.stream {
		c.streamText(p, g, cut)
		return
	}
	var v any
	if c.op == KindChat {
		v = c.chatAnswer(p, g)
	} else {
		v = c.completionAnswer(p, g)
	}
	u := c.delivered(p.promptTokens, g.completion)
	if err := c.writeJSON(http.StatusOK, v); err != nil {
		c.undelivered(u)
	}
}

func (c *call) chatAnswer(p *parsedRequest, g generated) chatCompletion {
	model := c.dep.cfg.Model
	resp := chatCompletion{
		ID:                newID(c.rng, "chatcmpl-", 29),
		Object:            "chat.completion",
		Created:           c.r.now().Unix(),
		Model:             model,
		Choices:           make([]chatChoice, len(g.tokens)),
		Usage:             newChatUsage(p.promptTokens, g.completion),
		SystemFingerprint: fingerprint(model),
	}
	if c.azure() {
		resp.PromptFilterResults = promptFilters(1)
	} else {
		resp.ServiceTier = "default"
	}
	for i, toks := range g.tokens {
		resp.Choices[i] = chatChoice{
			Index: i,
			Message: chatMessage{
				Role: "assistant", Content: strings.Join(toks, ""), Refusal: null(), Annotations: []struct{}{},
			},
			Logprobs:     null(),
			FinishReason: g.finish[i],
		}
		if c.azure() {
			resp.Choices[i].ContentFilterResults = outputFilters()
		}
	}
	return resp
}

func (c *call) completionAnswer(p *parsedRequest, g generated) textCompletion {
	model := c.dep.cfg.Model
	resp := textCompletion{
		ID:                newID(c.rng, "cmpl-", 29),
		Object:            "text_completion",
		Created:           c.r.now().Unix(),
		Model:             model,
		SystemFingerprint: fingerprint(model),
		Choices:           make([]textChoice, len(g.tokens)),
		Usage:             newChatUsage(p.promptTokens, g.completion),
	}
	if c.azure() {
		resp.PromptFilterResults = promptFilters(p.prompts)
	}
	for i, toks := range g.tokens {
		resp.Choices[i] = textChoice{
			Text: strings.Join(toks, ""), Index: i, Logprobs: null(), FinishReason: jsonString(g.finish[i]),
		}
		if c.azure() {
			resp.Choices[i].ContentFilterResults = outputFilters()
		}
	}
	return resp
}

// errStreamCut ends a stream on purpose.
var errStreamCut = errors.New("stream cut")

// sse writes server-sent events, flushing each one.
type sse struct {
	c     *call
	rc    *http.ResponseController
	sent  int
	cutAt int // cut the stream after this many events (0 = never)
}

func (s *sse) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal chunk: %w", err)
	}
	if err := s.raw(b); err != nil {
		return err
	}
	s.sent++
	if s.cutAt > 0 && s.sent >= s.cutAt {
		return errStreamCut
	}
	return nil
}

func (s *sse) raw(data []byte) error {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := s.c.w.Write(buf); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}

// streamText streams a chat or completions answer.
func (c *call) streamText(p *parsedRequest, g generated, cut bool) {
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	c.setProcessingTime()
	c.w.WriteHeader(http.StatusOK)

	perChoice := 1 // final chunk
	if c.op == KindChat {
		perChoice++ // role chunk
	}
	total := len(g.tokens)*perChoice + g.completion
	if c.azure() {
		total++
	}
	if p.includeUsage {
		total++
	}
	s := &sse{c: c, rc: http.NewResponseController(c.w)}
	if cut {
		s.cutAt = 1 + c.rng.IntN(total)
	}
	err := c.streamEvents(s, p, g)
	if err == nil {
		u := c.delivered(p.promptTokens, g.completion)
		c.endFlight()
		if err := s.raw([]byte("[DONE]")); err != nil {
			c.undelivered(u)
		}
		return
	}
	switch {
	case errors.Is(err, errStreamCut):
		c.dep.inject(FaultStreamCut)
		c.abortConn(false)
	case errors.Is(err, errRegionClosed):
		c.abortConn(false)
	default:
		c.canceled()
	}
}

// streamEvents sends every chunk of a streamed answer but [DONE].
func (c *call) streamEvents(s *sse, p *parsedRequest, g generated) error {
	cfg := c.dep.cfg
	id := newID(c.rng, "chatcmpl-", 29)
	object := "chat.completion.chunk"
	if c.op == KindCompletion {
		id, object = newID(c.rng, "cmpl-", 29), "text_completion"
	}
	created := c.r.now().Unix()
	var usage any
	if p.includeUsage {
		usage = null()
	}
	tier := ""
	if !c.azure() {
		tier = "default"
	}
	chat := func(choices []chunkChoice, u any) chatChunk {
		return chatChunk{ID: id, Object: object, Created: created, Model: cfg.Model,
			SystemFingerprint: fingerprint(cfg.Model), ServiceTier: tier, Choices: choices, Usage: u}
	}
	text := func(choices []textChoice, u any) textCompletion {
		return textCompletion{ID: id, Object: object, Created: created, Model: cfg.Model,
			SystemFingerprint: fingerprint(cfg.Model), Choices: choices, Usage: u}
	}
	var filters, empty *contentFilterResults
	if c.azure() {
		// Azure opens with the prompt's filter results and no choices.
		filters, empty = outputFilters(), &contentFilterResults{}
		var err error
		if c.op == KindChat {
			err = s.send(chatChunk{Choices: []chunkChoice{}, Usage: usage, PromptFilterResults: promptFilters(1)})
		} else {
			err = s.send(textCompletion{Choices: []textChoice{}, Usage: usage, PromptFilterResults: promptFilters(p.prompts)})
		}
		if err != nil {
			return err
		}
	}
	interval := cfg.Latency.TokenInterval.D()
	for i, toks := range g.tokens {
		if c.op == KindChat {
			blank := ""
			role := chunkChoice{Index: i, Delta: chunkDelta{Role: "assistant", Content: &blank, Refusal: null()},
				Logprobs: null(), FinishReason: null(), ContentFilterResults: empty}
			if err := s.send(chat([]chunkChoice{role}, usage)); err != nil {
				return err
			}
		}
		for j, tok := range toks {
			if j > 0 && interval > 0 {
				if err := c.r.wait(c.req.Context(), interval); err != nil {
					return err
				}
			}
			var err error
			if c.op == KindChat {
				err = s.send(chat([]chunkChoice{{Index: i, Delta: chunkDelta{Content: &tok}, Logprobs: null(),
					FinishReason: null(), ContentFilterResults: filters}}, usage))
			} else {
				err = s.send(text([]textChoice{{Text: tok, Index: i, Logprobs: null(), FinishReason: null(),
					ContentFilterResults: filters}}, usage))
			}
			if err != nil {
				return err
			}
		}
		var err error
		if c.op == KindChat {
			err = s.send(chat([]chunkChoice{{Index: i, Logprobs: null(), FinishReason: jsonString(g.finish[i]),
				ContentFilterResults: empty}}, usage))
		} else {
			err = s.send(text([]textChoice{{Index: i, Logprobs: null(), FinishReason: jsonString(g.finish[i]),
				ContentFilterResults: empty}}, usage))
		}
		if err != nil {
			return err
		}
	}
	if !p.includeUsage {
		return nil
	}
	u := newChatUsage(p.promptTokens, g.completion)
	if c.op == KindChat {
		return s.send(chat([]chunkChoice{}, u))
	}
	return s.send(text([]textChoice{}, u))
}
