// Package wire owns the bytes of Sluice's request path: it reads what
// routing and admission need from an OpenAI-style request body (Parse),
// makes the few edits an upstream needs (Rewrite), counts the prompt tokens
// Azure will charge on arrival (Estimator), and reads the upstream's
// Server-Sent Events back (EventReader, ChunkUsage). Everything else in a
// body passes through byte for byte.
//
// It is shaped by the hot path. Bodies are never decoded into Go values or
// re-encoded: gjson validates them, a small scanner (jsonscan.go) walks them
// without allocating, Request keeps byte offsets instead of copies, and
// Rewrite splices its changes into one new buffer. Token counts must be
// the model's own (a bytes/4 guess is off by 2x on code or CJK) yet cost
// microseconds: the vocabularies come from the tokenizer module, but
// splitting and byte-pair merging are done here, by code checked piece for
// piece against a regexp interpreter and count for count against the
// module, about ten times faster and without allocations; counts of
// recurring texts are cached, and work per request is bounded so a huge or
// hostile prompt is estimated rather than burning CPU. The stream reader
// hands out slices of its buffer and copies only events with several data
// lines.
//
// Errors a client caused are *Error, carrying OpenAI's param and code for a
// 400 answer; errors the caller caused are sentinels.
package wire
