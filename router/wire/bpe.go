package wire

import (
	"fmt"
	"math"
	"sync"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"
)

// Encoding names, as the tokenizer module and OpenAI's tiktoken spell them.
const (
	EncodingO200k  = "o200k_base"  // gpt-4o, gpt-4.1, gpt-5, o-series
	EncodingCl100k = "cl100k_base" // gpt-4, gpt-3.5-turbo, text-embedding-3-*, ada-002
)

// ValidEncoding reports whether PromptTokens knows the encoding; configuration
// should check it, since PromptTokens falls back to o200k_base.
func ValidEncoding(name string) bool {
	return name == EncodingO200k || name == EncodingCl100k
}

// bpe counts tokens of one encoding: the ranks of its byte sequences, taken
// from the tokenizer module's embedded vocabulary, and its pre-tokenizer.
type bpe struct {
	ranks   map[string]uint32
	classes *classTable
	cl100k  bool
	// pieces caches the token counts of frequent pieces (words, mostly),
	// sparing the vocabulary lookups - cache misses in a table of 200k
	// strings - that dominate counting.
	pieces *countCache
}

// Vocabularies are loaded on first use, once per process, and shared by all
// Estimators: they are read-only after loading.
var (
	o200k  = sync.OnceValue(func() *bpe { return loadBPE(tokenizer.O200kBase) })
	cl100k = sync.OnceValue(func() *bpe { return loadBPE(tokenizer.Cl100kBase) })
)

// loadBPE reads every token of the encoding back through the module's public
// Decode and indexes it by its bytes. All token bytes live in one string, so
// the index costs one allocation for the text plus the map.
func loadBPE(enc tokenizer.Encoding) *bpe {
	codec, err := tokenizer.Get(enc)
	if err != nil {
		panic(fmt.Sprintf("wire: tokenizer %s: %v", enc, err)) // the encodings are constants
	}
	var (
		arena []byte
		ends  []int
		ids   []uint32
		one   = make([]uint, 1)
	)
	// Ranks are dense from 0; stop after a long run of unused ids.
	for id, misses := 0, 0; misses < 1024; id++ {
		one[0] = uint(id)
		tok, err := codec.Decode(one)
		if err != nil || tok == "" {
			misses++
			continue
		}
		misses = 0
		arena = append(arena, tok...)
		ends = append(ends, len(arena))
		ids = append(ids, uint32(id))
	}
	text := string(arena)
	b := &bpe{
		ranks:   make(map[string]uint32, len(ids)),
		classes: classes(),
		cl100k:  enc == tokenizer.Cl100kBase,
		pieces:  newCountCache(),
	}
	start := 0
	for i, end := range ends {
		b.ranks[text[start:end]] = ids[i]
		start = end
	}
	return b
}

// count returns the number of tokens of s.
func (b *bpe) count(s string) int {
	n, _, _, _ := b.countLimited(s, math.MaxInt)
	return n
}

// countLimited counts the tokens of s until it has done limit units of work:
// one per piece, plus one per vocabulary lookup (a likely cache miss, the
// dominant cost). It returns the tokens counted, the bytes of text left
// uncounted when the limit stopped it (0 when it finished), the length of
// the text it worked on (s, or s with invalid UTF-8 replaced), and the work
// done.
func (b *bpe) countLimited(s string, limit int) (tokens, rest, total, work int) {
	if !utf8.ValidString(s) {
		// The reference tokenizer matches on runes, so each invalid byte
		// becomes U+FFFD; do the same to give the same count.
		s = string([]rune(s))
	}
	for i := 0; i < len(s); {
		var j int
		if b.cl100k {
			j = b.classes.pieceCl100k(s, i)
		} else {
			j = b.classes.pieceO200k(s, i)
		}
		for i < j {
			e := j
			if e-i > maxPiece {
				e = chunkEnd(s, i)
			}
			n, lookups := b.pieceTokens(s[i:e])
			tokens += n
			work += 1 + lookups
			i = e
			if work >= limit && i < len(s) {
				return tokens, len(s) - i, len(s), work
			}
		}
	}
	return tokens, 0, len(s), work
}

// maxPiece is the longest piece merged whole. Longer pieces - runs of one
// letter, long base64 or hex words, very long CJK runs in o200k_base - are
// merged in chunks of maxPiece bytes, so that a single 64 KiB piece cannot
// cost tens of milliseconds; a merge across a chunk boundary is missed,
// which adds at most about one token per chunk.
const maxPiece = 1024

// chunkEnd returns where the maxPiece chunk from i ends, at a rune boundary.
func chunkEnd(s string, i int) int {
	j := i + maxPiece
	for j > i+1 && !utf8.RuneStart(s[j]) {
		j--
	}
	return j
}

// smallPiece is the longest piece merged with fixed-size arrays on the stack;
// longer ones (long words, base64 runs) use a heap, O(n log n).
const smallPiece = 64

const noRank = math.MaxUint32

