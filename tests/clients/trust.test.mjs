// The trust baseline seen from outside: API keys stored only as keyed
// hashes, key lifecycle (revoke, rotate with grace, expiry, model lists)
// through the CLI and the admin API, and per-key rate limits with OpenAI's
// headers and 429s, through the official `openai` SDK; and what a node may
// learn of a client (nothing). Real gateway, real fake-engine nodes
// (deterministic token counts), real SQLite files.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import OpenAI from 'openai';
import { Gateway, agora, tempDir, waitFor } from './harness.mjs';
import { RecordingNode } from './recording_node.mjs';

let gw;
let gatewayTmp;
let admin;  // an admin token (at_…)
const FAST = 'fast';  // 20 tokens per request, at once
const SLOW = 'slow';  // 5 tokens, 300 ms apart
const hi = [{ role: 'user', content: 'hi' }];

before(async () => {
  // One completion token is reserved for requests without max_tokens, so
  // the overrun test can exceed its reservation.
  // Its own TMPDIR, so the canary scan covers the gateway's temporary files too.
  gatewayTmp = await tempDir('agora-gw-tmp-');
  gw = await Gateway.start({ providers: ['trust'], set: { default_completion_reservation: 1 }, env: { TMPDIR: gatewayTmp } });
  const p = gw.providers.trust;
  gw.startNode({ token: p.token, fake: `name=${FAST},tokens=20,slots=8`, nodeId: 'node-fast' });
  gw.startNode({ token: p.token, fake: `name=${SLOW},tokens=5,slots=8,token-interval-us=300000`, nodeId: 'node-slow' });
  await gw.waitForModel(FAST);
  await gw.waitForModel(SLOW);
  admin = await gw.createKey('ops', ['--admin']);
});

function dbBytes() {
  return ['agora.db', 'agora.db-wal']
    .map((f) => path.join(gw.dataDir, f))
    .filter((f) => fs.existsSync(f))
    .map((f) => fs.readFileSync(f).toString('latin1'))
    .join('');
}

async function adminCall(method, urlPath, body) {
  const r = await gw.raw(method, urlPath, { key: admin, body });
  return { ...r, json: r.body ? JSON.parse(r.body) : null };
}

async function expectStatus(promise, status) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OpenAI.APIError, `an APIError, got ${e}`);
    assert.equal(e.status, status, e.message);
    return true;
  });
}

test('keys are stored as keyed hashes: neither the key nor its SHA-256 is in the database', async () => {
  const key = await gw.createKey('hashing');
  const sha = createHash('sha256').update(key).digest('hex');
  const bytes = dbBytes();
  assert.ok(!bytes.includes(key.slice(7)), 'the key (after its display prefix) is not in the database');
  assert.ok(!bytes.includes(sha), 'the plain SHA-256 of the key is not in the database');
  assert.ok(bytes.includes(key.slice(0, 7)), 'the display prefix is (so the scan can find what is there)');
  const master = fs.statSync(path.join(gw.dataDir, 'master.key'));
  assert.equal(master.mode & 0o777, 0o600);
  // The secret file is not in the database either.
  const secret = fs.readFileSync(path.join(gw.dataDir, 'master.key'), 'utf8').trim();
  assert.ok(!bytes.includes(secret));
});

