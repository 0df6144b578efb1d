// OpenAI API conformance, seen through the official `openai` SDK: a real
// gateway and a real node serving the synthesised tiny llama model (random
// weights, so the text is gibberish, but tokens, sampling, seeds and
// logprobs are real).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { Gateway, Proc, ensureTinyModel, sseData, waitFor } from './harness.mjs';

const MODEL = 'tiny';
const messages = [{ role: 'user', content: 'Tell me a short story about a lighthouse.' }];

let gw;  // the gateway
let provider;  // {id, token}
let key;  // an API key
let client;  // OpenAI SDK client for `key`
let sha;  // the model's SHA-256 as /v1/models reports it
let proxy;  // agora proxy in front of the gateway
const clients = {};  // via -> OpenAI SDK client: 'gateway' (with `key`), 'proxy'

before(async () => {
  const model = await ensureTinyModel();
  gw = await Gateway.start({ providers: ['conformance'] });
  provider = gw.providers.conformance;
  key = await gw.createKey('conformance');
  client = gw.client(key);
  gw.startNode({ token: provider.token, model, modelName: MODEL, slots: 4, nodeId: 'node-real' });
  const m = await gw.waitForModel(MODEL, { timeoutMs: 60000 });
  sha = m.agora.sha256[0];
  proxy = new Proc('agora proxy', ['--log-level', 'info', 'proxy', '--gateway', gw.baseUrl, '--api-key', key,
                                   '--ca-cert', gw.caPath, '--listen', '127.0.0.1:0']);
  const listening = await proxy.waitForOutput(/listening on (http:\/\/127\.0\.0\.1:\d+\/v1)/);
  clients.gateway = client;
  clients.proxy = new OpenAI({ baseURL: listening[1], apiKey: 'unused-by-the-proxy', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  await proxy?.stop();
});

function assertAgora(agora, id) {
  assert.ok(agora, 'an agora object');
  assert.equal(agora.provider_id, provider.id);
  assert.match(agora.model_sha256, /^[0-9a-f]{64}$/);
  assert.equal(agora.model_sha256, sha);
  assert.equal(agora.generation_id, id);
  assert.equal(agora.attestation, 'standard');
}

function assertUsage(usage, maxCompletion) {
  assert.ok(usage, 'usage present');
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    assert.ok(Number.isInteger(usage[k]) && usage[k] >= 0, `usage.${k} is a count: ${usage[k]}`);
  }
  assert.ok(usage.prompt_tokens > 0);
  assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= maxCompletion);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

test('health and readiness', async () => {
  assert.equal((await gw.raw('GET', '/healthz')).status, 200);
  const r = await gw.raw('GET', '/readyz');
  assert.equal(r.status, 200);
});

// The OpenAI surface, the same through agora proxy (sealed end to end) as
// straight to the gateway; the documented differences (README: the proxy
// holds the key, serves plain HTTP, has no /healthz or /metrics) are
// tested against the gateway alone below.
for (const via of ['gateway', 'proxy']) {
  describe(`through the ${via}`, () => {
    const C = () => clients[via];

    test('models.list contains the model with its hash and capacity', async () => {
      const page = await C().models.list();
      const m = page.data.find((x) => x.id === MODEL);
      assert.ok(m, `model ${MODEL} listed: ${JSON.stringify(page.data)}`);
      assert.equal(m.object, 'model');
      assert.ok(Number.isInteger(m.created));
      assert.equal(typeof m.owned_by, 'string');
      assert.match(m.agora.sha256[0], /^[0-9a-f]{64}$/);
      assert.equal(m.agora.nodes, 1);
      assert.equal(m.agora.slots, 4);
    });

    test('non-streaming completion: OpenAI shape, usage and agora provenance', async () => {
      const before = Math.floor(Date.now() / 1000);
      const r = await C().chat.completions.create({ model: MODEL, messages, max_tokens: 8, seed: 7 });
      assert.equal(typeof r.id, 'string');
      assert.ok(r.id.length > 0);
      assert.equal(r.object, 'chat.completion');
      assert.ok(Number.isInteger(r.created));
      assert.ok(Math.abs(r.created - before) <= 60, `created ${r.created} is about now (${before})`);
      assert.equal(r.model, MODEL);
      assert.equal(r.choices.length, 1);
      const c = r.choices[0];
      assert.equal(c.index, 0);
      assert.equal(c.message.role, 'assistant');
      assert.equal(typeof c.message.content, 'string');
      assert.ok(c.message.content.length > 0, 'some content');
      assert.ok(['stop', 'length'].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
      assertUsage(r.usage, 8);
      assertAgora(r.agora, r.id);
    });

    test('streaming with include_usage: chunk sequence, usage chunk, [DONE]', async () => {
      const stream = await C().chat.completions.create({
        model: MODEL, messages, max_tokens: 8, seed: 7, stream: true, stream_options: { include_usage: true },
      });
      // The SDK's iteration ends normally only when the body ended (after [DONE]).
      const chunks = await collect(stream);
      assert.ok(chunks.length >= 3, `at least a content, a finish and a usage chunk: ${chunks.length}`);
      const { id, created } = chunks[0];
      for (const c of chunks) {
        assert.equal(c.id, id, 'every chunk has the same id');
        assert.equal(c.created, created, 'every chunk has the same created');
        assert.equal(c.object, 'chat.completion.chunk');
        assert.equal(c.model, MODEL);
      }
      assert.equal(chunks[0].choices[0].delta.role, 'assistant', 'the first delta carries the role');
      const finishing = chunks.filter((c) => c.choices.some((ch) => ch.finish_reason));
      assert.equal(finishing.length, 1, 'exactly one chunk has a finish_reason');
      assert.ok(['stop', 'length'].includes(finishing[0].choices[0].finish_reason));
      const last = chunks.at(-1);
      assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
      for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null, 'usage is null before the final chunk');
      assertUsage(last.usage, 8);
      assertAgora(last.agora, id);

      // The same request unstreamed gives the same text and token counts.
      const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
      const unary = await C().chat.completions.create({ model: MODEL, messages, max_tokens: 8, seed: 7 });
      assert.equal(text, unary.choices[0].message.content);
      assert.equal(last.usage.completion_tokens, unary.usage.completion_tokens);
    });

    test('streaming without include_usage: agora rides on the finish chunk, no usage chunk', async () => {
      const chunks = await collect(await C().chat.completions.create({
        model: MODEL, messages, max_tokens: 6, seed: 3, stream: true,
      }));
      assert.ok(chunks.length >= 1);
      const last = chunks.at(-1);
      assert.equal(last.choices.length, 1, 'the last chunk is the finish chunk');
      assert.ok(['stop', 'length'].includes(last.choices[0].finish_reason));
      assertAgora(last.agora, last.id);
      for (const c of chunks) {
        assert.ok(c.usage == null, `no usage without include_usage: ${JSON.stringify(c.usage)}`);
        assert.equal(c.choices.length, 1, 'no choices-less chunk');
      }
      assert.equal(chunks.filter((c) => c.choices[0].finish_reason).length, 1);
    });

    test('max_tokens and max_completion_tokens are respected (finish_reason length)', async () => {
      const r = await C().chat.completions.create({ model: MODEL, messages, max_tokens: 3, seed: 11, temperature: 1 });
      assert.equal(r.choices[0].finish_reason, 'length');
      assert.equal(r.usage.completion_tokens, 3);
      const r2 = await C().chat.completions.create({
        model: MODEL, messages, max_completion_tokens: 2, seed: 11, temperature: 1,
      });
      assert.equal(r2.choices[0].finish_reason, 'length');
      assert.equal(r2.usage.completion_tokens, 2);
    });

    test('seed determinism: same seed and temperature give the same text; another seed differs', async () => {
      const ask = (seed) => C().chat.completions.create({ model: MODEL, messages, max_tokens: 8, seed, temperature: 0.9 });
      const a = await ask(42);
      const b = await ask(42);
      const c = await ask(43);
      assert.equal(a.choices[0].message.content, b.choices[0].message.content);
      assert.equal(a.usage.completion_tokens, b.usage.completion_tokens);
      assert.notEqual(a.choices[0].message.content, c.choices[0].message.content,
                      'a different seed samples differently (the tiny model is near-uniform)');
    });

    test('logprobs with top_logprobs: shape and consistency', async () => {
      const r = await C().chat.completions.create({
        model: MODEL, messages, max_tokens: 4, seed: 5, logprobs: true, top_logprobs: 3,
      });
      const lp = r.choices[0].logprobs;
      assert.ok(lp && Array.isArray(lp.content), `logprobs.content: ${JSON.stringify(lp)}`);
      assert.equal(lp.content.length, r.usage.completion_tokens, 'one entry per completion token');
      const bytes = [];
      for (const e of lp.content) {
        assert.equal(typeof e.token, 'string');
        assert.ok(Number.isFinite(e.logprob) && e.logprob <= 0, `logprob ${e.logprob}`);
        assert.ok(Array.isArray(e.bytes) && e.bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255));
        bytes.push(...e.bytes);
        assert.equal(e.top_logprobs.length, 3);
        for (const t of e.top_logprobs) {
          assert.equal(typeof t.token, 'string');
          assert.ok(Number.isFinite(t.logprob) && t.logprob <= 0);
          assert.ok(Array.isArray(t.bytes));
        }
        for (let i = 1; i < e.top_logprobs.length; ++i) {
          assert.ok(e.top_logprobs[i - 1].logprob >= e.top_logprobs[i].logprob, 'top_logprobs most likely first');
        }
        assert.ok(e.logprob <= e.top_logprobs[0].logprob + 1e-4, 'no token is more likely than the top one');
      }
      // A token may be part of a UTF-8 sequence the reply never completes; the
      // content then holds U+FFFD where decoding the bytes does too.
      assert.equal(Buffer.from(bytes).toString('utf8'), r.choices[0].message.content,
                   'the tokens\' bytes, decoded, spell the content');
    });

    test('streamed logprobs: one entry per token, across the chunks', async () => {
      const chunks = await collect(await C().chat.completions.create({
        model: MODEL, messages, max_tokens: 4, seed: 5, logprobs: true, top_logprobs: 2, stream: true,
        stream_options: { include_usage: true },
      }));
      const entries = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.content ?? []));
      assert.equal(entries.length, chunks.at(-1).usage.completion_tokens);
      for (const e of entries) {
        assert.equal(typeof e.token, 'string');
        assert.ok(e.logprob <= 0);
        assert.equal(e.top_logprobs.length, 2);
      }
      const content = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
      assert.equal(Buffer.from(entries.flatMap((e) => e.bytes)).toString('utf8'), content);
    });

    test('404 NotFoundError for an unknown model', async () => {
      await assert.rejects(C().chat.completions.create({ model: 'no-such-model', messages, max_tokens: 1 }), (e) => {
        assert.ok(e instanceof OpenAI.NotFoundError, `${e}`);
        assert.equal(e.status, 404);
        assert.equal(e.code, 'model_not_found');
        assert.equal(e.param, 'model');
        return true;
      });
    });

    for (const [what, extra, param] of [
      ['temperature out of range', { temperature: 5 }, 'temperature'],
      ['top_p out of range', { top_p: 1.5 }, 'top_p'],
      ['max_tokens below 1', { max_tokens: 0 }, 'max_tokens'],
      ['top_logprobs out of range', { logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
      ['messages empty', { messages: [] }, 'messages'],
      ['an invalid role', { messages: [{ role: 'wizard', content: 'hi' }] }, 'messages[0].role'],
    ]) {
      test(`400 BadRequestError names the parameter: ${what}`, async () => {
        await assert.rejects(C().chat.completions.create({ model: MODEL, messages, max_tokens: 1, ...extra }), (e) => {
          assert.ok(e instanceof OpenAI.BadRequestError, `${e}`);
          assert.equal(e.status, 400);
          assert.equal(e.type, 'invalid_request_error');
          assert.equal(e.param, param, `param of "${e.message}"`);
          return true;
        });
      });
    }

    test('GET /v1/generations/{id}: provider, model hash and usage of an answer', async () => {
      const r = await C().chat.completions.create({ model: MODEL, messages, max_tokens: 4, seed: 9 });
      const g = await C().get(`/generations/${r.id}`);
      assert.equal(g.id, r.id);
      assert.equal(g.provider_id, provider.id);
      assert.equal(g.model_sha256, sha);
      assert.equal(g.model, MODEL);
      assert.equal(g.finish_reason, r.choices[0].finish_reason);
      assert.deepEqual(
        { p: g.usage.prompt_tokens, c: g.usage.completion_tokens, t: g.usage.total_tokens },
        { p: r.usage.prompt_tokens, c: r.usage.completion_tokens, t: r.usage.total_tokens });

      await assert.rejects(C().get('/generations/gen-doesnotexist'), OpenAI.NotFoundError);
    });
  });
}