// pieceTokens returns the number of tokens byte-pair encoding makes of
// piece, from the piece cache or by merging, and the vocabulary lookups it
// made. Merging starts from single bytes and repeatedly joins the adjacent
// pair whose joined bytes have the lowest rank, leftmost first, until no
// pair is in the vocabulary.
func (b *bpe) pieceTokens(piece string) (tokens, lookups int) {
	if len(piece) <= 1 {
		return len(piece), 0
	}
	h := b.pieces.hash(piece)
	c, ok := b.pieces.lookup(h)
	if !ok {
		c, lookups = b.merge(piece)
		b.pieces.store(h, c)
	}
	return c, lookups
}

// merge runs byte-pair encoding on piece; it returns the tokens and the
// vocabulary lookups it made.
func (b *bpe) merge(piece string) (tokens, lookups int) {
	if _, ok := b.ranks[piece]; ok {
		return 1, 1
	}
	if len(piece) > smallPiece {
		tokens, lookups = b.mergeHeap(piece)
		return tokens, lookups + 1
	}
	// start[k] is where part k begins; part k ends where part k+1 begins.
	// rank[k] is the rank of part k joined with part k+1.
	var start [smallPiece + 1]int32
	var rank [smallPiece + 1]uint32
	m := len(piece) + 1 // boundaries, including the end
	for k := range m {
		start[k] = int32(k)
	}
	lookups = 1
	rankAt := func(k int) uint32 {
		if k+2 < m {
			lookups++
			if r, ok := b.ranks[piece[start[k]:start[k+2]]]; ok {
				return r
			}
		}
		return noRank
	}
	for k := range m - 1 {
		rank[k] = rankAt(k)
	}
	for m > 2 {
		best, at := uint32(noRank), -1
		for k := range m - 2 {
			if rank[k] < best {
				best, at = rank[k], k
			}
		}
		if at < 0 {
			break
		}
		// Merge parts at and at+1: drop boundary at+1.
		copy(start[at+1:m-1], start[at+2:m])
		copy(rank[at+1:m-1], rank[at+2:m])
		m--
		rank[at] = rankAt(at)
		if at > 0 {
			rank[at-1] = rankAt(at - 1)
		}
	}
	return m - 1, lookups
}

// mergeNode is a part boundary in pieceTokensHeap's linked list.
type mergeNode struct {
	prev, next int32
	rank       uint32
}

type mergeCand struct {
	rank uint32
	at   int32
}

var heapScratch = sync.Pool{New: func() any { return new(heapBufs) }}

type heapBufs struct {
	nodes []mergeNode
	heap  []mergeCand
}

// mergeHeap gives the same count as the scan in merge, keeping merge
// candidates in a min-heap ordered by rank, then position; stale candidates
// are skipped when popped.
func (b *bpe) mergeHeap(piece string) (tokens, lookups int) {
	bufs := heapScratch.Get().(*heapBufs)
	defer heapScratch.Put(bufs)
	n := int32(len(piece))
	nodes := bufs.nodes[:0]
	for i := int32(0); i <= n; i++ {
		nodes = append(nodes, mergeNode{prev: i - 1, next: i + 1, rank: noRank})
	}
	nodes[n].next = -1
	rankOf := func(i int32) uint32 {
		j := nodes[i].next
		if j < 0 {
			return noRank
		}
		k := nodes[j].next
		if k < 0 {
			return noRank
		}
		lookups++
		if r, ok := b.ranks[piece[i:k]]; ok {
			return r
		}
		return noRank
	}
	h := bufs.heap[:0]
	for i := int32(0); i+2 <= n; i++ {
		if r := rankOf(i); r != noRank {
			nodes[i].rank = r
			h = append(h, mergeCand{r, i})
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		heapDown(h, i)
	}
	parts := int(n)
	for len(h) > 0 {
		top := h[0]
		last := len(h) - 1
		h[0] = h[last]
		h = h[:last]
		heapDown(h, 0)
		i := top.at
		if nodes[i].rank != top.rank {
			continue // stale
		}
		j := nodes[i].next
		k := nodes[j].next
		nodes[j].rank = noRank
		nodes[i].next = k
		if k >= 0 {
			nodes[k].prev = i
		}
		parts--
		for _, p := range [2]int32{i, nodes[i].prev} {
			if p < 0 {
				continue
			}
			nodes[p].rank = rankOf(p)
			if nodes[p].rank != noRank {
				h = append(h, mergeCand{nodes[p].rank, p})
				heapUp(h, len(h)-1)
			}
		}
	}
	if cap(nodes) <= 1<<16 { // keep scratch for ordinary long pieces only
		bufs.nodes, bufs.heap = nodes[:0], h[:0]
	} else {
		bufs.nodes, bufs.heap = nil, nil
	}
	return parts, lookups
}

func candLess(a, b mergeCand) bool {
	return a.rank < b.rank || a.rank == b.rank && a.at < b.at
}

func heapUp(h []mergeCand, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !candLess(h[i], h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func heapDown(h []mergeCand, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if r := c + 1; r < len(h) && candLess(h[r], h[c]) {
			c = r
		}
		if !candLess(h[c], h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// encodingFor returns the loaded encoding for name; unknown names get o200k_base.
func encodingFor(name string) *bpe {
	if name == EncodingCl100k {
		return cl100k()
	}
	return o200k()
}
