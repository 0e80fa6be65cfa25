// Traffic surge against a Sluice cluster.
//
// Two scenarios run side by side:
//
//   normal   ramping-vus 0 -> 100 -> 500 -> 1,000 -> 2,000 -> hold -> 0.
//            Each VU is one user of an unlimited "normal" tenant: a chat
//            completion (20% of them streamed), then a think time of
//            SURGE_THINK seconds (uniform, default 5-15 s) before the next
//            one. Without think time 2,000 VUs would be 2,000 requests in
//            flight, which a 2-core machine running k6, three nodes and the
//            mock provider cannot serve; with it the peak is about
//            2,000 / 10 s = 200 requests/s.
//   abusive  constant-arrival-rate: 5 VUs, each one request every 50 ms
//            (100 requests/s), with a key of an "abusive" tenant limited
//            to SURGE_ABUSIVE_RPM (default 60) requests per minute.
//
// Requests go round-robin to every node. Both tenants are created in
// setup() through the admin API with names unique to the run.
//
// Thresholds (the run fails when one is crossed):
//   normal users: >= 99% answered 2xx (a 429 is a failure); p95 latency of
//   non-streamed requests < SURGE_P95_MS (default 3000 ms); streams:
//   >= 99% well formed and ending with data: [DONE], p95 time to first
//   byte < SURGE_TTFB_P95_MS (default 3000 ms). The mock answers in
//   150 ms (median) to 600 ms (p99) plus 5 ms per streamed token, at most
//   48 here, so an upstream answer takes under 0.9 s and a static one a
//   millisecond: on a quiet machine p95 stays under 1 s (set
//   SURGE_P95_MS=1000 there). The default leaves room for a shared 2-core
//   machine, where k6's own figure is mostly time spent waiting for a CPU.
//   abusive users: >= 90% answered 429, and >= 99% of those 429s carry a
//   retry-after header. When answers take longer than 50 ms the 5 VUs
//   cannot keep the pace: k6 counts the missed requests in
//   dropped_iterations (SURGE_ABUSIVE_MAX_VUS lets it add VUs instead).
//
// The mock provider in deploy/local allows 300 requests/min per region for
// gpt-4o-mini, about 10 requests/s for the whole pool, far below the
// surge. Sluice then answers with the model's static_response (HTTP 200,
// X-Sluice-Deployment: static); sluice_static reports that share. It has
// no threshold: it measures the provider quota, not the gateway.

import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import {
  check, chatBody, createKey, createTenant, envList, envNumber, nextAPI, parseSSE,
  PROMPTS, retryAfterOK, runID, waitForKeys,
} from './lib.js';

const MODEL = __ENV.SURGE_MODEL || 'gpt-4o-mini';
const STREAM_SHARE = envNumber('SURGE_STREAM_SHARE', 0.2);
const THINK = envList('SURGE_THINK', '5,15').map(Number);
const THINK_MIN = THINK[0];
const THINK_MAX = THINK.length > 1 ? THINK[1] : THINK[0];
if (!(THINK_MIN >= 0 && THINK_MAX >= THINK_MIN)) {
  throw new Error(`SURGE_THINK: want "min,max" seconds, got ${__ENV.SURGE_THINK}`);
}
const ABUSIVE_VUS = 5;
const ABUSIVE_INTERVAL_MS = 50;
const ABUSIVE_RPM = envNumber('SURGE_ABUSIVE_RPM', 60);
const P95_MS = envNumber('SURGE_P95_MS', 3000);
const TTFB_P95_MS = envNumber('SURGE_TTFB_P95_MS', 3000);
const ABUSIVE_MAX_VUS = envNumber('SURGE_ABUSIVE_MAX_VUS', ABUSIVE_VUS);

// Stages: SURGE_STAGES gives one duration per target in SURGE_TARGETS.
// The defaults take 2 minutes; stretch them for a longer surge, e.g.
// SURGE_STAGES=1m,2m,2m,3m,5m,1m.
const TARGETS = envList('SURGE_TARGETS', '100,500,1000,2000,2000,0').map(Number);
const DURATIONS = envList('SURGE_STAGES', '15s,20s,20s,25s,30s,10s');
if (TARGETS.length !== DURATIONS.length) {
  throw new Error(`SURGE_TARGETS has ${TARGETS.length} values, SURGE_STAGES ${DURATIONS.length}`);
}
const STAGES = TARGETS.map((target, i) => ({ target, duration: DURATIONS[i] }));

function seconds(d) {
  const m = /^([0-9.]+)(ms|s|m|h)$/.exec(d);
  if (!m) {
    throw new Error(`bad duration ${d} (use 500ms, 20s, 2m, 1h)`);
  }
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
}
const TOTAL_SECONDS = DURATIONS.reduce((s, d) => s + seconds(d), 0);

// Custom metrics; every sample is tagged tenant_class (normal | abusive).
const reqs = new Counter('sluice_reqs');
const success = new Rate('sluice_success');
const limited = new Rate('sluice_limited');
const retryAfter = new Rate('sluice_retry_after_ok');
const staticShare = new Rate('sluice_static');
const latency = new Trend('sluice_latency', true);
const ttfb = new Trend('sluice_ttfb', true);
const streamOK = new Rate('sluice_stream_ok');