test('x-ratelimit-* headers on every authenticated response: JSON, stream, error, models', async () => {
  const key = await gw.createKey('headers', ['--rpm', '100', '--tpm', '100000']);
  const client = gw.client(key);
  const { data, response } = await client.chat.completions
    .create({ model: FAST, messages: hi, max_tokens: 5 })
    .withResponse();
  assert.equal(data.usage.completion_tokens, 5);
  const h = response.headers;
  assert.equal(h.get('x-ratelimit-limit-requests'), '100');
  assert.equal(h.get('x-ratelimit-limit-tokens'), '100000');
  // The models list (a GET) carries the state without spending a request.
  const models = await gw.raw('GET', '/v1/models', { key });
  const remaining = Number(h.get('x-ratelimit-remaining-requests'));
  assert.ok(remaining <= 99, `one request spent: ${remaining}`);
  assert.equal(models.headers['x-ratelimit-limit-requests'], '100');
  assert.match(models.headers['x-ratelimit-reset-requests'], /^\d+(\.\d)?s$|^\d+ms$|^\d+m\d+s$/);
  assert.match(h.get('x-ratelimit-reset-tokens'), /^(\d+ms|\d+(\.\d)?s|\d+m\d+s)$/);
  assert.ok(Number(h.get('x-ratelimit-remaining-tokens')) < 100000, 'tokens reserved and settled');

  const stream = await client.chat.completions
    .create({ model: FAST, messages: hi, max_tokens: 3, stream: true })
    .withResponse();
  for await (const _ of stream.data);
  assert.equal(stream.response.headers.get('x-ratelimit-limit-requests'), '100');
  assert.ok(Number(stream.response.headers.get('x-ratelimit-remaining-requests')) < remaining);

  const bad = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: [], max_tokens: 1 } });
  assert.equal(bad.status, 400);
  assert.equal(bad.headers['x-ratelimit-limit-tokens'], '100000');
});

test('requests per minute: the 4th request on a 3 rpm key is a 429 RateLimitError with retry-after', async () => {
  const key = await gw.createKey('rpm', ['--rpm', '3']);
  const client = gw.client(key);
  for (let i = 0; i < 3; i++) await client.chat.completions.create({ model: FAST, messages: hi, max_tokens: 1 });
  const r = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: hi, max_tokens: 1 } });
  assert.equal(r.status, 429);
  const err = JSON.parse(r.body).error;
  assert.equal(err.code, 'rate_limit_exceeded');
  assert.equal(err.type, 'requests');
  // 3 per minute: the next one in 20 s.
  const retry = Number(r.headers['retry-after']);
  assert.ok(retry >= 19 && retry <= 20, `retry-after ${retry}`);
  assert.equal(r.headers['x-ratelimit-remaining-requests'], '0');
  await assert.rejects(client.chat.completions.create({ model: FAST, messages: hi, max_tokens: 1 }),
                       (e) => e instanceof OpenAI.RateLimitError);
});

test('tokens per minute: reserve prompt + max_tokens, settle to the real usage; too large is never retried', async () => {
  const key = await gw.createKey('tpm', ['--tpm', '200']);
  const client = gw.client(key);
  // Reserves ~150 + the prompt estimate; uses 20 completion tokens (the fake
  // engine's count) + the prompt, and the rest comes back.
  const first = await client.chat.completions.create({ model: FAST, messages: hi, max_tokens: 150 }).withResponse();
  const used = first.data.usage.total_tokens;
  const afterAdmission = Number(first.response.headers.get('x-ratelimit-remaining-tokens'));
  assert.ok(afterAdmission < 200 - 150, `the reservation was taken at admission: ${afterAdmission}`);
  const models = await gw.raw('GET', '/v1/models', { key });
  const settled = Number(models.headers['x-ratelimit-remaining-tokens']);
  assert.ok(settled >= 200 - used - 1 && settled <= 200, `settled to the real usage ${used}: remaining ${settled}`);
  // A reservation larger than what is left: 429 for tokens.
  const r = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: hi, max_tokens: 180 } });
  assert.equal(r.status, 429, r.body);
  assert.equal(JSON.parse(r.body).error.type, 'tokens');
  assert.ok(Number(r.headers['retry-after']) >= 1);
  // Larger than the whole per-minute limit: 429 that says not to retry.
  const big = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: hi, max_tokens: 500 } });
  assert.equal(big.status, 429);
  assert.equal(JSON.parse(big.body).error.code, 'request_too_large');
  assert.equal(big.headers['x-should-retry'], 'false');
  assert.equal(big.headers['retry-after'], undefined);
});