test('streaming body, raw: every event is JSON and the body ends with data: [DONE]', async () => {
  const forwardedBefore = (await gw.metric('agora_gateway_token_forward_seconds_count')) ?? 0;
  const ttftBefore = (await gw.metric('agora_gateway_ttft_overhead_seconds_count')) ?? 0;
  const r = await gw.raw('POST', '/v1/chat/completions', {
    key, body: { model: MODEL, messages, max_tokens: 4, stream: true, stream_options: { include_usage: true } },
  });
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'], /^text\/event-stream/);
  assert.ok(r.body.endsWith('data: [DONE]\n\n'), `the body ends with [DONE]: ${JSON.stringify(r.body.slice(-200))}`);
  const events = sseData(r.body);
  assert.equal(events.filter((d) => d === '[DONE]').length, 1);
  assert.equal(events.at(-1), '[DONE]');
  for (const d of events.slice(0, -1)) assert.doesNotThrow(() => JSON.parse(d), d);
  const last = JSON.parse(events.at(-2));
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage && last.agora);
  assert.ok(Number.isInteger(last.agora.overhead_us) && last.agora.overhead_us >= 0, 'the gateway reports its overhead');
  // Streaming overheads in /metrics: one time-to-first-token sample, and one
  // forwarding sample per text frame that reached the client (other tests may
  // run concurrently on this gateway, hence at least).
  assert.ok((await gw.metric('agora_gateway_ttft_overhead_seconds_count')) >= ttftBefore + 1);
  assert.ok((await gw.metric('agora_gateway_token_forward_seconds_count')) >= forwardedBefore + 1);
});

