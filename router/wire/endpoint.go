package wire

// Endpoint is one of the OpenAI operations Sluice serves.
type Endpoint uint8

// The endpoints are numbered from 0, so that they index arrays ([3]T).
const (
	EndpointChat        Endpoint = iota // POST /chat/completions
	EndpointCompletions                 // POST /completions (legacy text completions)
	EndpointEmbeddings                  // POST /embeddings
)

// String returns a short name fit for logs and metric labels.
func (e Endpoint) String() string {
	switch e {
	case EndpointChat:
		return "chat"
	case EndpointCompletions:
		return "completions"
	case EndpointEmbeddings:
		return "embeddings"
	}
	return "unknown"
}

// Path returns the endpoint's path below the API root: "/v1" for OpenAI and
// vLLM, "/openai/deployments/{deployment}" for Azure.
func (e Endpoint) Path() string {
	switch e {
	case EndpointChat:
		return "/chat/completions"
	case EndpointCompletions:
		return "/completions"
	case EndpointEmbeddings:
		return "/embeddings"
	}
	return ""
}

// Valid reports whether e is one of the defined endpoints.
func (e Endpoint) Valid() bool { return e <= EndpointEmbeddings }

// Streams reports whether the endpoint can answer with a stream; embeddings
// cannot, so their bodies' stream fields are not interpreted.
func (e Endpoint) Streams() bool { return e == EndpointChat || e == EndpointCompletions }
