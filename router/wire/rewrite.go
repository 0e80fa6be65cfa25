package wire

// Rewrite returns body with only what must change for the upstream:
//
//   - setModel: every top-level "model" gets the value model (OpenAI and vLLM
//     upstreams, where the body names the model); it is added when absent.
//     Without it the body's model is left as is (Azure: the path names the
//     deployment).
//   - forceUsage: "stream_options" gets "include_usage":true, keeping its
//     other fields; it is added when absent, and replaced when it is not an
//     object. Set it only for streaming requests: OpenAI rejects
//     stream_options without stream.
//
// Everything else - unknown fields, their order, whitespace, number
// spelling - stays byte-identical: Rewrite splices the changes into a copy
// and never re-encodes the body. body is not modified; when nothing changes,
// body itself is returned. Rewrite assumes body passed Parse; it returns
// ErrNotObject when body is not a JSON object, and on other malformed input
// returns some output or an error but never panics. Repeated keys are all
// rewritten, so the upstream sees the same value whichever occurrence it reads.
func Rewrite(body []byte, model string, setModel, forceUsage bool) ([]byte, error) {
	if !setModel && !forceUsage {
		return body, nil
	}
	s := view(body)
	root := rootValue(s)
	if !root.isObject() {
		return nil, ErrNotObject
	}
	var (
		quoted  [96]byte
		modelJS = appendJSONString(quoted[:0], model)
		ed      edits
		haveM   bool
		haveSO  bool
	)
	open := root.off // the root's '{'
	ok := members(s, root, func(k string, v value) bool {
		switch {
		case setModel && keyIs(k, "model"):
			haveM = true
			ed.replace(v.off, len(v.raw), textModel)
		case forceUsage && keyIs(k, "stream_options"):
			haveSO = true
			if !v.isObject() {
				ed.replace(v.off, len(v.raw), textUsageObject)
				break
			}
			found := false
			members(s, v, func(k string, v value) bool {
				if keyIs(k, "include_usage") {
					found = true
					ed.replace(v.off, len(v.raw), textTrue)
				}
				return true
			})
			if !found {
				ed.insertMember(s, v.off, textIncludeUsage)
			}
		}
		return true
	})
	if !ok {
		return nil, ErrNotObject
	}
	// Members to add go right after the root's '{', before any existing one.
	addModel, addUsage := setModel && !haveM, forceUsage && !haveSO
	if !addModel && !addUsage && ed.noop(s, modelJS) {
		return body, nil
	}
	if ed.overflow {
		return nil, ErrTooManyEdits
	}
	if !ed.ordered(open, len(s)) {
		return nil, ErrNotObject
	}

	const (
		modelKey = `"model":`
		usageKV  = `"stream_options":` + litUsageObject
	)
	size := len(s) + ed.delta(modelJS) + len(modelKey) + len(modelJS) + len(usageKV) + 2
	out := make([]byte, 0, size)
	out = append(out, s[:open+1]...)
	if addModel {
		out = append(out, modelKey...)
		out = append(out, modelJS...)
	}
	if addUsage {
		if addModel {
			out = append(out, ',')
		}
		out = append(out, usageKV...)
	}
	if (addModel || addUsage) && !emptyObject(s, open) {
		out = append(out, ',')
	}
	return ed.apply(out, s, open+1, modelJS), nil
}

// What an edit writes. Edits hold no pointers, so they stay on the stack.
const (
	textModel        = iota // the JSON-quoted model
	textTrue                // true
	textUsageObject         // {"include_usage":true}
	textIncludeUsage        // "include_usage":true
)

const litUsageObject = `{"include_usage":true}`

func (x edit) bytes(model []byte) []byte {
	switch x.text {
	case textModel:
		return model
	case textTrue:
		return []byte("true")
	case textUsageObject:
		return []byte(litUsageObject)
	}
	return []byte(`"include_usage":true`)
}

// emptyObject reports whether the object whose '{' is at s[open] has no members.
func emptyObject(s string, open int) bool {
	for i := open + 1; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '}':
			return true
		}
		return false
	}
	return false
}

// edit replaces s[at:at+n] with text; n == 0 inserts. insert edits that
// add a member into a non-empty object carry a trailing comma.
type edit struct {
	at, n int
	text  uint8
	comma bool
}

// edits collects the few edits a body needs, in a fixed array so that
// Rewrite does not allocate for them.
type edits struct {
	list     [8]edit
	n        int
	overflow bool // more edits than fit: only bodies repeating keys many times
}

func (e *edits) add(x edit) {
	if e.n == len(e.list) {
		e.overflow = true
		return
	}
	e.list[e.n] = x
	e.n++
}

func (e *edits) replace(at, n int, text uint8) { e.add(edit{at: at, n: n, text: text}) }

// insertMember adds member as the first member of the object at s[open].
func (e *edits) insertMember(s string, open int, member uint8) {
	e.add(edit{at: open + 1, text: member, comma: !emptyObject(s, open)})
}

// noop reports whether every edit replaces text with the same text.
func (e *edits) noop(s string, model []byte) bool {
	for _, x := range e.list[:e.n] {
		if x.n == 0 || x.at+x.n > len(s) || s[x.at:x.at+x.n] != string(x.bytes(model)) {
			return false
		}
	}
	return true
}

// ordered reports whether the edits lie after from, within the body, in
// order and without overlap, as they do for any JSON object gjson walked.
func (e *edits) ordered(from, end int) bool {
	pos := from + 1
	for _, x := range e.list[:e.n] {
		if x.at < pos || x.n < 0 || x.at+x.n > end {
			return false
		}
		pos = x.at + x.n
	}
	return true
}

func (e *edits) delta(model []byte) int {
	d := 0
	for _, x := range e.list[:e.n] {
		d += len(x.bytes(model)) - x.n
		if x.comma {
			d++
		}
	}
	return d
}

// apply appends s[from:] to out with the edits made.
func (e *edits) apply(out []byte, s string, from int, model []byte) []byte {
	pos := from
	for _, x := range e.list[:e.n] {
		out = append(out, s[pos:x.at]...)
		out = append(out, x.bytes(model)...)
		if x.comma {
			out = append(out, ',')
		}
		pos = x.at + x.n
	}
	return append(out, s[pos:]...)
}
