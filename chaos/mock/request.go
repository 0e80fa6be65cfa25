package mock

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// maxChoices bounds n, like OpenAI.
const maxChoices = 128

// requestError is a 400 caused by the request body. It names the offending
// parameter like OpenAI does.
type requestError struct {
	param   string
	code    string
	message string
}

func (e *requestError) Error() string {
	if e.param == "" {
		return e.message
	}
	return e.param + ": " + e.message
}

// parsedRequest is what the mock needs from a request body.
type parsedRequest struct {
	op           Kind
	model        string
	promptTokens int
	// maxTokens is max_completion_tokens, else max_tokens; 0 when absent.
	maxTokens    int
	n            int
	prompts      int // completions: number of prompts (each gets n choices)
	stream       bool
	includeUsage bool

	// Embeddings only.
	inputs     []string // one hash key per input item
	base64     bool
	dimensions int
}

// choices is the number of generated answers.
func (p *parsedRequest) choices() int {
	if p.op == KindCompletion {
		return p.n * max(p.prompts, 1)
	}
	return p.n
}

// outputLimit is the output cap of each answer.
func (p *parsedRequest) outputLimit(defaultMax int) int {
	if p.maxTokens > 0 {
		return p.maxTokens
	}
	return defaultMax
}

// cost is the arrival charge: prompt tokens plus the output cap of every
// answer (embeddings: prompt tokens only).
func (p *parsedRequest) cost(defaultMax int) int64 {
	if p.op == KindEmbedding {
		return int64(p.promptTokens)
	}
	return int64(p.promptTokens) + int64(p.outputLimit(defaultMax))*int64(p.choices())
}

// PromptTokens counts the prompt tokens of a request body with o200k_base,
// exactly as the mock charges them. For chat it is
// 3 + sum over messages of (3 + tokens(role) + tokens(content) +
// (tokens(name)+1 if name is set)), where array content counts its text
// parts; for completions, the tokens of the prompt (string, strings or token
// arrays); for embeddings, the tokens of the input (string, strings, or
// token arrays counted by length).
func PromptTokens(kind Kind, body []byte) (int, error) {
	p, err := parseRequest(kind, body)
	if err != nil {
		return 0, fmt.Errorf("prompt tokens: %w", err)
	}
	return p.promptTokens, nil
}

// Cost is the tokens the mock charges on arrival for a request body: prompt
// tokens plus (max_completion_tokens, else max_tokens, else defaultMaxTokens)
// times the number of answers (n, times the number of prompts for
// completions). Embeddings cost their prompt tokens.
func Cost(kind Kind, body []byte, defaultMaxTokens int) (int64, error) {
	p, err := parseRequest(kind, body)
	if err != nil {
		return 0, fmt.Errorf("cost: %w", err)
	}
	return p.cost(defaultMaxTokens), nil
}

