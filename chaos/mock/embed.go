package mock

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
)

// checkDimensions rejects a dimensions value the deployment cannot serve.
func checkDimensions(p *parsedRequest, full int) error {
	if p.dimensions > full {
		return &requestError{param: "dimensions", code: "integer_above_max_value", message: fmt.Sprintf(
			"Invalid 'dimensions': integer above maximum value. Expected a value <= %d, but got %d instead.", full, p.dimensions)}
	}
	return nil
}

// answerEmbeddings answers an embeddings request.
func (c *call) answerEmbeddings(p *parsedRequest) {
	cfg := c.dep.cfg
	dims := cfg.EmbeddingDims
	if p.dimensions > 0 {
		dims = p.dimensions
	}
	resp := embeddingList{
		Object: "list",
		Data:   make([]embeddingItem, len(p.inputs)),
		Model:  cfg.Model,
		Usage:  embeddingUsage{PromptTokens: p.promptTokens, TotalTokens: p.promptTokens},
	}
	for i, key := range p.inputs {
		vec := EmbeddingVector(cfg.Model, key, cfg.EmbeddingDims, dims)
		var v any = vec
		if p.base64 {
			v = encodeFloats(vec)
		}
		resp.Data[i] = embeddingItem{Object: "embedding", Index: i, Embedding: v}
	}
	u := c.delivered(p.promptTokens, 0)
	if err := c.writeJSON(http.StatusOK, resp); err != nil {
		c.undelivered(u)
	}
}

// EmbeddingVector is the unit vector the mock returns for one input item of
// a model: full values drawn from a source seeded by a hash of model and
// key, truncated to dims and normalised (as OpenAI does for "dimensions").
// The key is "s:" + text for a string input, or "t:" + the token ids each
// followed by a comma (e.g. "t:1,2,3,") for a token array.
func EmbeddingVector(model, key string, full, dims int) []float32 {
	sum := sha256.Sum256([]byte(model + "\x00" + key))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:16])))
	dims = min(dims, full)
	raw := make([]float64, dims)
	var norm float64
	for i := range full {
		v := rng.NormFloat64()
		if i < dims {
			raw[i] = v
			norm += v * v
		}
	}
	norm = math.Sqrt(norm)
	out := make([]float32, dims)
	for i, v := range raw {
		out[i] = float32(v / norm)
	}
	return out
}

// encodeFloats is the base64 of the little-endian float32 values.
func encodeFloats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}
