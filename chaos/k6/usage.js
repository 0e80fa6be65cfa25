// Usage accounting under steady mixed traffic.
//
// setup() creates three tenants, each with its own key, named uniquely
// for the run:
//
//   chat       interactive, gpt-4o-mini, short prompts, max_tokens 32,
//              10% streamed, 2 requests/s
//   support    interactive, gpt-4o-mini, medium and long prompts,
//              max_tokens 128, 60% streamed, 1 request/s
//   indexer    batch class, text-embedding-3-small, 1-16 inputs per
//              request, 3 requests/s
//
// setup() then sends each tenant one small request per node until every
// node answers 200: a follower knows a new key only once the configuration
// write has replicated to it. Those requests are counted like the others
// (usage_warmup shows how many).
//
// Each tenant is a constant-arrival-rate scenario for USAGE_DURATION
// (default 40s), requests spread round-robin over the nodes. The rates stay
// well under the mock provider's quota, so every request should succeed.
//
// teardown() reads GET /admin/v1/usage?group_by=tenant from every node until
// the three answers agree and stop changing (the ledger flushes once a
// second; it waits at most USAGE_LEDGER_WAIT seconds, default 10), then
// compares each tenant's row with what k6 saw. The comparison uses
// counters that k6 adds to and teardown subtracts from:
//
//   usage_ledger_requests_diff  +1 per answered request, -ledger requests
//   usage_ledger_ok_diff        +1 per 200, -(ledger requests - errors)
//
// Both must end at exactly 0 for every tenant. Other thresholds: >= 99%
// of each tenant's requests answered 200, >= 99% of streams well formed,
// and the three nodes' ledgers agree (check "ledger: nodes agree").

import http from 'k6/http';
import { fail, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import {
  ADMIN_URLS, API_URLS, check, chatBody, createKey, createTenant, embeddingBody, envNumber, nextAPI,
  parseSSE, PROMPTS, runID, usageByTenant, waitForKeys,
} from './lib.js';

const DURATION = __ENV.USAGE_DURATION || '40s';
const LEDGER_WAIT = envNumber('USAGE_LEDGER_WAIT', 10);
const CHAT_MODEL = __ENV.USAGE_CHAT_MODEL || 'gpt-4o-mini';
const EMBED_MODEL = __ENV.USAGE_EMBED_MODEL || 'text-embedding-3-small';

// The tenants by role: the role is the static tag thresholds name; the
// tenant name itself is unique per run.
const ROLES = {
  chat: { class: 'interactive', rate: 2, limits: { rpm: 600, tpm: 200000 } },
  support: { class: 'interactive', rate: 1, limits: { rpm: 300, tpm: 200000 } },
  indexer: { class: 'batch', rate: 3, limits: { rpm: 600 } },
};

const sent = new Counter('usage_sent');
const okCount = new Counter('usage_ok');
const success = new Rate('usage_success');
const latency = new Trend('usage_latency', true);
const streamOK = new Rate('usage_stream_ok');
const reqDiff = new Counter('usage_ledger_requests_diff');
const okDiff = new Counter('usage_ledger_ok_diff');
const ledgerRequests = new Counter('usage_ledger_requests');
const warmups = new Counter('usage_warmup');

function scenario(role) {
  return {
    executor: 'constant-arrival-rate',
    exec: role,
    rate: ROLES[role].rate,
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: 4 * ROLES[role].rate,
    maxVUs: 20 * ROLES[role].rate,
    gracefulStop: '30s',
    tags: { tenant_role: role },
  };
}

const thresholds = {
  'checks{phase:ledger}': ['rate==1'],
  'usage_stream_ok': ['rate>=0.99'],
};
for (const role of Object.keys(ROLES)) {
  thresholds[`usage_success{tenant_role:${role}}`] = ['rate>=0.99'];
  thresholds[`usage_ledger_requests_diff{tenant_role:${role}}`] = ['count==0'];
  thresholds[`usage_ledger_ok_diff{tenant_role:${role}}`] = ['count==0'];
  // Reported, not judged: listed so the summary shows them per tenant.
  thresholds[`usage_sent{tenant_role:${role}}`] = ['count>=0'];
  thresholds[`usage_ok{tenant_role:${role}}`] = ['count>=0'];
  thresholds[`usage_ledger_requests{tenant_role:${role}}`] = ['count>=0'];
  thresholds[`usage_latency{tenant_role:${role}}`] = ['p(95)>=0'];
  thresholds[`usage_warmup{tenant_role:${role}}`] = ['count>=0'];
}

export const options = {
  setupTimeout: '60s',
  teardownTimeout: `${LEDGER_WAIT + 20}s`,
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    chat: scenario('chat'),
    support: scenario('support'),
    indexer: scenario('indexer'),
  },
  thresholds,
};

export function setup() {
  const id = runID();
  const out = { tenants: {}, keys: {} };
  const keyIDs = [];
  for (const role of Object.keys(ROLES)) {
    const tenant = `k6-usage-${role}-${id}`;
    createTenant(tenant, ROLES[role].class, ROLES[role].limits);
    const k = createKey(tenant, `k6-usage-${role}-${id}`);
    out.tenants[role] = tenant;
    out.keys[role] = k.key;
    keyIDs.push(k.id);
  }
  waitForKeys(keyIDs, 15);
  for (const role of Object.keys(ROLES)) {
    warmUp(out, role);
  }
  return out;
}

