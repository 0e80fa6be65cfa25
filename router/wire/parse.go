package wire

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// Request is what Sluice needs from a request body; every other field passes
// through untouched. It holds no reference to the body: Model is a copy, and
// what the Estimator needs is kept as byte offsets.
type Request struct {
	Model        string // as the client sent it; "" if absent (allowed with ModelOptional)
	Stream       bool
	IncludeUsage bool  // stream_options.include_usage as the client sent it
	MaxTokens    int64 // max_completion_tokens if present, else max_tokens, else 0
	HasMaxTokens bool
	// Choices is how many completions the request asks for: the larger of n
	// and best_of, 1 when neither is set. Azure's arrival estimate charges
	// MaxTokens for each.
	Choices int64

	ep        Endpoint
	parsed    bool // made by Parse
	size      int  // len(body), to detect a Request used with another body
	payload   span // messages, prompt or input
	tools     span // chat: tools
	functions span // chat: functions (deprecated form of tools)
}

// span locates a JSON value in the body.
type span struct{ off, n int }

func (s span) of(body string) string { return body[s.off : s.off+s.n] }

// ParseOptions adjusts Parse. The zero value validates as OpenAI does.
type ParseOptions struct {
	// ModelOptional accepts a body whose model is absent, null or empty:
	// Azure routes by the deployment named in the path and ignores it.
	ModelOptional bool
}

// Parse validates body as a request to ep and extracts what Sluice needs;
// opts, at most one, adjusts it (ParseOptions{ModelOptional: true} for
// Azure). Errors are *Error, answered 400, except ErrUnknownEndpoint (the
// caller's bug). Besides types and required fields, it rejects bodies that
// repeat a field it reads (model, stream, max_tokens, messages...): the
// gateway reads one occurrence and the upstream's parser may take another,
// so a duplicate could route, budget or stream differently from what the
// upstream does.
func Parse(ep Endpoint, body []byte, opts ...ParseOptions) (Request, error) {
	var o ParseOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	return o.parse(ep, body)
}

// Fields Parse interprets, as bits for duplicate detection.
const (
	fModel uint16 = 1 << iota
	fStream
	fStreamOptions
	fMaxTokens
	fMaxCompletionTokens
	fN
	fBestOf
	fMessages
	fPrompt
	fInput
	fTools
	fFunctions
)

// fieldOf returns the bit of a top-level key that ep interprets, or 0.
func fieldOf(ep Endpoint, key string) uint16 {
	var f uint16
	switch key {
	case "model":
		return fModel
	case "stream":
		f = fStream
	case "stream_options":
		f = fStreamOptions
	case "max_tokens":
		f = fMaxTokens
	case "n":
		f = fN
	case "max_completion_tokens":
		f = fMaxCompletionTokens
	case "messages":
		f = fMessages
	case "tools":
		f = fTools
	case "functions":
		f = fFunctions
	case "best_of":
		f = fBestOf
	case "prompt":
		f = fPrompt
	case "input":
		f = fInput
	}
	const (
		streaming   = fStream | fStreamOptions | fMaxTokens | fN
		chat        = streaming | fMaxCompletionTokens | fMessages | fTools | fFunctions
		completions = streaming | fBestOf | fPrompt
	)
	switch ep {
	case EndpointChat:
		return f & chat
	case EndpointCompletions:
		return f & completions
	case EndpointEmbeddings:
		return f & fInput
	}
	return 0
}

func (o ParseOptions) parse(ep Endpoint, body []byte) (Request, error) {
	if !ep.Valid() {
		return Request{}, ErrUnknownEndpoint
	}
	if !depthOK(body, maxDepth) {
		return Request{}, &Error{Code: codeValue,
			Message: "The JSON body nests arrays or objects more than " + strconv.Itoa(maxDepth) + " levels deep."}
	}
	if !gjson.ValidBytes(body) {
		return Request{}, &Error{Message: msgBadJSON}
	}
	s := view(body)
	root := rootValue(s)
	if !root.isObject() {
		return Request{}, &Error{Code: codeType, Message: "The request body must be a JSON object, but got " + root.kind() + "."}
	}
	p := parser{s: s, req: Request{ep: ep, parsed: true, size: len(body), Choices: 1}, opts: o}
	members(s, root, p.field)
	if p.err != nil {
		return Request{}, p.err
	}
	return p.finish()
}

type parser struct {
	s            string // the body
	req          Request
	opts         ParseOptions
	seen         uint16
	err          *Error
	maxTokens    int64
	maxCompl     int64
	streamOption bool
}