export const options = {
  setupTimeout: '60s',
  teardownTimeout: '30s',
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    normal: {
      executor: 'ramping-vus',
      exec: 'normal',
      startVUs: 0,
      stages: STAGES,
      gracefulRampDown: '15s',
      gracefulStop: '15s',
      tags: { tenant_class: 'normal' },
    },
    abusive: {
      executor: 'constant-arrival-rate',
      exec: 'abusive',
      rate: ABUSIVE_VUS * (1000 / ABUSIVE_INTERVAL_MS),
      timeUnit: '1s',
      duration: `${Math.round(TOTAL_SECONDS)}s`,
      preAllocatedVUs: ABUSIVE_VUS,
      maxVUs: Math.max(ABUSIVE_VUS, ABUSIVE_MAX_VUS),
      gracefulStop: '5s',
      tags: { tenant_class: 'abusive' },
    },
  },
  thresholds: {
    'sluice_success{tenant_class:normal}': ['rate>=0.99'],
    'sluice_latency{tenant_class:normal,stream:false}': [`p(95)<${P95_MS}`],
    'sluice_ttfb{tenant_class:normal,stream:true}': [`p(95)<${TTFB_P95_MS}`],
    'sluice_stream_ok{tenant_class:normal}': ['rate>=0.99'],
    'sluice_limited{tenant_class:abusive}': ['rate>=0.90'],
    'sluice_retry_after_ok{tenant_class:abusive}': ['rate>=0.99'],
    // Reported, not judged: listed so that the summary shows them per class.
    'sluice_static{tenant_class:normal}': ['rate>=0'],
    'sluice_limited{tenant_class:normal}': ['rate>=0'],
    'sluice_latency{tenant_class:normal,stream:true}': ['p(95)>=0'],
    'sluice_latency{tenant_class:normal,answered_by:upstream}': ['p(95)>=0'],
    'sluice_latency{tenant_class:normal,answered_by:static}': ['p(95)>=0'],
    'sluice_success{tenant_class:abusive}': ['rate>=0'],
    'sluice_reqs{tenant_class:normal}': ['count>=0'],
    'sluice_reqs{tenant_class:abusive}': ['count>=0'],
  },
};

export function setup() {
  const id = runID();
  const normalTenant = `k6-surge-normal-${id}`;
  const abusiveTenant = `k6-surge-abusive-${id}`;
  createTenant(normalTenant, 'interactive', null);
  createTenant(abusiveTenant, 'interactive', { rpm: ABUSIVE_RPM });
  const normal = createKey(normalTenant, `k6-normal-${id}`);
  const abusive = createKey(abusiveTenant, `k6-abusive-${id}`);
  waitForKeys([normal.id, abusive.id], 15);
  return { normal: normal.key, abusive: abusive.key };
}

function send(key, cls, stream, maxTokens, prompt) {
  const base = nextAPI();
  const tags = { tenant_class: cls, stream: String(stream) };
  const res = http.post(`${base}/v1/chat/completions`, chatBody(MODEL, prompt, maxTokens, stream), {
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    tags,
    timeout: '60s',
    // Only streams' bodies are read; the rest are discarded on arrival.
    responseType: stream ? 'text' : 'none',
    // Every status is recorded by the metrics below; keep k6's
    // http_req_failed for transport errors and 5xx.
    responseCallback: http.expectedStatuses({ min: 200, max: 499 }),
  });
  reqs.add(1, Object.assign({ status: String(res.status) }, tags));
  const ok = res.status >= 200 && res.status < 300;
  success.add(ok, tags);
  limited.add(res.status === 429, tags);
  if (res.status === 429) {
    retryAfter.add(retryAfterOK(res), tags);
  }
  if (ok) {
    const isStatic = res.headers['X-Sluice-Deployment'] === 'static';
    staticShare.add(isStatic, tags);
    const t = Object.assign({ answered_by: isStatic ? 'static' : 'upstream' }, tags);
    latency.add(res.timings.duration, t);
    ttfb.add(res.timings.waiting, t);
  }
  return res;
}

export function normal(data) {
  const stream = Math.random() < STREAM_SHARE;
  const prompt = Math.random() < 0.7 ? PROMPTS.small : PROMPTS.medium;
  const maxTokens = 16 + Math.floor(Math.random() * 33);
  const res = send(data.normal, 'normal', stream, maxTokens, prompt);
  if (stream && res.status === 200) {
    const sse = parseSSE(res.body);
    streamOK.add(sse.ok, { tenant_class: 'normal' });
    check(sse, { 'stream well formed, ends with [DONE]': (s) => s.ok });
  } else {
    check(res, { 'normal: 2xx': (r) => r.status >= 200 && r.status < 300 });
  }
  sleep(THINK_MIN + Math.random() * (THINK_MAX - THINK_MIN));
}

export function abusive(data) {
  const res = send(data.abusive, 'abusive', false, 16, PROMPTS.small);
  check(res, {
    'abusive: 429 or 200': (r) => r.status === 429 || r.status === 200,
    'abusive: 429 has retry-after': (r) => r.status !== 429 || retryAfterOK(r),
  });
}