test('HSTS on every HTTPS response: JSON, streamed, errors, metrics', async () => {
  const hsts = 'max-age=31536000';
  const plain = await gw.raw('GET', '/v1/models', { key });
  assert.equal(plain.status, 200, plain.body);
  assert.equal(plain.headers['strict-transport-security'], hsts);
  const streamed = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: MODEL, messages, max_tokens: 2, stream: true } });
  assert.equal(streamed.status, 200, streamed.body);
  assert.equal(streamed.headers['strict-transport-security'], hsts);
  const unauthorized = await gw.raw('GET', '/v1/models', { key: 'gk_not-a-key' });
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.headers['strict-transport-security'], hsts);
  const notFound = await gw.raw('GET', '/no/such/path', { key });
  assert.equal(notFound.status, 404);
  assert.equal(notFound.headers['strict-transport-security'], hsts);
  const metrics = await gw.raw('GET', '/metrics');
  assert.equal(metrics.headers['strict-transport-security'], hsts);
});

test('x-agora-overhead-us: the gateway reports its own added time on every completion', async () => {
  const r = await gw.raw('POST', '/v1/chat/completions', { key, body: { model: MODEL, messages, max_tokens: 4 } });
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['x-agora-overhead-us'], /^\d+$/);
  const body = JSON.parse(r.body);
  assert.equal(String(body.agora.overhead_us), r.headers['x-agora-overhead-us']);
  assert.ok(await gw.metric('agora_gateway_overhead_seconds_count') >= 1, 'and counts it in /metrics');
});

