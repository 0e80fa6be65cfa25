package wire

import (
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"
)

// reference returns the tokenizer module's own codec: the oracle for counts.
var reference = sync.OnceValue(func() map[string]tokenizer.Codec {
	m := map[string]tokenizer.Codec{}
	for _, enc := range []tokenizer.Encoding{tokenizer.O200kBase, tokenizer.Cl100kBase} {
		c, err := tokenizer.Get(enc)
		if err != nil {
			panic(err)
		}
		m[string(enc)] = c
	}
	return m
})

func refCount(t testing.TB, enc, s string) int {
	t.Helper()
	n, err := reference()[enc].Count(s)
	if err != nil {
		t.Fatalf("reference Count: %v", err)
	}
	return n
}

var encodings = []string{EncodingO200k, EncodingCl100k}

// tricky covers each alternative of both split expressions and their edges.
var tricky = []string{
	"",
	"Hello, world! How are you today?",
	"don't I'LL we'Re they've she'd it's ſ 'ſ x'ſ 'sx 'S 'T 'M 'D 'LL 'lL 'Ve",
	"' 's ''s a'b 'x",
	"HelloWorld HTTPServer getHTTPResponse iPhone McDonald's ÉCOLE école",
	"ǅungla ǈ ʰʰAʰ ʰA1 Aʰ1 ʰ ǅ1 ǅa AǅB",
	"a\u0301 \u0301 \u0301\u0301 x\u0301y .\u0301 1\u0301 \u0301A \u0301a",
	"12345678 1.5 ١٢٣٤ ⅷ ² ½x x² 3rd",
	"  leading", "trailing  ", "a  b", "a \n b", "\n\n\n", " \n ", "\r\n\r\n  \r\n", "\t\tx", "x \u00a0y", "\u3000\u3000a",
	"x\n\ny", "end \n", "a\u2028b", "\u0085x",
	"!!! ... --- /// */\n// a ?!\n\n", " ?!", ". / x", "foo/\n/bar", "a, b; c: d", "!\r\n/\r",
	"你好，世界！这是一个测试。", "日本語のテキストです。カタカナ、ひらがな", "한국어 텍스트", "Привет, мир! Как дела?",
	"مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "ภาษาไทย",
	"emoji 😀😃 👍🏽 👨‍👩‍👧 🇫🇷 ✓ ☃", "\U0001F600a \U00010400\U00010428 \U0001D400",
	"func main() {\n\tfmt.Println(\"hi\")\n}\n", "if (x == 1 && y != 2) { return -1; }",
	"aGVsbG8gd29ybGQhIHRoaXMgaXMgYmFzZTY0IGVuY29kZWQgdGV4dA==",
	"<|endoftext|> <|fim_prefix|>",
	"\x00\x01\x1f", "bad \xff\xfe utf8 \xc3 \xe2\x82", "\xed\xa0\x80",
	strings.Repeat("a", 300), strings.Repeat("ab", 200), strings.Repeat(" ", 100) + "x", strings.Repeat("=", 500),
	strings.Repeat("z", 70) + " " + strings.Repeat("Qz", 40),
}

func TestSplitMatchesLibrary(t *testing.T) {
	var inputs []string
	inputs = append(inputs, tricky...)
	for _, f := range []string{"bpe.go", "pretokenize.go", "estimate.go", "parse.go", "sse.go"} {
		if b, err := os.ReadFile(f); err == nil {
			inputs = append(inputs, string(b))
		}
	}
	for _, enc := range encodings {
		b := encodingFor(enc)
		for _, s := range inputs {
			if !libSplitsRight(s) {
				continue
			}
			if got, want := b.count(s), refCount(t, enc, s); got != want {
				t.Errorf("%s: count(%.60q) = %d, reference %d", enc, s, got, want)
			}
		}
	}
}

// TestRandomTextMatchesLibrary compares splits with the regexp interpreter,
// and counts with the module, on random mixes of runes from every class the
// split expressions distinguish.
func TestRandomTextMatchesLibrary(t *testing.T) {
	pool := []rune("aZ ǅʰ中\u0301\u0300٣ⅷ½1 \n\r\t\u00a0\u3000\u2028\u0085'sStTſrRevVmMlLdD.,!/-_#()\"😀\U0001D400")
	rng := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		var sb strings.Builder
		for range 1 + rng.IntN(40) {
			sb.WriteRune(pool[rng.IntN(len(pool))])
		}
		s := sb.String()
		checkSplit(t, s)
		if !libSplitsRight(s) {
			continue
		}
		for _, enc := range encodings {
			if got, want := encodingFor(enc).count(s), refCount(t, enc, s); got != want {
				t.Fatalf("%s: count(%q) = %d, reference %d", enc, s, got, want)
			}
		}
	}
}

func TestVocabularySize(t *testing.T) {
	// Ordinary (non-special) tokens of each encoding.
	for enc, want := range map[string]int{EncodingO200k: 199998, EncodingCl100k: 100256} {
		if got := len(encodingFor(enc).ranks); got != want {
			t.Errorf("%s: %d ranks, want %d", enc, got, want)
		}
	}
}

func FuzzTokenCount(f *testing.F) {
	for _, s := range tricky {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 || !libSplitsRight(s) || hasLongPiece(s) {
			return
		}
		for _, enc := range encodings {
			got, want := encodingFor(enc).count(s), refCount(t, enc, s)
			if utf8.ValidString(s) {
				if got != want {
					t.Fatalf("%s: count(%q) = %d, reference %d", enc, s, got, want)
				}
				continue
			}
			// Runs of invalid bytes are merged in maxPiece chunks like long
			// pieces, and merge differently from the reference inside a
			// run: the count may exceed the reference by about one per
			// chunk boundary (two where a boundary splits an invalid run)
			// plus about one per 256 bytes, and never falls below it (an
			// estimate must not undercharge). Request bodies are JSON, whose
			// strings are valid UTF-8, so this only bounds the worst case.
			if slack := 2*(len(s)/maxPiece+1) + len(s)/256; got < want || got > want+slack {
				t.Fatalf("%s: count(%q) = %d, reference %d (invalid UTF-8: allowed %d..%d)", enc, s, got, want, want, want+slack)
			}
		}
	})
}

func TestDELIsOneToken(t *testing.T) {
	for _, enc := range encodings {
		if got := encodingFor(enc).count("\x7f"); got != 1 {
			t.Errorf("%s: count(DEL) = %d, want 1", enc, got)
		}
	}
}

// hasLongPiece reports whether s has a piece longer than maxPiece, which is
// merged in chunks and may count a token more than the module.
func hasLongPiece(s string) bool {
	for _, enc := range encodings {
		for _, p := range ourPieces(enc, s) {
			if len(p) > maxPiece {
				return true
			}
		}
	}
	return false
}

func TestLongPieceChunked(t *testing.T) {
	// A 64 KiB run of one letter is merged in chunks: bounded time, and
	// here the same count, since chunks end on token boundaries.
	s := strings.Repeat("a", 64<<10)
	for _, enc := range encodings {
		if got, want := encodingFor(enc).count(s), (64<<10)/8; got != want {
			t.Errorf("%s: %d tokens, want %d", enc, got, want)
		}
	}
}