// parseRequest validates a body for operation op.
func parseRequest(op Kind, body []byte) (*parsedRequest, error) {
	if !gjson.ValidBytes(body) {
		return nil, &requestError{code: "invalid_json", message: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"}
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, typeError("", root, "an object")
	}
	p := &parsedRequest{op: op, n: 1}
	model := root.Get("model")
	if model.Exists() && model.Type != gjson.Null {
		if model.Type != gjson.String {
			return nil, typeError("model", model, "a string")
		}
		p.model = model.String()
	}
	var err error
	switch op {
	case KindChat:
		err = p.parseChat(root)
	case KindCompletion:
		err = p.parseCompletion(root)
	case KindEmbedding:
		err = p.parseEmbedding(root)
	default:
		return nil, fmt.Errorf("unknown kind %q", op)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *parsedRequest) parseChat(root gjson.Result) error {
	msgs := root.Get("messages")
	if !msgs.Exists() {
		return missing("messages")
	}
	if !msgs.IsArray() {
		return typeError("messages", msgs, "an array of objects")
	}
	list := msgs.Array()
	if len(list) == 0 {
		return &requestError{param: "messages", code: "empty_array", message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."}
	}
	total := 3
	for i, m := range list {
		n, err := messageTokens(fmt.Sprintf("messages[%d]", i), m)
		if err != nil {
			return err
		}
		total += n
	}
	p.promptTokens = total
	if err := p.parseMaxTokens(root, "max_completion_tokens"); err != nil {
		return err
	}
	if p.maxTokens == 0 {
		if err := p.parseMaxTokens(root, "max_tokens"); err != nil {
			return err
		}
	} else if _, err := optionalInt(root, "max_tokens", 1); err != nil {
		return err
	}
	return p.parseCommon(root)
}

func messageTokens(path string, m gjson.Result) (int, error) {
	if !m.IsObject() {
		return 0, typeError(path, m, "an object")
	}
	role := m.Get("role")
	if !role.Exists() {
		return 0, missing(path + ".role")
	}
	if role.Type != gjson.String {
		return 0, typeError(path+".role", role, "a string")
	}
	switch role.String() {
	case "system", "developer", "user", "assistant", "tool", "function":
	default:
		return 0, &requestError{param: path + ".role", code: "invalid_value", message: fmt.Sprintf("Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", role.String())}
	}
	total := 3
	n, err := countTokens(role.String())
	if err != nil {
		return 0, err
	}
	total += n
	content := m.Get("content")
	switch {
	case !content.Exists() || content.Type == gjson.Null:
	case content.Type == gjson.String:
		n, err := countTokens(content.String())
		if err != nil {
			return 0, err
		}
		total += n
	case content.IsArray():
		for j, part := range content.Array() {
			ppath := fmt.Sprintf("%s.content[%d]", path, j)
			if !part.IsObject() {
				return 0, typeError(ppath, part, "an object")
			}
			text := part.Get("text")
			if !text.Exists() {
				continue
			}
			if text.Type != gjson.String {
				return 0, typeError(ppath+".text", text, "a string")
			}
			n, err := countTokens(text.String())
			if err != nil {
				return 0, err
			}
			total += n
		}
	default:
		return 0, typeError(path+".content", content, "a string or an array of content parts")
	}
	name := m.Get("name")
	if name.Exists() && name.Type != gjson.Null {
		if name.Type != gjson.String {
			return 0, typeError(path+".name", name, "a string")
		}
		n, err := countTokens(name.String())
		if err != nil {
			return 0, err
		}
		total += n + 1
	}
	return total, nil
}

func (p *parsedRequest) parseCompletion(root gjson.Result) error {
	prompt := root.Get("prompt")
	p.prompts = 1
	switch {
	case !prompt.Exists() || prompt.Type == gjson.Null:
	case prompt.Type == gjson.String:
		n, err := countTokens(prompt.String())
		if err != nil {
			return err
		}
		p.promptTokens = n
	case prompt.IsArray():
		n, items, err := countInputs("prompt", prompt)
		if err != nil {
			return err
		}
		p.promptTokens, p.prompts = n, max(len(items), 1)
	default:
		return typeError("prompt", prompt, "a string, an array of strings or an array of token arrays")
	}
	if err := p.parseMaxTokens(root, "max_tokens"); err != nil {
		return err
	}
	return p.parseCommon(root)
}

// parseCommon reads n, stream and stream_options.
func (p *parsedRequest) parseCommon(root gjson.Result) error {
	n, err := optionalInt(root, "n", 1)
	if err != nil {
		return err
	}
	if n > maxChoices {
		return &requestError{param: "n", code: "integer_above_max_value", message: fmt.Sprintf("Invalid 'n': integer above maximum value. Expected a value <= %d, but got %d instead.", maxChoices, n)}
	}
	if n > 0 {
		p.n = n
	}
	stream := root.Get("stream")
	if stream.Exists() && stream.Type != gjson.Null {
		if stream.Type != gjson.True && stream.Type != gjson.False {
			return typeError("stream", stream, "a boolean")
		}
		p.stream = stream.Bool()
	}
	opts := root.Get("stream_options")
	if opts.Exists() && opts.Type != gjson.Null {
		if !opts.IsObject() {
			return typeError("stream_options", opts, "an object")
		}
		if !p.stream {
			return &requestError{param: "stream_options", code: "invalid_value", message: "The 'stream_options' parameter is only allowed when 'stream' is enabled."}
		}
		iu := opts.Get("include_usage")
		if iu.Exists() && iu.Type != gjson.Null {
			if iu.Type != gjson.True && iu.Type != gjson.False {
				return typeError("stream_options.include_usage", iu, "a boolean")
			}
			p.includeUsage = iu.Bool()
		}
	}
	return nil
}

func (p *parsedRequest) parseMaxTokens(root gjson.Result, field string) error {
	v, err := optionalInt(root, field, 1)
	if err != nil {
		return err
	}
	p.maxTokens = v
	return nil
}

func (p *parsedRequest) parseEmbedding(root gjson.Result) error {
	input := root.Get("input")
	switch {
	case !input.Exists():
		return missing("input")
	case input.Type == gjson.String:
		if input.String() == "" {
			return &requestError{param: "input", code: "invalid_value", message: "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."}
		}
		n, err := countTokens(input.String())
		if err != nil {
			return err
		}
		p.promptTokens, p.inputs = n, []string{"s:" + input.String()}
	case input.IsArray():
		n, items, err := countInputs("input", input)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return &requestError{param: "input", code: "empty_array", message: "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead."}
		}
		p.promptTokens, p.inputs = n, items
	default:
		return typeError("input", input, "a string, an array of strings or an array of token arrays")
	}
	format := root.Get("encoding_format")
	if format.Exists() && format.Type != gjson.Null {
		if format.Type != gjson.String {
			return typeError("encoding_format", format, "a string")
		}
		switch format.String() {
		case "float":
		case "base64":
			p.base64 = true
		default:
			return &requestError{param: "encoding_format", code: "invalid_value", message: fmt.Sprintf("Invalid value: '%s'. Supported values are: 'float' and 'base64'.", format.String())}
		}
	}
	dims, err := optionalInt(root, "dimensions", 1)
	if err != nil {
		return err
	}
	p.dimensions = dims
	return nil
}

// countInputs counts an array that is either strings, token ids (one
// input), or token arrays. It returns the token count and one hash key per
// input item.
func countInputs(field string, arr gjson.Result) (int, []string, error) {
	list := arr.Array()
	if len(list) == 0 {
		return 0, nil, nil
	}
	if list[0].Type == gjson.Number {
		key, err := tokenArrayKey(field, arr)
		if err != nil {
			return 0, nil, err
		}
		return len(list), []string{key}, nil
	}
	total := 0
	keys := make([]string, 0, len(list))
	for i, item := range list {
		path := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case item.Type == gjson.String:
			n, err := countTokens(item.String())
			if err != nil {
				return 0, nil, err
			}
			total += n
			keys = append(keys, "s:"+item.String())
		case item.IsArray():
			key, err := tokenArrayKey(path, item)
			if err != nil {
				return 0, nil, err
			}
			total += len(item.Array())
			keys = append(keys, key)
		default:
			return 0, nil, typeError(path, item, "a string or an array of integers")
		}
	}
	return total, keys, nil
}

// tokenArrayKey checks an array of token ids and returns its hash key.
func tokenArrayKey(path string, arr gjson.Result) (string, error) {
	var b strings.Builder
	b.WriteString("t:")
	for i, t := range arr.Array() {
		if !isInteger(t) || strings.HasPrefix(t.Raw, "-") {
			return "", typeError(fmt.Sprintf("%s[%d]", path, i), t, "a non-negative integer")
		}
		b.WriteString(t.Raw)
		b.WriteByte(',')
	}
	return b.String(), nil
}

// optionalInt reads an optional integer field that must be >= minimum.
// Absent or null gives 0.
func optionalInt(root gjson.Result, field string, minimum int) (int, error) {
	v := root.Get(field)
	if !v.Exists() || v.Type == gjson.Null {
		return 0, nil
	}
	if !isInteger(v) {
		return 0, typeError(field, v, "an integer")
	}
	n, err := strconv.Atoi(v.Raw)
	if err != nil {
		return 0, &requestError{param: field, code: "invalid_value", message: fmt.Sprintf("Invalid '%s': integer out of range.", field)}
	}
	if n < minimum {
		return 0, &requestError{param: field, code: "integer_below_min_value", message: fmt.Sprintf("Invalid '%s': integer below minimum value. Expected a value >= %d, but got %d instead.", field, minimum, n)}
	}
	return n, nil
}

func isInteger(v gjson.Result) bool {
	return v.Type == gjson.Number && !strings.ContainsAny(v.Raw, ".eE")
}

func missing(param string) error {
	return &requestError{param: param, code: "missing_required_parameter", message: fmt.Sprintf("Missing required parameter: '%s'.", param)}
}

func typeError(param string, got gjson.Result, want string) error {
	name := param
	if name == "" {
		name = "body"
	}
	return &requestError{param: param, code: "invalid_type", message: fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", name, want, jsonTypeName(got))}
}

func jsonTypeName(v gjson.Result) string {
	switch {
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.True, v.Type == gjson.False:
		return "a boolean"
	case v.Type == gjson.Null:
		return "null"
	case v.Type == gjson.Number && isInteger(v):
		return "an integer"
	case v.Type == gjson.Number:
		return "a decimal number"
	case v.IsArray():
		return "an array"
	case v.IsObject():
		return "an object"
	default:
		return "an unknown type"
	}
}

// asRequestError reports whether err is a request (400) error.
func asRequestError(err error) (*requestError, bool) {
	var re *requestError
	ok := errors.As(err, &re)
	return re, ok
}
