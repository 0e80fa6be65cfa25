package wire

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// The pre-tokenizers below split text into the pieces that BPE then encodes,
// exactly as the split regular expressions of o200k_base and cl100k_base do
// under ordinary backtracking semantics (tiktoken's fancy-regex, regexp2's
// interpreter). They replace the tokenizer module's matcher, which converts
// the whole text to runes and allocates per match: same pieces, about ten
// times faster and without allocations. That matcher is generated code with
// two bugs, so on some text the module counts differently from tiktoken and
// from this package: it drops U+007F, and on backtracking \s*[\r\n]+ it
// stops at the first line break of a whitespace run instead of the last
// ("\n  \n" is one piece, and one o200k token, not two). TestSplitMatchesRegexp
// and FuzzSplit compare the pieces with regexp2's interpreter;
// TestSplitMatchesLibrary and FuzzTokenCount compare counts with the module
// wherever its matcher splits correctly.
//
// Each alternative of the expressions is spelled out where it is implemented.
// Both expressions are leftmost-first alternations: at a position the first
// alternative that can match wins, and within it quantifiers backtrack in the
// usual greedy order. Every character matches some alternative, so pieces are
// never empty and the text is covered without gaps.

// Rune classes, as bits of one byte.
const (
	cL  uint8 = 1 << iota // \p{L}
	cN                    // \p{N}
	cS                    // \s: unicode.IsSpace, as regexp2 defines it
	cU                    // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	cW                    // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
	cNL                   // \r or \n
)

// isPrefix reports [^\r\n\p{L}\p{N}]: the optional character in front of a word.
func isPrefix(c uint8) bool { return c&(cL|cN|cNL) == 0 }

// isOther reports [^\s\p{L}\p{N}]: punctuation, symbols and marks.
func isOther(c uint8) bool { return c&(cS|cL|cN) == 0 }

func classify(r rune) uint8 {
	var c uint8
	if unicode.Is(unicode.L, r) {
		c |= cL
	}
	if unicode.Is(unicode.N, r) {
		c |= cN
	}
	if unicode.IsSpace(r) {
		c |= cS
	}
	if unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M) {
		c |= cU
	}
	if unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M) {
		c |= cW
	}
	if r == '\r' || r == '\n' {
		c |= cNL
	}
	return c
}

// classTable holds the class of every rune of the Basic Multilingual Plane;
// runes above it are classified on the fly. Built once, on first use (64 KiB,
// a few milliseconds).
type classTable [1 << 16]uint8

var classes = sync.OnceValue(func() *classTable {
	t := new(classTable)
	for r := range t {
		t[r] = classify(rune(r))
	}
	return t
})

