package suite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// Tenant classes of the load.
const (
	ClassNormal  = "normal"
	ClassBatch   = "batch"
	ClassAbusive = "abusive"
)

// TenantLoad is one tenant's clients.
type TenantLoad struct {
	Tenant string
	Class  string // normal, batch or abusive
	Key    string // virtual key plaintext; never logged
	Rate   float64
	// Streams is the fraction of requests sent as streams.
	Streams float64
}

// LoadConfig configures a Load.
type LoadConfig struct {
	Tenants []TenantLoad
	// Transport carries every request (a FailoverTransport). Required.
	Transport http.RoundTripper
	// Model requested (default gpt-4o-mini).
	Model string
	// MaxTokens per request (default 24).
	MaxTokens int64
	// Deadline bounds each request (default 30s).
	Deadline time.Duration
	// BatchMaxWait is sent as x-sluice-max-wait by batch clients (default 5s).
	BatchMaxWait time.Duration
	// Seed seeds prompts and the stream choice.
	Seed int64
}

func (c *LoadConfig) setDefaults() {
	if c.Model == "" {
		c.Model = "gpt-4o-mini"
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = 24
	}
	if c.Deadline == 0 {
		c.Deadline = 30 * time.Second
	}
	if c.BatchMaxWait == 0 {
		c.BatchMaxWait = 5 * time.Second
	}
}

// Load is open-loop load: each tenant's requests start on a ticker at its
// rate whatever happened to the earlier ones, each in its own goroutine
// bounded by the deadline. Run owns those goroutines and returns only
// when every one has ended.
type Load struct {
	cfg     LoadConfig
	mu      sync.Mutex
	records []*Record
}

// NewLoad returns a Load; Run starts it.
func NewLoad(cfg LoadConfig) *Load {
	cfg.setDefaults()
	return &Load{cfg: cfg}
}

// Records returns every request started so far.
func (l *Load) Records() []*Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Record(nil), l.records...)
}

// Run offers load until ctx ends, then waits for the requests in flight
// (each ends by its deadline, or at once when abort ends).
func (l *Load) Run(ctx, abort context.Context) {
	var wg sync.WaitGroup
	for i, tl := range l.cfg.Tenants {
		if tl.Rate <= 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.tenant(ctx, abort, &wg, tl, rand.New(rand.NewPCG(uint64(l.cfg.Seed), uint64(i))))
		}()
	}
	wg.Wait()
}

func (l *Load) tenant(ctx, abort context.Context, wg *sync.WaitGroup, tl TenantLoad, rng *rand.Rand) {
	client := openai.NewClient(
		option.WithBaseURL("http://sluice.invalid/v1/"),
		option.WithAPIKey(tl.Key),
		option.WithHTTPClient(&http.Client{Transport: l.cfg.Transport}),
		option.WithMaxRetries(0),
	)
	every := time.Duration(float64(time.Second) / tl.Rate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rec := &Record{
			ID:     fmt.Sprintf("%s-%d", tl.Tenant, n),
			Tenant: tl.Tenant, Class: tl.Class,
			Stream: rng.Float64() < tl.Streams, Deadline: l.cfg.Deadline,
		}
		prompt := prompts[rng.IntN(len(prompts))]
		l.mu.Lock()
		l.records = append(l.records, rec)
		l.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.send(abort, client, tl, rec, prompt)
		}()
	}
}

var prompts = []string{
	"Say hello to the team.",
	"Summarise the release notes in one line.",
	"What is the capital of Sweden?",
	"Write a haiku about load balancers and quotas.",
	"List three colours of the sea at dawn, briefly.",
}

// send runs one request and fills rec.
func (l *Load) send(abort context.Context, client openai.Client, tl TenantLoad, rec *Record, prompt string) {
	ctx, cancel := context.WithTimeout(abort, l.cfg.Deadline)
	defer cancel()
	ctx = WithRecord(ctx, rec)
	params := openai.ChatCompletionNewParams{
		Model:     openai.ChatModel(l.cfg.Model),
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens: openai.Int(l.cfg.MaxTokens),
	}
	var opts []option.RequestOption
	if tl.Class == ClassBatch {
		opts = append(opts, option.WithHeader("X-Sluice-Priority", "batch"),
			option.WithHeader("X-Sluice-Max-Wait", l.cfg.BatchMaxWait.String()))
	}
	rec.Start = time.Now()
	var err error
	var prompt64, completion int64
	if rec.Stream {
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, params, opts...)
		for stream.Next() {
			if u := stream.Current().Usage; u.TotalTokens > 0 {
				prompt64, completion = u.PromptTokens, u.CompletionTokens
			}
		}
		err = stream.Err()
		_ = stream.Close()
	} else {
		var resp *openai.ChatCompletion
		resp, err = client.Chat.Completions.New(ctx, params, opts...)
		if err == nil {
			prompt64, completion = resp.Usage.PromptTokens, resp.Usage.CompletionTokens
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.End = time.Now()
	rec.Prompt, rec.Complete = prompt64, completion
	rec.Kind, rec.Status, rec.Err = classify(err, ctx.Err())
}

// classify maps a client error to an outcome kind, status and short text.
func classify(err, ctxErr error) (kind string, status int, text string) {
	if err == nil {
		return KindOK, http.StatusOK, ""
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		status = apiErr.StatusCode
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			return KindRefused, status, fmt.Sprintf("status %d: %s", status, firstLine(apiErr.Message))
		}
		return KindFailed, status, fmt.Sprintf("status %d: %s", status, firstLine(apiErr.Message))
	}
	if errors.Is(ctxErr, context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return KindHung, 0, "deadline"
	}
	return KindFailed, 0, shortErr(err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}