test('a stream that overruns its reservation is charged in full and blocks the key until paid back', async () => {
  const key = await gw.createKey('overrun', ['--tpm', '20']);
  const client = gw.client(key);
  // No max_tokens: the gateway reserves the prompt estimate + 1 token; the
  // node streams 20 tokens.
  const stream = await client.chat.completions.create({
    model: FAST, messages: hi, stream: true, stream_options: { include_usage: true },
  }).withResponse();
  const reservedLeft = Number(stream.response.headers.get('x-ratelimit-remaining-tokens'));
  let usage;
  for await (const c of stream.data) if (c.usage) usage = c.usage;
  assert.equal(usage.completion_tokens, 20);
  assert.ok(usage.total_tokens > 20, `the stream used more than the whole minute's budget: ${usage.total_tokens}`);
  assert.ok(reservedLeft > 0, `the reservation was smaller than the use (${reservedLeft} left after it)`);
  const r = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: hi, max_tokens: 1 } });
  assert.equal(r.status, 429, 'the debt blocks the next request');
  assert.equal(JSON.parse(r.body).error.type, 'tokens');
  assert.equal(r.headers['x-ratelimit-remaining-tokens'], '0');
  // In debt: refilling takes longer than the minute a full bucket needs.
  const reset = r.headers['x-ratelimit-reset-tokens'];
  const m = reset.match(/^(\d+)m(\d+)s$/);
  assert.ok(m && Number(m[1]) * 60 + Number(m[2]) > 60, `reset ${reset} is beyond a minute`);
});

test('concurrent requests: a second request while one is in flight is refused, then admitted', async () => {
  const key = await gw.createKey('concurrency', ['--max-concurrent', '1']);
  const client = gw.client(key);
  const stream = await client.chat.completions.create({ model: SLOW, messages: hi, stream: true });
  const it = stream[Symbol.asyncIterator]();
  await it.next();  // the first token: the request is in flight for ~1 s more
  const r = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: hi, max_tokens: 1 } });
  assert.equal(r.status, 429);
  assert.equal(JSON.parse(r.body).error.code, 'concurrency_limit_exceeded');
  assert.ok(Number(r.headers['retry-after']) >= 1);
  while (!(await it.next()).done);
  // The slot is freed when the job ends (the node's done frame).
  await waitFor('the slot to be freed', async () => {
    const again = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: hi, max_tokens: 1 } });
    return again.status === 200;
  }, { timeoutMs: 5000 });
});

test('models allow-list: 403 PermissionDeniedError for another model', async () => {
  const key = await gw.createKey('only-fast', ['--models', FAST]);
  const client = gw.client(key);
  await client.chat.completions.create({ model: FAST, messages: hi, max_tokens: 1 });
  await assert.rejects(client.chat.completions.create({ model: SLOW, messages: hi, max_tokens: 1 }), (e) => {
    assert.ok(e instanceof OpenAI.PermissionDeniedError, String(e));
    assert.equal(e.code, 'model_not_allowed');
    return true;
  });
});