// at returns the class and width of the rune at s[i]. s must be valid UTF-8.
func (t *classTable) at(s string, i int) (uint8, int) {
	if b := s[i]; b < utf8.RuneSelf {
		return t[b], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	if r < 1<<16 {
		return t[r], w
	}
	return classify(r), w
}

// runOf returns the end of the run of runes, from i, whose class has a bit of mask.
func (t *classTable) runOf(s string, i int, mask uint8) int {
	for i < len(s) {
		if b := s[i]; b < utf8.RuneSelf { // ASCII fast path: at does not inline
			if t[b]&mask == 0 {
				break
			}
			i++
			continue
		}
		c, w := t.at(s, i)
		if c&mask == 0 {
			break
		}
		i += w
	}
	return i
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) at i and returns its end,
// or i if there is none. Case folding makes 's' also match U+017F (ſ).
func contraction(s string, i int) int {
	if i+1 >= len(s) || s[i] != '\'' {
		return i
	}
	switch s[i+1] {
	case 's', 'S', 't', 'T', 'm', 'M', 'd', 'D':
		return i + 2
	case 'r', 'R', 'v', 'V':
		if i+2 < len(s) && (s[i+2] == 'e' || s[i+2] == 'E') {
			return i + 3
		}
	case 'l', 'L':
		if i+2 < len(s) && (s[i+2] == 'l' || s[i+2] == 'L') {
			return i + 3
		}
	case 0xC5: // U+017F is C5 BF
		if i+2 < len(s) && s[i+2] == 0xBF {
			return i + 3
		}
	}
	return i
}

// spaces implements the three whitespace alternatives shared by both
// encodings, at i where s[i] is a space:
//
//	\s*[\r\n]+   up to and including the last line break of the run
//	\s+(?!\S)    the run, less its last rune when a non-space follows
//	\s+          the run (a single space before a non-space)
func (t *classTable) spaces(s string, i int) int {
	end, lastNL, last := i, -1, i
	for end < len(s) {
		c, w := t.at(s, end)
		if c&cS == 0 {
			break
		}
		if c&cNL != 0 {
			lastNL = end + w
		}
		last = end
		end += w
	}
	switch {
	case lastNL >= 0:
		return lastNL
	case end == len(s) || last == i:
		return end
	default:
		return last
	}
}

// pieceO200k returns the end of the o200k_base piece that starts at i:
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|\p{N}{1,3}
//	| ?[^\s\p{L}\p{N}]+[\r\n/]*
//	|\s*[\r\n]+
//	|\s+(?!\S)
//	|\s+
func (t *classTable) pieceO200k(s string, i int) int {
	c0, w0 := t.at(s, i)
	prefix := isPrefix(c0) && i+w0 < len(s)
	if prefix || c0&(cU|cW) != 0 {
		// Alternative 1, with the optional prefix taken first, then without it.
		if prefix {
			if e := t.upperLower(s, i+w0); e >= 0 {
				return contraction(s, e)
			}
		}
		if e := t.upperLower(s, i); e >= 0 {
			return contraction(s, e)
		}
		// Alternative 2, in the same order. U+ is greedy and W* can be
		// empty, so no backtracking is needed.
		if prefix {
			if e := t.runOf(s, i+w0, cU); e > i+w0 {
				return contraction(s, t.runOf(s, e, cW))
			}
		}
		if e := t.runOf(s, i, cU); e > i {
			return contraction(s, t.runOf(s, e, cW))
		}
	}
	if c0&cN != 0 {
		return t.digits(s, i)
	}
	if e := t.punct(s, i, true); e > i {
		return e
	}
	if c0&cS != 0 {
		return t.spaces(s, i)
	}
	return i + w0 // not reached: every rune matches an alternative
}

// upperLower matches U*W+ at j, backtracking U* as the regexp does, and
// returns the end of the match or -1. U and W overlap (Lm, Lo, M), so when the
// rune after the U run is not lowercase, the match ends after the last rune of
// the U run that is also in W.
func (t *classTable) upperLower(s string, j int) int {
	p, lastW := j, -1
	for p < len(s) {
		c, w := t[s[p]&0x7f], 1 // ASCII fast path: at does not inline
		if s[p] >= utf8.RuneSelf {
			c, w = t.at(s, p)
		}
		if c&cU == 0 {
			if c&cW != 0 { // lowercase after the U run: W+ runs from here
				return t.runOf(s, p, cW)
			}
			break
		}
		p += w
		if c&cW != 0 {
			lastW = p
		}
	}
	return lastW
}

// digits matches \p{N}{1,3} at i.
func (t *classTable) digits(s string, i int) int {
	for n := 0; n < 3 && i < len(s); n++ {
		c, w := t.at(s, i)
		if c&cN == 0 {
			break
		}
		i += w
	}
	return i
}

// punct matches ` ?[^\s\p{L}\p{N}]+[\r\n/]*` (o200k) or ` ?[^\s\p{L}\p{N}]+[\r\n]*`
// (cl100k) at i and returns its end, or i when it does not match. The
// optional space is atomic, as are both loops.
func (t *classTable) punct(s string, i int, slash bool) int {
	j := i
	if s[j] == ' ' {
		j++
	}
	e := j
	for e < len(s) {
		c, w := t.at(s, e)
		if !isOther(c) {
			break
		}
		e += w
	}
	if e == j {
		return i
	}
	for e < len(s) && (s[e] == '\r' || s[e] == '\n' || slash && s[e] == '/') {
		e++
	}
	return e
}

// pieceCl100k returns the end of the cl100k_base piece that starts at i:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)
//	|[^\r\n\p{L}\p{N}]?\p{L}+
//	|\p{N}{1,3}
//	| ?[^\s\p{L}\p{N}]+[\r\n]*
//	|\s*[\r\n]+
//	|\s+(?!\S)
//	|\s+
func (t *classTable) pieceCl100k(s string, i int) int {
	if e := contraction(s, i); e > i {
		return e
	}
	c0, w0 := t.at(s, i)
	if isPrefix(c0) && i+w0 < len(s) {
		if e := t.runOf(s, i+w0, cL); e > i+w0 {
			return e
		}
	}
	if c0&cL != 0 {
		return t.runOf(s, i, cL)
	}
	if c0&cN != 0 {
		return t.digits(s, i)
	}
	if e := t.punct(s, i, false); e > i {
		return e
	}
	if c0&cS != 0 {
		return t.spaces(s, i)
	}
	return i + w0
}