test('401 AuthenticationError without a key and with a bad key', async () => {
  const noKey = gw.client('unused', { defaultHeaders: { Authorization: null } });
  await assert.rejects(noKey.chat.completions.create({ model: MODEL, messages, max_tokens: 1 }), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `${e}`);
    assert.equal(e.status, 401);
    assert.equal(e.code, 'missing_api_key');
    return true;
  });
  const badKey = gw.client('gk_this_is_not_a_key');
  await assert.rejects(badKey.chat.completions.create({ model: MODEL, messages, max_tokens: 1 }), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `${e}`);
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    return true;
  });
  await assert.rejects(badKey.models.list(), OpenAI.AuthenticationError);
});

test('413 APIError for a body over max_body_bytes', async () => {
  const small = await Gateway.start({ name: 'gateway max_body_bytes=65536', set: { max_body_bytes: 65536 } });
  try {
    const c = small.client();
    const big = [{ role: 'user', content: 'x'.repeat(100 * 1024) }];
    await assert.rejects(c.chat.completions.create({ model: MODEL, messages: big, max_tokens: 1 }), (e) => {
      assert.ok(e instanceof OpenAI.APIError, `${e}`);
      assert.equal(e.status, 413, `${e}`);
      assert.equal(e.code, 'request_too_large');
      return true;
    });
    // Just under the limit is read (and fails later, for want of a node).
    const fits = [{ role: 'user', content: 'x'.repeat(60 * 1024) }];
    await assert.rejects(c.chat.completions.create({ model: MODEL, messages: fits, max_tokens: 1 }),
                         OpenAI.NotFoundError);
  } finally {
    await small.proc.kill();
  }
});