// field handles one top-level member; it returns false to stop at an error.
func (p *parser) field(rawKey string, v value) bool {
	f := fieldOf(p.req.ep, rawKey)
	if f == 0 && strings.IndexByte(rawKey, '\\') >= 0 {
		f = fieldOf(p.req.ep, keyText(rawKey)) // "mod\u0065l" is model too
	}
	if f == 0 {
		return true
	}
	if p.seen&f != 0 {
		key := keyText(rawKey)
		p.err = &Error{Param: key, Code: codeDuplicate,
			Message: "The JSON body has more than one '" + key + "' field."}
		return false
	}
	p.seen |= f
	switch f {
	case fModel:
		switch {
		case v.isString():
			var buf []byte
			m := v.text(&buf)
			if m == "" && !p.opts.ModelOptional {
				p.err = &Error{Param: "model", Code: codeEmptyStr,
					Message: "Invalid 'model': empty string. Expected a string with minimum length 1, but got an empty string instead."}
			}
			p.req.Model = strings.Clone(m)
		case v.isNull():
			p.seen &^= fModel // null is absent
		default:
			p.err = errType("model", "a string", v.kind())
		}
	case fStream:
		switch b, ok := v.bool(); {
		case ok:
			p.req.Stream = b
		case !v.isNull():
			p.err = errType("stream", "a boolean", v.kind())
		}
	case fStreamOptions:
		p.streamOptions(v)
	case fMaxTokens:
		p.maxTokens = p.integer("max_tokens", v, 0)
	case fMaxCompletionTokens:
		p.maxCompl = p.integer("max_completion_tokens", v, 0)
	case fN:
		p.req.Choices = max(p.req.Choices, p.integer("n", v, 1))
	case fBestOf:
		p.req.Choices = max(p.req.Choices, p.integer("best_of", v, 1))
	case fMessages:
		p.messages(v)
	case fPrompt, fInput:
		param := "prompt"
		if f == fInput {
			param = "input"
		}
		switch {
		case v.isString() || v.isArray():
			p.req.payload = v.span()
		case v.isNull():
			p.seen &^= f
		default:
			p.err = errType(param, "a string or an array", v.kind())
		}
	case fTools:
		if v.isArray() {
			p.req.tools = v.span()
		}
	case fFunctions:
		if v.isArray() {
			p.req.functions = v.span()
		}
	}
	return p.err == nil
}

// integer validates an optional integer field with a minimum. Null means
// absent and gives -1, which callers treat as absent.
func (p *parser) integer(param string, v value, min int64) int64 {
	if v.isNull() {
		return -1
	}
	n, ok, overflow := integer(v.raw)
	switch {
	case !ok:
		p.err = errType(param, "an integer", v.kind())
	case overflow && v.raw[0] == '-', !overflow && n < min:
		p.err = errBelow(param, min, v.raw)
	case overflow:
		p.err = errAbove(param)
	}
	return n
}

func (p *parser) streamOptions(v value) {
	switch {
	case v.isNull():
		return
	case !v.isObject():
		p.err = errType("stream_options", "an object", v.kind())
		return
	}
	p.streamOption = true
	members(p.s, v, func(k string, v value) bool {
		if !keyIs(k, "include_usage") {
			return true
		}
		// The last occurrence wins, as in most JSON parsers.
		switch b, ok := v.bool(); {
		case ok:
			p.req.IncludeUsage = b
		case v.isNull():
			p.req.IncludeUsage = false
		default:
			p.err = errType("stream_options.include_usage", "a boolean", v.kind())
		}
		return p.err == nil
	})
}

func (p *parser) messages(v value) {
	switch {
	case v.isNull():
		p.seen &^= fMessages
		return
	case !v.isArray():
		p.err = errType("messages", "an array", v.kind())
		return
	}
	i := 0
	elements(p.s, v, func(m value) bool {
		if !m.isObject() {
			p.err = errType("messages["+strconv.Itoa(i)+"]", "an object", m.kind())
			return false
		}
		var role value
		members(p.s, m, func(k string, v value) bool {
			if keyIs(k, "role") {
				role = v
				return false
			}
			return true
		})
		switch {
		case !role.exists() || role.isNull():
			p.err = errMissing("messages[" + strconv.Itoa(i) + "].role")
		case !role.isString():
			p.err = errType("messages["+strconv.Itoa(i)+"].role", "a string", role.kind())
		}
		i++
		return p.err == nil
	})
	if p.err == nil && i == 0 {
		p.err = &Error{Param: "messages", Code: codeEmpty,
			Message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."}
	}
	p.req.payload = v.span()
}

// finish checks what needs the whole body and settles MaxTokens.
func (p *parser) finish() (Request, error) {
	r := &p.req
	if p.seen&fModel == 0 && !p.opts.ModelOptional {
		return Request{}, errMissing("model")
	}
	var need uint16
	param := ""
	switch r.ep {
	case EndpointChat:
		need, param = fMessages, "messages"
	case EndpointCompletions:
		need, param = fPrompt, "prompt"
	case EndpointEmbeddings:
		need, param = fInput, "input"
	}
	if p.seen&need == 0 {
		return Request{}, errMissing(param)
	}
	if p.streamOption && !r.Stream {
		return Request{}, &Error{Param: "stream_options", Code: codeValue,
			Message: "The 'stream_options' parameter is only allowed when 'stream' is enabled."}
	}
	switch {
	case p.seen&fMaxCompletionTokens != 0 && p.maxCompl >= 0:
		r.MaxTokens, r.HasMaxTokens = p.maxCompl, true
	case p.seen&fMaxTokens != 0 && p.maxTokens >= 0:
		r.MaxTokens, r.HasMaxTokens = p.maxTokens, true
	}
	return p.req, nil
}