test('admin API: needs an admin token; creates, lists, gets, revokes and rotates client keys', async () => {
  const client0 = await gw.createKey('not-admin');
  assert.equal((await gw.raw('GET', '/admin/v1/keys')).status, 401);
  assert.equal((await gw.raw('GET', '/admin/v1/keys', { key: client0 })).status, 401, 'a client key is not an admin token');
  assert.equal((await gw.raw('GET', '/v1/models', { key: admin })).status, 401, 'an admin token is not a client key');

  const created = await adminCall('POST', '/admin/v1/keys', { name: 'via-api', rpm: 50, tpm: null, models: [FAST] });
  assert.equal(created.status, 201, created.body);
  const { key, id } = created.json;
  assert.match(key, /^gk_[0-9A-Za-z]{43}$/);
  assert.equal(created.json.limits.rpm, 50);
  assert.equal(created.json.limits.tpm, null);
  assert.equal(created.json.limits.max_concurrent, 'default');
  assert.deepEqual(created.json.models, [FAST]);
  // In force when the response arrives: no waiting.
  const r = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: FAST, messages: hi, max_tokens: 1 } });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.headers['x-ratelimit-limit-requests'], '50');
  assert.equal(r.headers['x-ratelimit-limit-tokens'], undefined, 'no token limit, no token headers');

  const list = await adminCall('GET', '/admin/v1/keys');
  assert.equal(list.status, 200);
  assert.ok(list.json.data.some((k) => k.id === id && k.name === 'via-api'));
  assert.ok(list.json.data.every((k) => k.role === 'client'), 'admin tokens are not listed');
  assert.ok(!list.body.includes(key), 'the list never holds a key');
  assert.equal((await adminCall('GET', `/admin/v1/keys/${id}`)).json.status, 'active');

  // Revocation is in force before the DELETE returns.
  const revoked = await adminCall('DELETE', `/admin/v1/keys/${id}`);
  assert.equal(revoked.status, 200);
  assert.equal(revoked.json.status, 'revoked');
  assert.equal((await gw.raw('GET', '/v1/models', { key })).status, 401);

  // Bad input names the field; unknown ids are 404.
  const bad = await adminCall('POST', '/admin/v1/keys', { name: 'x', rpm: 0 });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'rpm');
  assert.equal((await adminCall('POST', '/admin/v1/keys', { rpm: 5 })).json.error.param, 'name');
  assert.equal((await adminCall('GET', '/admin/v1/keys/key_doesnotexist00')).status, 404);
  assert.equal((await adminCall('PATCH', '/admin/v1/keys')).status, 405);
  // Admin tokens are out of the API's reach.
  const adminId = JSON.parse((await agora(['keys', 'list', '--data-dir', gw.dataDir, '--json'])).stdout)
    .find((k) => k.role === 'admin').id;
  assert.equal((await adminCall('DELETE', `/admin/v1/keys/${adminId}`)).status, 404);
});

test('rotation: the old key works during the grace period, then stops; the new one works; limits are shared', async () => {
  const created = await adminCall('POST', '/admin/v1/keys', { name: 'rotating', rpm: 4 });
  const old = created.json.key;
  const oldClient = gw.client(old);
  await oldClient.chat.completions.create({ model: FAST, messages: hi, max_tokens: 1 });
  const t0 = Date.now();
  const rotated = await adminCall('POST', `/admin/v1/keys/${created.json.id}/rotate`, { grace: '3s' });
  assert.equal(rotated.status, 201, rotated.body);
  const fresh = rotated.json.key;
  assert.notEqual(fresh, old);
  assert.equal(rotated.json.replaces.id, created.json.id);
  assert.equal(rotated.json.replaces.replaced_by, rotated.json.id);
  assert.equal(rotated.json.lineage_id, created.json.id);
  // Both work during the grace period, and share one budget of 4 per minute.
  await oldClient.chat.completions.create({ model: FAST, messages: hi, max_tokens: 1 });
  const r = await gw.raw('POST', '/v1/chat/completions', { key: fresh, body: { model: FAST, messages: hi, max_tokens: 1 } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-ratelimit-remaining-requests'], '1', 'three of the lineage\'s four requests spent');
  // After the grace period the old key is refused; never before it.
  await waitFor('the old key to stop', async () => {
    const s = (await gw.raw('GET', '/v1/models', { key: old })).status;
    if (s === 401) assert.ok(Date.now() - t0 >= 2900, `stopped after ${Date.now() - t0} ms, before its grace`);
    return s === 401;
  }, { timeoutMs: 10000, intervalMs: 100 });
  assert.equal((await gw.raw('GET', '/v1/models', { key: fresh })).status, 200);
});

test('an expired key gets 401 at its expiry time', async () => {
  const created = await adminCall('POST', '/admin/v1/keys', { name: 'short-lived', expires_in: '2s' });
  const t0 = Date.now();
  const key = created.json.key;
  assert.equal((await gw.raw('GET', '/v1/models', { key })).status, 200);
  await waitFor('the key to expire', async () => (await gw.raw('GET', '/v1/models', { key })).status === 401,
                { timeoutMs: 10000, intervalMs: 100 });
  assert.ok(Date.now() - t0 >= 1900);
  const listed = JSON.parse((await agora(['keys', 'list', '--data-dir', gw.dataDir, '--json'])).stdout)
    .find((k) => k.id === created.json.id);
  assert.equal(listed.status, 'expired');
});

test('a revocation through the CLI takes effect on the running gateway within a second', async () => {
  const key = await gw.createKey('cli-revoke');
  const t0 = Date.now();
  await gw.revokeKey(key);
  await waitFor('401 for the revoked key', async () => (await gw.raw('GET', '/v1/models', { key })).status === 401,
                { timeoutMs: 5000, intervalMs: 20 });
  const ms = Date.now() - t0;
  // The CLI process itself takes part of this; the gateway polls every 200 ms.
  assert.ok(ms < 1500, `took ${ms} ms`);
});

test('no prompt or response is stored: a canary in prompts and answers is nowhere in the data dir, temp files or the logs', async () => {
  const canary = `CANARY${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  const node = gw.startNode({ token: gw.providers.trust.token, fake: `name=echo,tokens=4,token-text=${canary}`,
                              nodeId: 'node-echo' });
  await gw.waitForModel('echo');
  const key = await gw.createKey('canary');
  const client = gw.client(key);
  const msgs = [{ role: 'system', content: `system ${canary}` }, { role: 'user', content: `say ${canary} back` }];
  const unary = await client.chat.completions.create({ model: 'echo', messages: msgs, max_tokens: 4 });
  assert.ok(unary.choices[0].message.content.includes(canary), 'the answer carries the canary (the scan has something to find)');
  let streamed = '';
  for await (const c of await client.chat.completions.create({ model: 'echo', messages: msgs, stream: true })) {
    streamed += c.choices[0]?.delta?.content ?? '';
  }
  assert.ok(streamed.includes(canary));
  // The generation records are written (metadata only) before we scan.
  await waitFor('the generation record', async () => (await gw.raw('GET', `/v1/generations/${unary.id}`, { key })).status === 200);
  const files = [gw.dataDir, gatewayTmp].flatMap((dir) => fs.readdirSync(dir, { recursive: true })
    .map((f) => path.join(dir, String(f)))
    .filter((f) => fs.statSync(f).isFile()));
  assert.ok(files.some((f) => f.endsWith('agora.db')) && files.some((f) => f.endsWith('agora.db-wal')));
  for (const f of files) {
    assert.ok(!fs.readFileSync(f).toString('latin1').includes(canary), `${f} holds the canary`);
  }
  for (const p of [gw.proc, node]) {
    assert.ok(!`${p.out}${p.err}`.includes(canary), `${p.name}'s logs hold the canary`);
  }
});

