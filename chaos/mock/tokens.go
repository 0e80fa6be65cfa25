package mock

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/tiktoken-go/tokenizer"
)

// o200k is the o200k_base codec, loaded once. The codec is immutable after
// construction and safe for concurrent use.
var o200k = sync.OnceValues(func() (tokenizer.Codec, error) {
	c, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		return nil, fmt.Errorf("load o200k_base: %w", err)
	}
	if _, err := c.Count("warm up"); err != nil {
		return nil, fmt.Errorf("load o200k_base: %w", err)
	}
	return c, nil
})

// countTokens counts the o200k_base tokens of s.
func countTokens(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	c, err := o200k()
	if err != nil {
		return 0, err
	}
	n, err := c.Count(s)
	if err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}

// Output vocabulary. Every " "+word, every capital and " "+capital, and "."
// is exactly one o200k_base token (tokens_test.go checks this), so generated
// text of n entries tokenizes to exactly n tokens.
const (
	outputWordList = `the quick brown fox jumps over lazy dog and a of to
in is it that for on with as was at by this be from or are an have not but
they which one you all were her she there would their we him been has when
who will more no if out so said what up its about into than them can only
other new some could time these two may then do first any my now such like
our man me even most made after also did many before must through back
years where much your way well down should because each just those people
how too little state good very make world still own see men work long get
here between both life being under never day same another know while last
might us great old year off come since against go came right used take
three`
	outputCapitalList = `The A In It This We You They When If As On For But And So`
)

// vocabulary is the word list answers are made of.
type vocabulary struct {
	words    []string
	capitals []string
}

func newVocabulary() vocabulary {
	return vocabulary{words: strings.Fields(outputWordList), capitals: strings.Fields(outputCapitalList)}
}

// generateText returns n output tokens (n >= 1): sentences of vocabulary
// words, each starting with a capital and sometimes ending with a period.
func (v vocabulary) generateText(rng *rand.Rand, n int) []string {
	toks := make([]string, 0, n)
	sinceStart := 0
	for i := range n {
		switch {
		case i == 0:
			toks = append(toks, v.capitals[rng.IntN(len(v.capitals))])
		case toks[i-1] == ".":
			toks = append(toks, " "+v.capitals[rng.IntN(len(v.capitals))])
			sinceStart = 0
		case sinceStart >= 4 && rng.IntN(8) == 0:
			toks = append(toks, ".")
		default:
			toks = append(toks, " "+v.words[rng.IntN(len(v.words))])
		}
		sinceStart++
	}
	return toks
}

// sampleCompletionTokens draws an answer length around mean and caps it at
// limit. It reports whether the cap applied (finish_reason "length").
func sampleCompletionTokens(rng *rand.Rand, mean, limit int) (int, bool) {
	sd := float64(mean) / 3
	v := int(float64(mean) + sd*rng.NormFloat64() + 0.5)
	v = max(v, 1)
	if v >= limit {
		return max(limit, 1), true
	}
	return v, false
}