// warmUp sends one small request of role to every node until each answers
// 200: a follower refuses a key it does not know yet, until the write that
// created it has replicated. The warm-up requests are in the ledger too,
// so they are added to the two diff counters (and to usage_warmup) but not
// to the success rate.
function warmUp(data, role) {
  const roleTag = { tenant_role: role };
  const body = role === 'indexer' ? embeddingBody(EMBED_MODEL, PROMPTS.small, 1) : chatBody(CHAT_MODEL, PROMPTS.small, 1, false);
  const path = role === 'indexer' ? '/v1/embeddings' : '/v1/chat/completions';
  const deadline = Date.now() + 15000;
  for (const base of API_URLS) {
    for (;;) {
      const res = http.post(`${base}${path}`, body, {
        headers: { Authorization: `Bearer ${data.keys[role]}`, 'Content-Type': 'application/json' },
        tags: { tenant_role: role, name: 'warmup' },
        responseType: 'none',
        responseCallback: http.expectedStatuses(200, 429),
      });
      warmups.add(1, roleTag);
      if (res.status !== 0) {
        reqDiff.add(1, roleTag);
      }
      if (res.status === 200) {
        okDiff.add(1, roleTag);
        break;
      }
      if (Date.now() > deadline) {
        fail(`warm-up of ${role} on ${base}: still ${res.status} after 15s`);
      }
      sleep(0.1);
    }
  }
}

// send makes one request for role and records what k6 saw.
function send(data, role, path, body, stream) {
  const tags = { tenant_role: role, stream: String(stream) };
  const res = http.post(`${nextAPI()}${path}`, body, {
    headers: { Authorization: `Bearer ${data.keys[role]}`, 'Content-Type': 'application/json' },
    tags,
    timeout: '60s',
    responseType: stream ? 'text' : 'none', // only streams' bodies are checked
  });
  const roleTag = { tenant_role: role };
  sent.add(1, roleTag);
  if (res.status !== 0) {
    reqDiff.add(1, roleTag); // the gateway answered: the ledger has a row for it
  }
  const ok = res.status === 200;
  success.add(ok, roleTag);
  if (ok) {
    okCount.add(1, roleTag);
    okDiff.add(1, roleTag);
    latency.add(res.timings.duration, roleTag);
  }
  if (stream && ok) {
    const sse = parseSSE(res.body);
    streamOK.add(sse.ok, roleTag);
    check(sse, { 'stream well formed, ends with [DONE]': (s) => s.ok });
  } else {
    check(res, { 'status 200': (r) => r.status === 200 });
  }
}

export function chat(data) {
  const stream = Math.random() < 0.1;
  send(data, 'chat', '/v1/chat/completions', chatBody(CHAT_MODEL, PROMPTS.small, 32, stream), stream);
}

export function support(data) {
  const stream = Math.random() < 0.6;
  const prompt = Math.random() < 0.5 ? PROMPTS.medium : PROMPTS.large;
  send(data, 'support', '/v1/chat/completions', chatBody(CHAT_MODEL, prompt, 128, stream), stream);
}

export function indexer(data) {
  const n = 1 + Math.floor(Math.random() * 16);
  send(data, 'indexer', '/v1/embeddings', embeddingBody(EMBED_MODEL, PROMPTS.small, n), false);
}

// readLedgers reads the usage of every node: [{tenant: row}] (null for a
// node that did not answer).
function readLedgers() {
  return ADMIN_URLS.map((base) => usageByTenant(base));
}

function countsOf(ledgers, tenants) {
  return JSON.stringify(ledgers.map((l) => tenants.map((t) => {
    const r = l && l[t];
    return r ? [r.requests, r.errors] : [0, 0];
  })));
}

export function teardown(data) {
  const tenants = Object.keys(ROLES).map((r) => data.tenants[r]);
  const deadline = Date.now() + LEDGER_WAIT * 1000;
  // Wait for one flush interval at least, then until every node answers
  // the same counts twice in a row, a second apart.
  sleep(1.5);
  let ledgers = readLedgers();
  let prev = countsOf(ledgers, tenants);
  let agree = false;
  while (Date.now() < deadline) {
    sleep(1);
    ledgers = readLedgers();
    const cur = countsOf(ledgers, tenants);
    const perNode = JSON.parse(cur).map((n) => JSON.stringify(n));
    agree = ledgers.every((l) => l !== null) && perNode.every((n) => n === perNode[0]);
    if (agree && cur === prev) {
      break;
    }
    prev = cur;
  }
  const tags = { phase: 'ledger' };
  check(ledgers, { 'ledger: nodes agree': () => agree }, tags);
  const ledger = ledgers[0] || {};
  for (const role of Object.keys(ROLES)) {
    const row = ledger[data.tenants[role]] || { requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0 };
    const roleTag = { tenant_role: role };
    reqDiff.add(-row.requests, roleTag);
    okDiff.add(-(row.requests - row.errors), roleTag);
    ledgerRequests.add(row.requests, roleTag);
    check(row, { [`ledger: ${role} has tokens`]: (r) => r.prompt_tokens > 0 }, tags);
    console.log(`ledger ${role}: requests=${row.requests} errors=${row.errors} prompt_tokens=${row.prompt_tokens} completion_tokens=${row.completion_tokens}`);
  }
}
