// Helpers shared by surge.js and usage.js: addresses of the local cluster,
// admin API calls (tenants, keys, usage), request bodies and SSE parsing.
//
// Nothing here logs a key or a token: keys travel from setup() to the VUs
// in the setup data only, and k6 never prints request headers unless run
// with --http-debug=full (do not use it against a real cluster).

import http from 'k6/http';
import { check, fail, sleep } from 'k6';

// list reads a comma-separated environment variable.
function list(name, def) {
  return (__ENV[name] || def).split(',').map((s) => s.trim()).filter((s) => s !== '');
}

// The OpenAI API of every node, used round-robin as a DNS name with three
// A records would be.
export const API_URLS = list('SLUICE_API_URLS', 'http://127.0.0.1:8080,http://127.0.0.1:8081,http://127.0.0.1:8082');
// The admin API of every node; writes go to the first, reads to all.
export const ADMIN_URLS = list('SLUICE_ADMIN_URLS', 'http://127.0.0.1:9080,http://127.0.0.1:9081,http://127.0.0.1:9082');
// The dev-only admin token of deploy/local/run.sh.
const ADMIN_TOKEN = __ENV.SLUICE_ADMIN_TOKEN || 'dev-admin-token-0000';

// envNumber reads a numeric environment variable with a default.
export function envNumber(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') {
    return def;
  }
  const n = Number(v);
  if (!Number.isFinite(n)) {
    throw new Error(`${name}: not a number: ${v}`);
  }
  return n;
}

// envList reads a comma-separated environment variable.
export function envList(name, def) {
  return list(name, def);
}

// runID is a short suffix that keeps the tenants of one run apart from
// those of earlier runs against the same cluster.
export function runID() {
  return Date.now().toString(36) + Math.floor(Math.random() * 1296).toString(36);
}

// Round robin over the API nodes, starting at a different node per VU.
let rr = __VU;
export function nextAPI() {
  rr += 1;
  return API_URLS[rr % API_URLS.length];
}

function adminParams() {
  return {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    tags: { name: 'admin' },
    responseCallback: http.expectedStatuses({ min: 200, max: 299 }),
  };
}

// adminPost posts a JSON body and fails the test (setup) on any status but
// 200/201. The error never includes the response body: a key creation
// answer carries the plaintext key.
function adminPost(path, body) {
  const res = http.post(`${ADMIN_URLS[0]}${path}`, JSON.stringify(body), adminParams());
  if (res.status !== 200 && res.status !== 201) {
    let msg = '';
    try {
      msg = res.json('error.message') || '';
    } catch (e) {
      // not JSON: the status says enough
    }
    fail(`admin POST ${path}: status ${res.status} ${msg}`);
  }
  return res;
}

// createTenant creates a tenant; limits is a state.Limits object
// ({rpm, tpm, max_concurrent, ...}; absent or 0 = unlimited).
export function createTenant(name, cls, limits) {
  const body = { name, plan: 'k6', class: cls || 'interactive' };
  if (limits) {
    body.limits = limits;
  }
  adminPost('/admin/v1/tenants', body);
}

// createKey creates a virtual key of tenant and returns {id, key}. The
// plaintext key is shown once by the API and kept only in setup data.
export function createKey(tenant, id) {
  const res = adminPost('/admin/v1/keys', { id, tenant });
  return { id: res.json('id'), key: res.json('key') };
}

// waitForKeys polls every node's admin API until each knows every key id,
// so the first request to any node is not refused as an unknown key.
export function waitForKeys(ids, timeoutSec) {
  const deadline = Date.now() + (timeoutSec || 10) * 1000;
  for (;;) {
    let missing = 0;
    for (const base of ADMIN_URLS) {
      for (const id of ids) {
        const res = http.get(`${base}/admin/v1/keys/${encodeURIComponent(id)}`,
          Object.assign(adminParams(), { responseCallback: http.expectedStatuses(200, 404) }));
        if (res.status !== 200) {
          missing += 1;
        }
      }
    }
    if (missing === 0) {
      return;
    }
    if (Date.now() > deadline) {
      fail(`${missing} key lookups still failing after ${timeoutSec || 10}s`);
    }
    sleep(0.2);
  }
}

