package wire

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKnownCounts(t *testing.T) {
	e := NewEstimator()
	for _, enc := range encodings {
		if n := e.Tokens(enc, "Hello, world! How are you today?"); n != 9 {
			t.Errorf("%s: %d tokens, want 9", enc, n)
		}
	}
	if n := e.Tokens(EncodingCl100k, "tiktoken is great!"); n != 6 { // OpenAI's cookbook example
		t.Errorf("cl100k_base: %d tokens, want 6", n)
	}
	if !ValidEncoding(EncodingO200k) || !ValidEncoding(EncodingCl100k) || ValidEncoding("p50k_base") {
		t.Error("ValidEncoding")
	}
	if e.Tokens("no-such-encoding", "Hello there") != e.Tokens(EncodingO200k, "Hello there") {
		t.Error("unknown encodings should count as o200k_base")
	}
}

// ref counts with the tokenizer module, as the mock provider does.
func ref(t *testing.T, enc, s string) int64 { t.Helper(); return int64(refCount(t, enc, s)) }

func TestChatFormula(t *testing.T) {
	tools := `[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	toolCalls := `[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]`
	body := `{"model":"gpt-4o","messages":[` +
		`{"role":"system","content":"You are a helpful assistant.\nAnswer briefly."},` +
		`{"role":"user","name":"alice","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}},{"text":"And the weather?","type":"text"}]},` +
		`{"role":"assistant","content":null,"tool_calls":` + toolCalls + `},` +
		`{"role":"tool","tool_call_id":"call_1","content":"Sunny, 24 \u00b0C"},` +
		`{"role":"assistant","content":"It is a cat, and it is sunny in Paris."}` +
		`],"tools":` + tools + `,"temperature":0.2}`
	req, err := Parse(EndpointChat, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEstimator()
	for _, enc := range encodings {
		r := func(s string) int64 { return ref(t, enc, s) }
		want := int64(3) +
			3 + r("system") + r("You are a helpful assistant.\nAnswer briefly.") +
			3 + r("user") + r("alice") + 1 + r("What is in this image?") + 85 + r("And the weather?") +
			3 + r("assistant") + r(toolCalls) +
			3 + r("tool") + r("Sunny, 24 °C") +
			3 + r("assistant") + r("It is a cat, and it is sunny in Paris.") +
			r(tools)
		if got := e.PromptTokens(enc, EndpointChat, []byte(body), &req); got != want {
			t.Errorf("%s: PromptTokens = %d, want %d", enc, got, want)
		}
		if got := e.PromptTokens(enc, EndpointChat, []byte(body), nil); got != want {
			t.Errorf("%s: PromptTokens without Request = %d, want %d", enc, got, want)
		}
	}
}

func TestInputsFormula(t *testing.T) {
	e := NewEstimator()
	enc := EncodingCl100k
	r := func(s string) int64 { return ref(t, enc, s) }
	tests := []struct {
		ep   Endpoint
		body string
		want int64
	}{
		{EndpointCompletions, `{"model":"m","prompt":"Once upon a time"}`, r("Once upon a time")},
		{EndpointCompletions, `{"model":"m","prompt":["Once upon","a time"]}`, r("Once upon") + r("a time")},
		{EndpointCompletions, `{"model":"m","prompt":[1,2,3]}`, 3},
		{EndpointEmbeddings, `{"model":"m","input":"The food was delicious"}`, r("The food was delicious")},
		{EndpointEmbeddings, `{"model":"m","input":["a cat","a dog","\u00e9t\u00e9"]}`, r("a cat") + r("a dog") + r("été")},
		{EndpointEmbeddings, `{"model":"m","input":[15339, 1917]}`, 2},
		{EndpointEmbeddings, `{"model":"m","input":[[15339, 1917],[1],[]]}`, 3},
	}
	for _, tc := range tests {
		req, err := Parse(tc.ep, []byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := e.PromptTokens(enc, tc.ep, []byte(tc.body), &req); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.ep, tc.body, got, tc.want)
		}
	}
}

// TestPromptTokensTolerates checks bodies that did not pass Parse, and a
// Request from another body: no panic, a count.
func TestPromptTokensTolerates(t *testing.T) {
	e := NewEstimator()
	other, _ := Parse(EndpointChat, []byte(`{"model":"m","messages":[{"role":"user","content":"a much longer body than the next"}]}`))
	for _, body := range []string{``, `{`, `[]`, `{"messages":5}`, `{"messages":[1,"x",{"content":[5,{"type":"text"}]}]}`,
		`{"messages":[{"role":"user","content":"bad \xff utf8"}]}`} {
		e.PromptTokens(EncodingO200k, EndpointChat, []byte(body), &other)
		e.PromptTokens(EncodingO200k, EndpointEmbeddings, []byte(body), nil)
	}
}

func TestCacheServesRepeats(t *testing.T) {
	e := NewEstimator()
	long := strings.Repeat("The gateway counts tokens once per distinct text. ", 20)
	first := e.Tokens(EncodingO200k, long)
	if _, ok := e.caches[0].lookup(e.caches[0].hash(long)); !ok {
		t.Fatal("long text not cached")
	}
	if again := e.Tokens(EncodingO200k, long); again != first {
		t.Fatalf("cached count %d, counted %d", again, first)
	}
	if _, ok := e.caches[0].lookup(e.caches[0].hash("short")); ok {
		t.Fatal("short text found in the cache")
	}
}

// corpora returns texts of the kinds the estimate must handle, over 64 KiB
// each: English-like prose, this package's Go source, CJK, base64, a
// repeated letter.
func corpora(t *testing.T) map[string]string {
	rng := rand.New(rand.NewPCG(7, 8))
	words := strings.Fields(`the of and to a in is that for it as was with be by on not he I this are or his from at which
		but have an they you were her she there been one all we their has would when if so no what will more can said up out
		about who them some could him into its then two time like only other new my than first any may do these our over also
		gateway request token model budget stream deployment quota limit region minute second answer client server cluster`)
	var prose strings.Builder
	for prose.Len() < 100<<10 {
		n := 5 + rng.IntN(15)
		for i := range n {
			w := words[rng.IntN(len(words))]
			if i == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			prose.WriteString(w)
			if i < n-1 {
				prose.WriteByte(' ')
			}
		}
		prose.WriteString(". ")
		if rng.IntN(6) == 0 {
			prose.WriteString("\n\n")
		}
	}
	var code strings.Builder
	files, _ := filepath.Glob("*.go")
	for code.Len() < 100<<10 {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			code.Write(b)
		}
	}
	var cjk strings.Builder
	for cjk.Len() < 100<<10 {
		for range 8 + rng.IntN(20) {
			cjk.WriteRune(rune(0x4e00 + rng.IntN(2500)))
		}
		cjk.WriteString([]string{"，", "。", "、", "「", "」"}[rng.IntN(5)])
	}
	raw := make([]byte, 80<<10)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return map[string]string{
		"prose":  prose.String(),
		"code":   code.String(),
		"cjk":    cjk.String(),
		"base64": base64.StdEncoding.EncodeToString(raw),
		"letter": strings.Repeat("a", 100<<10),
	}
}

// TestLargeTextEstimate checks the estimate of texts above MaxExactText
// against their exact count, and logs what flat ratios would have given.
func TestLargeTextEstimate(t *testing.T) {
	for name, text := range corpora(t) {
		for _, enc := range encodings {
			exact := float64(encodingFor(enc).count(text))
			tl := NewEstimator().tally(enc)
			est := float64(tl.text(text))
			t.Logf("%-6s %-11s %6d bytes %6.0f tokens (%.3f/byte): sampled %+5.1f%%, bytes/2 %+5.0f%%, bytes/4 %+5.0f%%",
				name, enc, len(text), exact, exact/float64(len(text)),
				100*(est/exact-1), 100*(float64(len(text))/2/exact-1), 100*(float64(len(text))/4/exact-1))
			if est < exact*0.98 || est > exact*1.2 {
				t.Errorf("%s %s: estimate %.0f, exact %.0f", name, enc, est, exact)
			}
		}
	}
}

// TestWorkBound checks that a request full of text that is expensive to
// tokenize stops at the work budget and is priced, not counted, beyond it.
func TestWorkBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var msgs []string
	for range 40 { // 40 messages of 6 KiB of random words
		var sb strings.Builder
		for sb.Len() < 6<<10 {
			sb.WriteByte(' ')
			for range 3 + rng.IntN(12) {
				sb.WriteByte(byte('a' + rng.IntN(26)))
			}
		}
		m, _ := json.Marshal(map[string]string{"role": "user", "content": sb.String()})
		msgs = append(msgs, string(m))
	}
	body := []byte(`{"model":"m","messages":[` + strings.Join(msgs, ",") + `]}`)
	for _, enc := range encodings {
		e := NewEstimator()
		var exact int64 = 3
		tl := e.tally(enc)
		members(view(body), rootValue(view(body)), func(k string, v value) bool {
			elements(view(body), v, func(m value) bool {
				var c struct{ Content string }
				json.Unmarshal([]byte(m.raw), &c)
				exact += 3 + 1 + int64(tl.bpe.count(c.Content))
				return true
			})
			return true
		})
		start := time.Now()
		got := e.PromptTokens(enc, EndpointChat, body, nil)
		took := time.Since(start)
		if float64(got) < float64(exact)*0.98 || float64(got) > float64(exact)*1.2 {
			t.Errorf("%s: estimate %d, exact %d", enc, got, exact)
		}
		t.Logf("%s: %d bytes of random words: estimate %d, exact %d (%+.1f%%), in %v", enc, len(body), got, exact, 100*(float64(got)/float64(exact)-1), took)
	}
}

func TestEstimatorConcurrent(t *testing.T) {
	e := NewEstimator()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				body := fmt.Sprintf(`{"model":"m","messages":[{"role":"system","content":%q},{"role":"user","content":"question %d"}]}`,
					strings.Repeat("Shared system prompt. ", 30), g*100+i)
				e.PromptTokens(encodings[i%2], EndpointChat, []byte(body), nil)
			}
		})
	}
	wg.Wait()
}