test('nodes never learn who the client is: everything a node receives holds no key, key id, key name or generation id', async (t) => {
  // A node that keeps every byte the gateway sends it, so the check covers
  // what a node could read, not just what `agora node` chooses to decode.
  const node = new RecordingNode({ port: gw.port, ca: gw.ca, token: gw.providers.trust.token, model: 'recorded' });
  t.after(() => node.close());
  const welcome = await node.connect();
  assert.equal(welcome.provider_id, gw.providers.trust.id);
  await gw.waitForModel('recorded');

  const tag = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const keyName = `billing-team-${tag}`;
  const key = await gw.createKey(keyName);
  const keyId = JSON.parse((await agora(['keys', 'list', '--data-dir', gw.dataDir, '--json'])).stdout)
    .find((k) => k.name === keyName).id;
  assert.match(keyId, /^key_\w+$/);
  const user = 'alice@example.com';
  const clientName = `client-name-${tag}`;
  const org = `org-${tag}`;
  const project = `proj_${tag}`;
  const customer = `customer-${tag}`;
  // Everything a client sends besides its prompt: the SDK's identity
  // headers, custom headers, `user`, and `metadata` (which the gateway
  // accepts and ignores).
  const client = gw.client(key, { organization: org, project, defaultHeaders: { 'X-Client-Name': clientName } });
  const prompt = `PROMPT-${tag}`;
  const messages = [{ role: 'system', content: 'be brief' }, { role: 'user', content: `repeat ${prompt}` }];
  const extra = { user, metadata: { customer } };
  const ids = [];  // every response id and generation id the client saw

  for (const max_tokens of [8, undefined]) {
    const r = await client.chat.completions.create({ model: 'recorded', messages, max_tokens, seed: 7, ...extra });
    assert.equal(r.choices[0].message.content, 'hello', 'the recording node served it');
    ids.push(r.id, r.agora.generation_id);
  }
  for (const stream_options of [{ include_usage: true }, undefined]) {
    let text = '';
    const seen = new Set();
    let sawGeneration = false;
    const stream = await client.chat.completions.create({ model: 'recorded', messages, stream: true, stream_options,
                                                          ...extra });
    for await (const c of stream) {
      text += c.choices[0]?.delta?.content ?? '';
      seen.add(c.id);
      if (c.agora) {
        seen.add(c.agora.generation_id);
        sawGeneration = true;
      }
    }
    assert.equal(text, 'hello');
    assert.ok(sawGeneration, 'a chunk carries agora.generation_id');
    ids.push(...seen);
  }
  assert.ok(ids.every((id) => typeof id === 'string' && id.length >= 8), JSON.stringify(ids));
  assert.ok(new Set(ids).size >= 4, `an id per request: ${ids}`);

  // Each answer came from the node, so its job is recorded by now: one job
  // per request (the node answers at once; none is retried or cancelled).
  assert.equal(node.jobs.length, 4);
  assert.equal(node.error, undefined, String(node.error?.stack));
  const raw = node.raw;
  const texts = { latin1: raw.toString('latin1'), utf8: raw.toString('utf8') };
  // The scan sees what the node saw: the upgrade response and the prompt.
  assert.match(texts.latin1, /^HTTP\/1\.1 101 /);
  for (const [enc, text] of Object.entries(texts)) assert.ok(text.includes(prompt), `the prompt is in the ${enc} bytes`);

  const secrets = {
    key,
    'the key after its prefix': key.slice(7),
    'the key\'s SHA-256': createHash('sha256').update(key).digest('hex'),
    'key id': keyId,
    'key name': keyName,
    user,
    'X-Client-Name': clientName,
    'OpenAI-Organization': org,
    'OpenAI-Project': project,
    metadata: customer,
    'the SDK\'s User-Agent': 'OpenAI/JS',
    'the SDK\'s X-Stainless-Runtime-Version': process.version,
  };
  [...new Set(ids)].forEach((id, i) => {
    secrets[`response/generation id ${i}`] = id;
  });
  for (const [what, value] of Object.entries(secrets)) {
    for (const [enc, text] of Object.entries(texts)) {
      assert.ok(!text.includes(value), `the node received ${what} (${value}) in its ${enc} bytes`);
    }
  }

  // The frames are the documented ones, with nothing beside the request.
  const types = new Set(node.frames.map((f) => f.type));
  assert.ok(types.has('welcome') && types.has('job'));
  for (const type of types) assert.ok(['welcome', 'agreement', 'job'].includes(type), `a ${type} frame`);
  const requestFields = new Set(['messages', 'prompt', 'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'seed',
                                 'presence_penalty', 'frequency_penalty', 'logit_bias', 'stop', 'logprobs',
                                 'top_logprobs', 'ignore_eos']);
  for (const job of node.jobs) {
    assert.deepEqual(Object.keys(job).sort(), ['job', 'model', 'request', 'type']);
    assert.equal(job.model, 'recorded');
    assert.ok(Number.isInteger(job.job), `the job is a number: ${job.job}`);
    for (const k of Object.keys(job.request)) assert.ok(requestFields.has(k), `request.${k} is not a documented field`);
    assert.equal(job.request.user, undefined);
    assert.equal(job.request.metadata, undefined);
    assert.deepEqual(job.request.messages, messages);
  }
  assert.deepEqual(node.jobs.map((j) => j.job), [1, 2, 3, 4],
                   'job numbers are per connection: they tell a node nothing of the gateway\'s other traffic');
  assert.deepEqual(node.jobs.map((j) => j.request.max_tokens), [8, 4096, 4096, 4096],
                   'max_tokens as given, else the model\'s ctx_per_slot');
});