test('GET /v1/generations/{id} is 404 for another key', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 4, seed: 9 });
  const other = gw.client(await gw.createKey('other'));
  await assert.rejects(other.get(`/generations/${r.id}`), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `${e}`);
    return true;
  });
  await assert.rejects(client.get('/generations/gen-doesnotexist'), OpenAI.NotFoundError);
});

test('a revoked key gets 401 within a bounded wait', async () => {
  const k = await gw.createKey('to-revoke');
  const c = gw.client(k);
  await c.models.list();
  await gw.revokeKey(k);
  await waitFor('the revoked key to be refused', async () => {
    try {
      await c.models.list();
      return false;
    } catch (e) {
      if (e instanceof OpenAI.AuthenticationError) return true;
      throw e;
    }
  }, { timeoutMs: 5000, intervalMs: 50 });
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages, max_tokens: 1 }),
                       OpenAI.AuthenticationError);
  // Other keys are unaffected.
  await client.models.list();
});

test('logs never hold prompts, completions or keys (gateway and node at info level)', async () => {
  const secret = 'zebra-violet-quartz-7731';
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'system', content: `system ${secret}` }, { role: 'user', content: secret }],
    max_tokens: 12, seed: 5,
  });
  const completion = r.choices[0].message.content;
  assert.ok(completion.length > 8, 'a completion long enough to be recognisable');
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: secret }], max_tokens: 4, stream: true,
  });
  for await (const chunk of stream) void chunk;  // eslint-disable-line no-unused-vars
  const procs = [gw.proc, ...gw.nodes];
  for (const p of procs) {
    const logs = p.out + p.err;
    assert.ok(logs.length > 0, `${p.name} logged something`);
    assert.ok(!logs.includes(secret), `${p.name} logs contain the prompt`);
    assert.ok(!logs.includes(completion.trim()), `${p.name} logs contain the completion`);
    assert.ok(!logs.includes(key), `${p.name} logs contain the API key`);
    assert.ok(!logs.includes(provider.token), `${p.name} logs contain the provider token`);
  }
});
