package mock

import "encoding/json"

// JSON shapes of the answers, following OpenAI's API reference plus Azure's
// content-filter annotations.

// null is an explicit JSON null for json.RawMessage fields.
func null() json.RawMessage { return json.RawMessage("null") }

// jsonString is s as a JSON string for json.RawMessage fields.
func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

type chatCompletion struct {
	ID                  string               `json:"id"`
	Object              string               `json:"object"`
	Created             int64                `json:"created"`
	Model               string               `json:"model"`
	Choices             []chatChoice         `json:"choices"`
	Usage               *chatUsage           `json:"usage"`
	SystemFingerprint   string               `json:"system_fingerprint"`
	ServiceTier         string               `json:"service_tier,omitempty"`
	PromptFilterResults []promptFilterResult `json:"prompt_filter_results,omitempty"`
}

type chatChoice struct {
	Index                int                   `json:"index"`
	Message              chatMessage           `json:"message"`
	Logprobs             json.RawMessage       `json:"logprobs"`
	FinishReason         string                `json:"finish_reason"`
	ContentFilterResults *contentFilterResults `json:"content_filter_results,omitempty"`
}

type chatMessage struct {
	Role        string          `json:"role"`
	Content     string          `json:"content"`
	Refusal     json.RawMessage `json:"refusal"`
	Annotations []struct{}      `json:"annotations"`
}

type chatChunk struct {
	ID                  string               `json:"id"`
	Object              string               `json:"object"`
	Created             int64                `json:"created"`
	Model               string               `json:"model"`
	SystemFingerprint   string               `json:"system_fingerprint,omitempty"`
	ServiceTier         string               `json:"service_tier,omitempty"`
	Choices             []chunkChoice        `json:"choices"`
	Usage               any                  `json:"usage,omitempty"` // nil, null() or *chatUsage
	PromptFilterResults []promptFilterResult `json:"prompt_filter_results,omitempty"`
}

type chunkChoice struct {
	Index                int                   `json:"index"`
	Delta                chunkDelta            `json:"delta"`
	Logprobs             json.RawMessage       `json:"logprobs"`
	FinishReason         json.RawMessage       `json:"finish_reason"`
	ContentFilterResults *contentFilterResults `json:"content_filter_results,omitempty"`
}

type chunkDelta struct {
	Role    string          `json:"role,omitempty"`
	Content *string         `json:"content,omitempty"`
	Refusal json.RawMessage `json:"refusal,omitempty"`
}

type textCompletion struct {
	ID                  string               `json:"id"`
	Object              string               `json:"object"`
	Created             int64                `json:"created"`
	Model               string               `json:"model"`
	SystemFingerprint   string               `json:"system_fingerprint,omitempty"`
	Choices             []textChoice         `json:"choices"`
	Usage               any                  `json:"usage,omitempty"` // nil, null() or *chatUsage
	PromptFilterResults []promptFilterResult `json:"prompt_filter_results,omitempty"`
}

type textChoice struct {
	Text                 string                `json:"text"`
	Index                int                   `json:"index"`
	Logprobs             json.RawMessage       `json:"logprobs"`
	FinishReason         json.RawMessage       `json:"finish_reason"`
	ContentFilterResults *contentFilterResults `json:"content_filter_results,omitempty"`
}

type chatUsage struct {
	PromptTokens            int                     `json:"prompt_tokens"`
	CompletionTokens        int                     `json:"completion_tokens"`
	TotalTokens             int                     `json:"total_tokens"`
	PromptTokensDetails     promptTokensDetails     `json:"prompt_tokens_details"`
	CompletionTokensDetails completionTokensDetails `json:"completion_tokens_details"`
}

type promptTokensDetails struct {
	AudioTokens  int `json:"audio_tokens"`
	CachedTokens int `json:"cached_tokens"`
}

type completionTokensDetails struct {
	AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
	AudioTokens              int `json:"audio_tokens"`
	ReasoningTokens          int `json:"reasoning_tokens"`
	RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
}

func newChatUsage(prompt, completion int) *chatUsage {
	return &chatUsage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32 or base64 string
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// Azure content filtering annotations.

type filterSeverity struct {
	Filtered bool   `json:"filtered"`
	Severity string `json:"severity"`
}

type filterDetected struct {
	Filtered bool `json:"filtered"`
	Detected bool `json:"detected"`
}

type contentFilterResults struct {
	Hate                  *filterSeverity `json:"hate,omitempty"`
	Jailbreak             *filterDetected `json:"jailbreak,omitempty"`
	ProtectedMaterialCode *filterDetected `json:"protected_material_code,omitempty"`
	ProtectedMaterialText *filterDetected `json:"protected_material_text,omitempty"`
	SelfHarm              *filterSeverity `json:"self_harm,omitempty"`
	Sexual                *filterSeverity `json:"sexual,omitempty"`
	Violence              *filterSeverity `json:"violence,omitempty"`
}

type promptFilterResult struct {
	PromptIndex          int                  `json:"prompt_index"`
	ContentFilterResults contentFilterResults `json:"content_filter_results"`
}

func safe() *filterSeverity { return &filterSeverity{Severity: "safe"} }

// promptFilters is Azure's annotation of a clean prompt.
func promptFilters(prompts int) []promptFilterResult {
	out := make([]promptFilterResult, max(prompts, 1))
	for i := range out {
		out[i] = promptFilterResult{PromptIndex: i, ContentFilterResults: contentFilterResults{
			Hate: safe(), Jailbreak: &filterDetected{}, SelfHarm: safe(), Sexual: safe(), Violence: safe(),
		}}
	}
	return out
}

// outputFilters is Azure's annotation of a clean answer.
func outputFilters() *contentFilterResults {
	return &contentFilterResults{
		Hate: safe(), ProtectedMaterialCode: &filterDetected{}, ProtectedMaterialText: &filterDetected{},
		SelfHarm: safe(), Sexual: safe(), Violence: safe(),
	}
}

// apiErrorBody is the error envelope of both dialects.
type apiErrorBody struct {
	Error apiErrorDetail `json:"error"`
}

type apiErrorDetail struct {
	Message string  `json:"message"`
	Type    *string `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}
