package mock

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestVocabularyIsOneTokenEach(t *testing.T) {
	v := newVocabulary()
	check := func(s string) {
		if n := tokenCount(t, s); n != 1 {
			t.Errorf("%q is %d tokens, want 1", s, n)
		}
	}
	for _, w := range v.words {
		check(" " + w)
	}
	for _, w := range v.capitals {
		check(w)
		check(" " + w)
	}
	check(".")
	if len(v.words) < 100 {
		t.Errorf("vocabulary too small: %d", len(v.words))
	}
}

func TestGeneratedTextTokenCount(t *testing.T) {
	v := newVocabulary()
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 300; n += 7 {
		toks := v.generateText(rng, n)
		if len(toks) != n {
			t.Fatalf("generateText(%d) gave %d tokens", n, len(toks))
		}
		text := strings.Join(toks, "")
		if got := tokenCount(t, text); got != n {
			t.Errorf("n=%d: %q tokenizes to %d", n, text, got)
		}
	}
}

func TestSampleCompletionTokens(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var sum int
	const draws = 4000
	for range draws {
		n, capped := sampleCompletionTokens(rng, 64, 1000)
		if n < 1 || capped {
			t.Fatalf("sample %d capped=%v", n, capped)
		}
		sum += n
	}
	if mean := float64(sum) / draws; mean < 60 || mean > 68 {
		t.Errorf("mean %v, want about 64", mean)
	}
	if n, capped := sampleCompletionTokens(rng, 500, 5); n != 5 || !capped {
		t.Errorf("cap: %d %v", n, capped)
	}
}

func TestTTFBLognormal(t *testing.T) {
	l := LatencyConfig{TTFBMedian: Duration(100 * time.Millisecond), TTFBP99: Duration(400 * time.Millisecond)}
	rng := rand.New(rand.NewPCG(5, 6))
	const draws = 20000
	s := make([]time.Duration, draws)
	for i := range s {
		s[i] = ttfb(rng, l)
	}
	slices.Sort(s)
	med, p99 := s[draws/2], s[draws*99/100]
	if med < 95*time.Millisecond || med > 105*time.Millisecond {
		t.Errorf("median %v", med)
	}
	if p99 < 360*time.Millisecond || p99 > 440*time.Millisecond {
		t.Errorf("p99 %v", p99)
	}
	if d := ttfb(rng, LatencyConfig{}); d != 0 {
		t.Errorf("zero config: %v", d)
	}
	if d := ttfb(rng, LatencyConfig{TTFBMedian: Duration(time.Second)}); d != time.Second {
		t.Errorf("median only: %v", d)
	}
}

func TestPromptTokens(t *testing.T) {
	n := func(s string) int { return tokenCount(t, s) }
	tests := []struct {
		name string
		kind Kind
		body string
		want int
	}{
		{"chat string", KindChat, `{"messages":[{"role":"user","content":"Hello world"}]}`, 3 + 3 + n("user") + n("Hello world")},
		{"chat name", KindChat, `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"bob","content":"Hi"}]}`,
			3 + (3 + n("system") + n("Be brief.")) + (3 + n("user") + n("Hi") + n("bob") + 1)},
		{"chat parts", KindChat, `{"messages":[{"role":"user","content":[{"type":"text","text":"one two"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"three"}]}]}`,
			3 + 3 + n("user") + n("one two") + n("three")},
		{"chat null content", KindChat, `{"messages":[{"role":"assistant","content":null}]}`, 3 + 3 + n("assistant")},
		{"completion string", KindCompletion, `{"prompt":"Once upon a time"}`, n("Once upon a time")},
		{"completion strings", KindCompletion, `{"prompt":["a b","c"]}`, n("a b") + n("c")},
		{"completion tokens", KindCompletion, `{"prompt":[1,2,3]}`, 3},
		{"embedding string", KindEmbedding, `{"input":"hello there"}`, n("hello there")},
		{"embedding strings", KindEmbedding, `{"input":["hello","there friend"]}`, n("hello") + n("there friend")},
		{"embedding tokens", KindEmbedding, `{"input":[5,6,7,8]}`, 4},
		{"embedding token arrays", KindEmbedding, `{"input":[[5,6],[7]]}`, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PromptTokens(tt.kind, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PromptTokens = %d, want %d", got, tt.want)
			}
		})
	}
	if _, err := PromptTokens(KindChat, []byte(`{"messages":"x"}`)); err == nil || !strings.Contains(err.Error(), "messages") {
		t.Errorf("invalid body: %v", err)
	}
}

func TestEmbeddingVectorDeterministic(t *testing.T) {
	a := EmbeddingVector("m", "s:hello", 64, 64)
	b := EmbeddingVector("m", "s:hello", 64, 64)
	c := EmbeddingVector("m", "s:hullo", 64, 64)
	if !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Error("embedding not deterministic per input")
	}
	short := EmbeddingVector("m", "s:hello", 64, 8)
	var norm float64
	for _, v := range short {
		norm += float64(v) * float64(v)
	}
	if len(short) != 8 || norm < 0.9999 || norm > 1.0001 {
		t.Errorf("truncated: len %d norm² %v", len(short), norm)
	}
}
