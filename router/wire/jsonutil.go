package wire

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

const maxInt = math.MaxInt64

// maxDepth bounds the nesting of a request body. gjson validates
// recursively, so without a bound a body of a few megabytes of '[' would
// exhaust the goroutine stack and crash the process. Real requests (JSON
// schemas in tools and response_format included) stay far below it.
const maxDepth = 128

// view returns b as a string without copying. Strings taken from it must
// not outlive b: anything a Request keeps is copied (strings.Clone) first.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// depthOK reports whether no array or object in b nests deeper than limit.
// It skips string contents with IndexByte, so it runs at memory speed on the
// long message texts that make up most of a body. On malformed input it
// answers true and leaves the verdict to the validator.
func depthOK(b []byte, limit int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return true
				}
				i += 1 + j
				n := 0 // backslashes before the quote
				for k := i - 1; b[k] == '\\'; k-- {
					n++
				}
				if n%2 == 0 {
					break
				}
			}
		case '{', '[':
			depth++
			if depth > limit {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, w := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && w == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += w
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// integer reads an integral JSON number: 12, -3, and also 12.0 or 1e3, which
// clients in languages without an integer type send. ok is false for other
// values; overflow is true when the value is integral but beyond int64 (its
// sign is raw's).
func integer(raw string) (n int64, ok, overflow bool) {
	if raw == "" || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false, false
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err == nil {
		return n, true, false
	}
	if isRange(err) {
		return 0, true, true
	}
	f, err := strconv.ParseFloat(raw, 64)
	switch {
	case err != nil:
		return 0, isRange(err), isRange(err) // ±Inf: integral, far out of range
	case f != math.Trunc(f):
		return 0, false, false
	case f >= math.MaxInt64 || f < math.MinInt64:
		return 0, true, true
	}
	return int64(f), true, false
}

func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}