// usageByTenant reads GET /admin/v1/usage?group_by=tenant from one node
// and returns {tenant: {requests, errors, prompt_tokens, completion_tokens}}.
export function usageByTenant(base) {
  const res = http.get(`${base || ADMIN_URLS[0]}/admin/v1/usage?group_by=tenant`, adminParams());
  if (res.status !== 200) {
    return null;
  }
  const out = {};
  for (const row of res.json('rows') || []) {
    out[row.tenant] = row;
  }
  return out;
}

// PROMPTS are user messages of a few sizes (about 10, 60 and 250 tokens).
const WORDS = 'the gateway admits each request against its tenant limits and a deployment budget then relays the answer'.split(' ');
function words(n) {
  const out = [];
  for (let i = 0; i < n; i += 1) {
    out.push(WORDS[i % WORDS.length]);
  }
  return out.join(' ');
}
export const PROMPTS = { small: words(8), medium: words(50), large: words(220) };

// chatBody returns a chat completion request body.
export function chatBody(model, prompt, maxTokens, stream) {
  const b = { model, messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens };
  if (stream) {
    b.stream = true;
  }
  return JSON.stringify(b);
}

// embeddingBody returns an embeddings request body with n inputs.
export function embeddingBody(model, prompt, n) {
  const input = [];
  for (let i = 0; i < n; i += 1) {
    input.push(`${prompt} ${i}`);
  }
  return JSON.stringify({ model, input: n === 1 ? input[0] : input });
}

// parseSSE checks a whole text/event-stream body as k6 reads it: every
// event's data is JSON (a chat.completion.chunk) except the last, which
// must be [DONE]. It returns {ok, chunks, content, reason}.
export function parseSSE(body) {
  const out = { ok: false, chunks: 0, content: 0, reason: '' };
  if (typeof body !== 'string' || body === '') {
    out.reason = 'empty body';
    return out;
  }
  const events = body.replace(/\r\n/g, '\n').split('\n\n').filter((e) => e.trim() !== '');
  if (events.length === 0) {
    out.reason = 'no events';
    return out;
  }
  let done = false;
  for (let i = 0; i < events.length; i += 1) {
    const data = events[i].split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data === '') {
      continue; // a comment or keep-alive
    }
    if (done) {
      out.reason = 'data after [DONE]';
      return out;
    }
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch (e) {
      out.reason = `chunk ${i} is not JSON`;
      return out;
    }
    if (chunk.error) {
      out.reason = `error event: ${chunk.error.code || chunk.error.type || 'unknown'}`;
      return out;
    }
    // Azure opens a stream with a chunk of object "" that carries only
    // prompt_filter_results; every other chunk is a chat.completion.chunk.
    const azureFilter = chunk.object === '' && Array.isArray(chunk.prompt_filter_results);
    if (chunk.object !== 'chat.completion.chunk' && !azureFilter) {
      out.reason = `chunk ${i} has object ${chunk.object}`;
      return out;
    }
    out.chunks += 1;
    for (const c of chunk.choices || []) {
      if (c.delta && c.delta.content) {
        out.content += 1;
      }
    }
  }
  if (!done) {
    out.reason = 'no data: [DONE] at the end';
    return out;
  }
  if (out.content === 0) {
    out.reason = 'no content chunk';
    return out;
  }
  out.ok = true;
  return out;
}

// retryAfterOK reports whether a response carries a usable retry-after:
// whole seconds (1 or more) and, when present, retry-after-ms.
export function retryAfterOK(res) {
  const s = res.headers['Retry-After'];
  if (!s || !/^[0-9]+$/.test(s) || Number(s) < 1) {
    return false;
  }
  const ms = res.headers['Retry-After-Ms'];
  return ms === undefined || /^[0-9]+$/.test(ms);
}

export { check };
