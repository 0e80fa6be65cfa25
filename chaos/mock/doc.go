// Package mock is Sluice's stand-in for the upstream LLM providers. A Region
// is one provider endpoint, such as one Azure OpenAI resource
// (https://{resource}.openai.azure.com) or one OpenAI-style base URL, and is an
// http.Handler that hosts several deployments. It speaks the real wire
// formats closely enough that the official openai-go SDK parses every answer:
// chat completions, legacy completions and embeddings, streamed or not, with
// Azure's or OpenAI's errors, headers and content-filter annotations. Like
// Azure, it counts prompt tokens with o200k_base, charges each request on
// arrival (prompt tokens plus the requested maximum output) against fixed,
// epoch-aligned RPM and TPM windows and answers 429 with retry-after headers
// when a window is full. Faults (5xx, resets, cut streams, stalls, 429
// storms, a region going down) can be configured up front or switched at
// run time through /mock/faults, and the region keeps its own statistics
// (/mock/stats) so tests can check the gateway's quota adherence and
// accounting against the provider's view. Randomness comes from one seeded
// source, time from an injectable clock, and a Region owns no goroutines.
//
// Endpoints of a Region:
//
//	Azure dialect (auth: api-key header or Authorization: Bearer)
//	  POST /openai/deployments/{deployment}/chat/completions?api-version=...
//	  POST /openai/deployments/{deployment}/completions?api-version=...
//	  POST /openai/deployments/{deployment}/embeddings?api-version=...
//	  POST /openai/v1/{chat/completions,completions,embeddings}  (model = deployment)
//	  GET  /openai/v1/models[/{id}]
//	OpenAI dialect (auth: Authorization: Bearer)
//	  POST /v1/chat/completions, /v1/completions, /v1/embeddings  (model = deployment)
//	  GET  /v1/models, /v1/models/{id}
//	Control (no auth)
//	  GET /mock/faults, POST /mock/faults (FaultRule), DELETE /mock/faults
//	  GET /mock/stats, POST /mock/reset
package mock
