package wire

import (
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// Estimator counts the prompt tokens of requests the way Azure OpenAI
// charges them on arrival, with the model's real BPE. It is safe for
// concurrent use; vocabularies are loaded once per process and shared.
//
// The counts follow OpenAI's accounting for chat requests:
//
//	chat        = 3 + Σ messages (3 + tokens(role) + tokens(content)
//	                              + tokens(name) + 1 if name is present)
//	              + tokens(tool_calls JSON) + tokens(function_call JSON) of each message
//	              + tokens(tools JSON) + tokens(functions JSON)
//	completions = tokens(prompt)
//	embeddings  = tokens(input)
//
// content is a string or an array of parts: a "text" part counts its text,
// a "refusal" part its refusal, an "image_url" part a fixed 85 (a
// low-detail image); other parts (audio, files) count 0 and are settled by
// the real usage. Tool and function definitions, and the tool calls
// assistant messages carry, are counted as the tokens of their JSON text:
// OpenAI renders them into the prompt in its own, undocumented format, so
// this is a rough figure that the real usage settles. prompt and input may
// be a string, an array of strings, an array of token ids (its length) or
// an array of such arrays (the sum).
//
// Counting is bounded so that a huge or hostile prompt cannot burn CPU: a
// text longer than MaxExactText is estimated from samples, and once a
// request has used ExactWork units of tokenizer work the rest of its text is
// priced at the tokens-per-byte ratio seen so far (see estimateLarge). Texts
// that recur across requests (system prompts, tool definitions, the history
// a chat resends each turn) are counted once and then served from a cache.
type Estimator struct {
	caches [2]*countCache // o200k_base, cl100k_base
}

const (
	// MaxExactText is the longest single text tokenized exactly (64 KiB,
	// about 16k tokens of English).
	MaxExactText = 64 << 10
	// ExactWork bounds the tokenizer work spent on one request, in units of
	// one piece (about a word) or one vocabulary lookup. 32768 units cover
	// about 100 KiB of fresh English prose (more when its words are cached),
	// and took at most about 3 ms on the slowest text measured (random
	// letters, where every piece needs many lookups; TestWorkBound).
	ExactWork = 1 << 15

	// Large texts are estimated from sampleWindows windows of sampleBytes.
	sampleWindows = 4
	sampleBytes   = 4 << 10
	// sampleMargin scales an extrapolated tokens-per-byte ratio up, so that
	// estimates err high: admission must not under-reserve. Sampled ratios
	// measured within -2%..+3% of the exact ones (TestLargeTextEstimate).
	sampleMargin = 1.10
	// fallbackRatio prices text when nothing of the request was counted;
	// no measured text exceeds 0.72 tokens per byte (base64).
	fallbackRatio = 0.75

	imageTokens = 85
)

// NewEstimator returns an Estimator. Vocabularies load on first use
// (about 200 ms for o200k_base); call Preload at start-up to pay that early.
func NewEstimator() *Estimator {
	return &Estimator{caches: [2]*countCache{newCountCache(), newCountCache()}}
}

// Preload loads the vocabularies of the named encodings now.
func (e *Estimator) Preload(encodings ...string) {
	for _, name := range encodings {
		encodingFor(name)
	}
}

func (e *Estimator) tally(encoding string) tally {
	b := encodingFor(encoding)
	c := e.caches[0]
	if b.cl100k {
		c = e.caches[1]
	}
	return tally{bpe: b, cache: c, work: ExactWork}
}

// Tokens returns the exact number of tokens of text in the encoding, with
// no bounds.
func (e *Estimator) Tokens(encoding, text string) int {
	t := e.tally(encoding)
	return t.exact(text)
}

// PromptTokens returns the prompt tokens of a request body to ep. encoding
// is "o200k_base" or "cl100k_base"; others count as o200k_base (check
// configuration with ValidEncoding). req, if not nil, is what Parse returned
// for this body and spares a second scan. The body should have passed Parse;
// on anything else the count is meaningless but PromptTokens does not panic.
func (e *Estimator) PromptTokens(encoding string, ep Endpoint, body []byte, req *Request) int64 {
	s := view(body)
	var r Request
	if req != nil && req.parsed && req.ep == ep && req.size == len(body) {
		r = *req
	} else {
		r = locate(ep, s)
	}
	t := e.tally(encoding)
	defer t.release()
	switch ep {
	case EndpointChat:
		return t.chat(s, &r)
	case EndpointCompletions, EndpointEmbeddings:
		return t.inputs(s, value{r.payload.of(s), r.payload.off})
	}
	return 0
}

// locate finds what the Estimator reads, for a body not passed through Parse.
func locate(ep Endpoint, s string) Request {
	r := Request{ep: ep, size: len(s)}
	members(s, rootValue(s), func(k string, v value) bool {
		switch fieldOf(ep, keyText(k)) {
		case fMessages, fPrompt, fInput:
			r.payload = v.span()
		case fTools:
			r.tools = v.span()
		case fFunctions:
			r.functions = v.span()
		}
		return true
	})
	return r
}

// tally counts one request: it carries the work budget and the ratio seen
// so far, which prices text beyond the budget.
type tally struct {
	bpe     *bpe
	cache   *countCache
	work    int     // tokenizer work left
	bytes   int64   // bytes counted (exactly, from the cache, or in samples)
	tokens  int64   // tokens they gave
	scratch *[]byte // from scratchBufs, for unescaping
}

func (t *tally) chat(s string, r *Request) int64 {
	total := int64(3)
	elements(s, value{r.payload.of(s), r.payload.off}, func(m value) bool {
		total += 3
		members(s, m, func(k string, v value) bool {
			switch {
			case keyIs(k, "content"):
				total += t.content(s, v)
			case keyIs(k, "role"):
				total += t.str(v)
			case keyIs(k, "name"):
				if v.isString() {
					total += t.str(v) + 1
				}
			case keyIs(k, "tool_calls"), keyIs(k, "function_call"):
				if v.isArray() || v.isObject() {
					total += t.text(v.raw)
				}
			}
			return true
		})
		return true
	})
	if r.tools.n > 0 {
		total += t.text(r.tools.of(s))
	}
	if r.functions.n > 0 {
		total += t.text(r.functions.of(s))
	}
	return total
}

// content counts a message's content: a string or an array of parts.
func (t *tally) content(s string, v value) int64 {
	if v.isString() {
		return t.str(v)
	}
	var n int64
	elements(s, v, func(part value) bool {
		var typ, text value
		members(s, part, func(k string, v value) bool {
			switch {
			case keyIs(k, "type"):
				typ = v
			case keyIs(k, "text"), keyIs(k, "refusal"):
				text = v
			}
			return true
		})
		switch typ.raw {
		case `"text"`, `"refusal"`:
			n += t.str(text)
		case `"image_url"`, `"image"`:
			n += imageTokens
		}
		return true
	})
	return n
}

// inputs counts a completions prompt or an embeddings input.
func (t *tally) inputs(s string, v value) int64 {
	if v.isString() {
		return t.str(v)
	}
	var n int64
	elements(s, v, func(e value) bool {
		switch {
		case e.isString():
			n += t.str(e)
		case e.isNumber():
			n++ // a token id
		case e.isArray():
			elements(s, e, func(value) bool { n++; return true })
		}
		return true
	})
	return n
}

// text counts the tokens of one text within the request's bounds.
func (t *tally) text(s string) int64 {
	switch {
	case len(s) == 0:
		return 0
	case len(s) > MaxExactText:
		return t.estimateLarge(s)
	case len(s) < cacheMin:
		return t.fresh(s, 0, false)
	}
	h := t.cache.hash(s)
	if c, ok := t.cache.lookup(h); ok {
		t.note(len(s), c)
		return int64(c)
	}
	return t.fresh(s, h, true)
}

// str counts the text of a JSON string value. A text with escapes (nearly
// every prompt has \n) is looked up in the cache by its escaped form, so
// that a repeated one is not even unescaped.
func (t *tally) str(v value) int64 {
	if !v.isString() {
		return 0
	}
	inner := v.raw[1 : len(v.raw)-1]
	if strings.IndexByte(inner, '\\') < 0 {
		return t.text(inner)
	}
	if len(inner) < cacheMin || len(inner) > MaxExactText {
		return t.text(t.unescape(inner))
	}
	h := t.cache.hashRaw(inner)
	if c, ok := t.cache.lookup(h); ok {
		t.note(len(inner), c)
		return int64(c)
	}
	return t.fresh(t.unescape(inner), h, true)
}

// unescape returns the unescaped contents of a JSON string, in the tally's
// scratch buffer: valid until the next call.
func (t *tally) unescape(inner string) string {
	if t.scratch == nil {
		t.scratch = scratchBufs.Get().(*[]byte)
	}
	*t.scratch = appendUnescaped((*t.scratch)[:0], inner)
	return view(*t.scratch)
}

var scratchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// release returns the tally's scratch buffer to the pool.
func (t *tally) release() {
	if t.scratch != nil && cap(*t.scratch) <= 2*MaxExactText {
		scratchBufs.Put(t.scratch)
	}
	t.scratch = nil
}

// fresh counts s within the work budget, and caches an exact count under h.
func (t *tally) fresh(s string, h uint64, cache bool) int64 {
	if t.work <= 0 {
		return t.extrapolate(len(s))
	}
	c, rest, total, work := t.bpe.countLimited(s, t.work)
	t.work -= work
	t.note(total-rest, c)
	if rest > 0 {
		return int64(c) + t.extrapolate(rest)
	}
	if cache {
		t.cache.store(h, c)
	}
	return int64(c)
}

func (t *tally) note(bytes, tokens int) {
	t.bytes += int64(bytes)
	t.tokens += int64(tokens)
}

// extrapolate prices n bytes at the ratio of what the request counted.
func (t *tally) extrapolate(n int) int64 {
	ratio := fallbackRatio
	if t.bytes > 0 {
		ratio = float64(t.tokens) / float64(t.bytes)
	}
	return int64(math.Ceil(float64(n) * ratio * sampleMargin))
}

// exact counts s without bounds, with the cache.
func (t *tally) exact(s string) int {
	if len(s) < cacheMin {
		return t.bpe.count(s)
	}
	h := t.cache.hash(s)
	c, ok := t.cache.lookup(h)
	if !ok {
		c = t.bpe.count(s)
		t.cache.store(h, c)
	}
	return c
}

// estimateLarge prices a text too long to tokenize whole. It counts
// sampleWindows windows spread over the text and scales their
// tokens-per-byte ratio to the whole text, plus sampleMargin. A flat ratio
// (bytes/2, or bytes/4) would cost nothing but is off by 2x or more in one
// direction or the other depending on language and content (English 0.24
// tokens per byte, code 0.29, CJK 0.28-0.39, base64 0.68-0.72, a repeated
// letter 0.125: TestLargeTextEstimate), whereas the text's own samples land
// within a few percent of the exact count. The windows draw on the work
// budget like any text; past it, the request's ratio so far is used.
func (t *tally) estimateLarge(s string) int64 {
	var by, tok int
	stride := (len(s) - sampleBytes) / (sampleWindows - 1)
	for w := range sampleWindows {
		if t.work <= 0 {
			break
		}
		win := window(s, w*stride, sampleBytes)
		c, rest, total, work := t.bpe.countLimited(win, t.work)
		t.work -= work
		t.note(total-rest, c)
		by += total - rest
		tok += c
	}
	if by == 0 {
		return t.extrapolate(len(s))
	}
	return int64(math.Ceil(float64(len(s)) * float64(tok) / float64(by) * sampleMargin))
}

// window returns about n bytes of s from off, moved to rune boundaries.
func window(s string, off, n int) string {
	end := min(off+n, len(s))
	for off < end && !utf8.RuneStart(s[off]) {
		off++
	}
	for end < len(s) && end > off && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[off:end]
}
