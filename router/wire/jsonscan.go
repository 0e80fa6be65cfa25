package wire

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A small scanner over JSON text that yields members and elements as raw
// text with their offsets. gjson's iterators unescape every string value
// they pass, which allocates for nearly every message (prompts are full of
// \n); this scanner never allocates, and strings are unescaped only when
// read, into a reused buffer. It expects validated JSON (Parse runs
// gjson.ValidBytes first), and on malformed input stops early rather than
// panic.

// value is one JSON value: its raw text and the offset where it starts.
type value struct {
	raw string
	off int
}

func (v value) exists() bool   { return v.raw != "" }
func (v value) isString() bool { return v.raw != "" && v.raw[0] == '"' }
func (v value) isObject() bool { return v.raw != "" && v.raw[0] == '{' }
func (v value) isArray() bool  { return v.raw != "" && v.raw[0] == '[' }
func (v value) isNull() bool   { return v.raw == "null" }
func (v value) isNumber() bool {
	return v.raw != "" && (v.raw[0] == '-' || v.raw[0] >= '0' && v.raw[0] <= '9')
}

// bool returns the value of true or false; ok is false for anything else.
func (v value) bool() (b, ok bool) {
	switch v.raw {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func (v value) span() span { return span{v.off, len(v.raw)} }

// kind names the JSON type of v as OpenAI's messages do ("a string", "an array").
func (v value) kind() string {
	switch {
	case v.raw == "":
		return "nothing"
	case v.isNull():
		return "null"
	case v.raw == "true" || v.raw == "false":
		return "a boolean"
	case v.isString():
		return "a string"
	case v.isObject():
		return "an object"
	case v.isArray():
		return "an array"
	}
	if _, err := strconv.ParseInt(v.raw, 10, 64); err == nil {
		return "an integer"
	}
	return "a decimal"
}

// isSpace reports JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// stringEnd returns the index just after the closing quote of the string
// whose opening quote is at s[i], or -1.
func stringEnd(s string, i int) int {
	j := i + 1
	for {
		k := strings.IndexByte(s[j:], '"')
		if k < 0 {
			return -1
		}
		j += k
		n := 0 // backslashes before the quote: an odd count escapes it
		for m := j - 1; m > i && s[m] == '\\'; m-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
}

// valueEnd returns the end of the value starting at s[i], or -1.
func valueEnd(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		return stringEnd(s, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(s); j++ {
			switch s[j] {
			case '"':
				e := stringEnd(s, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	case ',', ':', '}', ']':
		return -1
	}
	j := i
	for j < len(s) && !isSpace(s[j]) && s[j] != ',' && s[j] != '}' && s[j] != ']' {
		j++
	}
	return j
}

// rootValue returns the top-level value of a JSON text: everything between
// leading and trailing whitespace. It does not look for the value's end,
// which would cost a pass over the body: members finds it as it walks, and
// stops at anything malformed.
func rootValue(s string) value {
	i, e := skipSpace(s, 0), len(s)
	for e > i && isSpace(s[e-1]) {
		e--
	}
	return value{s[i:e], i}
}

// members calls fn with the raw key (between its quotes, escapes as sent)
// and the value of each member of the object o, until fn returns false.
// s is the whole text o was taken from. It reports false if the object
// turned out malformed.
func members(s string, o value, fn func(key string, v value) bool) bool {
	if !o.isObject() {
		return false
	}
	i := skipSpace(s, o.off+1)
	if i < len(s) && s[i] == '}' {
		return true
	}
	for i < len(s) && s[i] == '"' {
		ke := stringEnd(s, i)
		if ke < 0 {
			return false
		}
		key := s[i+1 : ke-1]
		i = skipSpace(s, ke)
		if i >= len(s) || s[i] != ':' {
			return false
		}
		i = skipSpace(s, i+1)
		ve := valueEnd(s, i)
		if ve < 0 {
			return false
		}
		if !fn(key, value{s[i:ve], i}) {
			return true
		}
		i = skipSpace(s, ve)
		if i < len(s) && s[i] == ',' {
			i = skipSpace(s, i+1)
			continue
		}
		return i < len(s) && s[i] == '}'
	}
	return false
}

// elements calls fn with each element of the array a until fn returns false.
func elements(s string, a value, fn func(v value) bool) bool {
	if !a.isArray() {
		return false
	}
	i := skipSpace(s, a.off+1)
	if i < len(s) && s[i] == ']' {
		return true
	}
	for i < len(s) {
		ve := valueEnd(s, i)
		if ve < 0 {
			return false
		}
		if !fn(value{s[i:ve], i}) {
			return true
		}
		i = skipSpace(s, ve)
		if i < len(s) && s[i] == ',' {
			i = skipSpace(s, i+1)
			continue
		}
		return i < len(s) && s[i] == ']'
	}
	return false
}

// keyIs reports whether a raw key (as members yields it) means name. Keys
// are compared after unescaping, as the upstream's parser will read them.
func keyIs(raw, name string) bool {
	if raw == name {
		return true
	}
	if strings.IndexByte(raw, '\\') < 0 || len(raw) < len(name) {
		return false
	}
	var buf [64]byte
	return string(appendUnescaped(buf[:0], raw)) == name
}

// keyText returns a raw key unescaped.
func keyText(raw string) string {
	if strings.IndexByte(raw, '\\') < 0 {
		return raw
	}
	return string(appendUnescaped(nil, raw))
}

// text returns the contents of the JSON string v. Without escapes it is a
// substring of v; with escapes it is unescaped into *scratch, and valid only
// until the next use of scratch.
func (v value) text(scratch *[]byte) string {
	if !v.isString() || len(v.raw) < 2 {
		return ""
	}
	inner := v.raw[1 : len(v.raw)-1]
	if strings.IndexByte(inner, '\\') < 0 {
		return inner
	}
	*scratch = appendUnescaped((*scratch)[:0], inner)
	return view(*scratch)
}

// appendUnescaped appends the unescaped contents of a JSON string (between
// its quotes). Unpaired surrogates become U+FFFD.
func appendUnescaped(dst []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, '\\')
		if i < 0 || i+1 >= len(s) {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		c := s[i+1]
		s = s[i+2:]
		switch c {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r, n := hex4(s)
			if n == 0 {
				dst = append(dst, `\u`...)
				continue
			}
			s = s[n:]
			if utf16.IsSurrogate(r) {
				r2, n2 := rune(-1), 0
				if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
					r2, n2 = hex4(s[2:])
				}
				if d := utf16.DecodeRune(r, r2); n2 > 0 && d != utf8.RuneError {
					r, s = d, s[2+n2:]
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // " \ /
			dst = append(dst, c)
		}
	}
}

func hex4(s string) (rune, int) {
	if len(s) < 4 {
		return 0, 0
	}
	var r rune
	for i := range 4 {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, 0
		}
		r = r<<4 | rune(c)
	}
	return r, 4
}
