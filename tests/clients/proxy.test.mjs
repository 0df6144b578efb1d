// End-to-end encryption through `agora proxy`, with the official openai SDK:
// the same answers as without encryption (real node, tiny model, greedy),
// the gateway never holds a prompt in its logs, files or live memory (the
// node does: the search works), and a malicious gateway — a TLS
// man-in-the-middle with the gateway's own certificate, standing between
// the proxy and the gateway — cannot truncate, reorder, alter or replay
// without the client or the node noticing.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { Gateway, Proc, agora, ensureTinyModel, startGatewayMitm, waitFor } from './harness.mjs';

const MODEL = 'tiny';
let gw;
let plain;  // SDK straight to the gateway (no encryption)
let key;
let realNode;
let slowNode;

// Starts `agora proxy` in front of `url` (the gateway, or the MITM).
async function startProxy(url, extra = []) {
  const p = new Proc('agora proxy', ['--log-level', 'info', 'proxy', '--gateway', url, '--api-key', key,
                                     '--ca-cert', gw.caPath, '--listen', '127.0.0.1:0', ...extra]);
  const m = await p.waitForOutput(/listening on (http:\/\/127\.0\.0\.1:\d+\/v1)/);
  return { proc: p, client: new OpenAI({ baseURL: m[1], apiKey: 'unused-by-the-proxy', maxRetries: 0, timeout: 60000 }) };
}

let proxy;

before(async () => {
  const model = await ensureTinyModel();
  gw = await Gateway.start({ providers: ['e2e'] });
  key = await gw.createKey('e2e');
  plain = gw.client(key);
  realNode = gw.startNode({ token: gw.providers.e2e.token, model, modelName: MODEL, slots: 2, nodeId: 'node-real' });
  slowNode = gw.startNode({ token: gw.providers.e2e.token, fake: 'name=slow,tokens=50,token-interval-us=40000',
                            nodeId: 'node-slow' });
  await gw.waitForModel(MODEL, { timeoutMs: 60000 });
  await gw.waitForModel('slow');
  proxy = await startProxy(gw.baseUrl);
});

const ask = (content) => ({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 12, temperature: 0, seed: 3 });

test('through the proxy, unary and streamed answers are exactly those without encryption', async () => {
  const direct = await plain.chat.completions.create(ask('Say something about the sea'));
  const { data: sealed, response } = await proxy.client.chat.completions.create(ask('Say something about the sea'))
    .withResponse();
  // The rate-limit headers come through, as they would straight from the gateway.
  assert.match(response.headers.get('x-ratelimit-remaining-requests') ?? '', /^\d+$/);
  assert.match(response.headers.get('x-ratelimit-limit-tokens') ?? '', /^\d+$/);
  assert.equal(sealed.choices[0].message.content, direct.choices[0].message.content);
  assert.equal(sealed.choices[0].finish_reason, direct.choices[0].finish_reason);
  // (The second request may reuse the first's KV cache: cached_tokens differ.)
  const counts = (u) => [u.prompt_tokens, u.completion_tokens, u.total_tokens];
  assert.deepEqual(counts(sealed.usage), counts(direct.usage));
  assert.equal(sealed.agora.node_id, 'node-real');
  assert.equal(sealed.agora.provider_id, gw.providers.e2e.id);
  // The gateway's read endpoints work through the proxy: the generation its
  // own answer names, the model list, the providers.
  const gen = await proxy.client.get(`/generations/${sealed.id}`);
  assert.equal(gen.id, sealed.id);
  assert.equal(gen.model, MODEL);
  assert.equal(gen.provider_id, gw.providers.e2e.id);
  await assert.rejects(proxy.client.get('/generations/gen-doesnotexist'), OpenAI.NotFoundError);
  assert.ok((await proxy.client.models.list()).data.some((m) => m.id === MODEL));
  const providers = await (await fetch(`${proxy.client.baseURL}/providers?model=${MODEL}`)).json();
  assert.ok(providers.data.some((n) => n.id === 'node-real'));

  let text = '';
  let finish;
  let usage;
  const stream = await proxy.client.chat.completions.create({ ...ask('Say something about the sea'), stream: true,
                                                               stream_options: { include_usage: true } });
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, direct.choices[0].message.content);
  assert.equal(finish, direct.choices[0].finish_reason);
  assert.deepEqual(counts(usage), counts(direct.usage));
});

test('the proxy fails closed: nothing is sent when it cannot seal', async () => {
  // An unknown model is answered as the gateway answers it.
  const unknown = (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found' && e.param === 'model';
  await assert.rejects(plain.chat.completions.create({ ...ask('x'), model: 'no-such-model' }), unknown);
  await assert.rejects(proxy.client.chat.completions.create({ ...ask('x'), model: 'no-such-model' }), unknown);
  await assert.rejects(proxy.client.chat.completions.create({ ...ask('x'), conversation_id: 'c1' }),
                       (e) => e instanceof OpenAI.BadRequestError);
  // Confidential needs the proxy to verify GPU evidence itself: without a
  // pinned root it refuses (tests/clients/attestation.test.mjs has the rest).
  await assert.rejects(proxy.client.chat.completions.create({ ...ask('x'), confidential: true }),
                       (e) => e instanceof OpenAI.BadRequestError && e.code === 'attestation_unverifiable');
  await assert.rejects(agora(['proxy', '--gateway', gw.baseUrl, '--api-key', key, '--confidential']),
                       /--confidential needs --nvidia-root/);
});

// Every readable mapping of a live process, searched for `needle`.
function memoryHolds(pid, needle) {
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n');
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  const want = Buffer.from(needle);
  const chunk = Buffer.alloc(1 << 20);
  let found = false;
  let scanned = 0;
  try {
    for (const line of maps) {
      const m = line.match(/^([0-9a-f]+)-([0-9a-f]+) r/);
      if (!m || line.includes('[vvar]') || line.includes('[vsyscall]')) continue;
      let pos = parseInt(m[1], 16);
      const end = parseInt(m[2], 16);
      let carry = Buffer.alloc(0);
      while (pos < end && !found) {
        const len = Math.min(chunk.length, end - pos);
        let n;
        try {
          n = fs.readSync(fd, chunk, 0, len, pos);
        } catch {
          break;  // an unreadable range
        }
        if (n <= 0) break;
        scanned += n;
        const view = Buffer.concat([carry, chunk.subarray(0, n)]);
        if (view.includes(want)) found = true;
        carry = view.subarray(Math.max(0, view.length - want.length));
        pos += n;
      }
      if (found) break;
    }
  } finally {
    fs.closeSync(fd);
  }
  assert.ok(scanned > 1 << 20, `scanned ${scanned} bytes of process ${pid}`);
  return found;
}

// The canary runs through every part of a request the gateway must not see:
// messages, a tool's description and parameters, an assistant's call and a
// tool's result.
function canaryRequest(canary) {
  return {
    model: MODEL, max_tokens: 3500, ignore_eos: true, stream: true,
    tools: [{ type: 'function', function: { name: 'lookup', description: `find ${canary}`,
      parameters: { type: 'object', properties: { q: { type: 'string', description: `like ${canary}` } } } } }],
    tool_choice: 'none',  // text, so ignore_eos keeps it running (no grammar)
    messages: [{ role: 'system', content: `keep ${canary}` }, { role: 'user', content: `say ${canary}` },
               { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
                 function: { name: 'lookup', arguments: JSON.stringify({ q: canary }) } }] },
               { role: 'tool', tool_call_id: 'call_1', content: `result ${canary}` }],
  };
}

test('the gateway never sees plaintext: a canary (messages, tools, calls, results) is in no log, file or byte of its memory; the node has it', async () => {
  const canary = `CANARY${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  // A long answer keeps the request (and its messages) alive in the real
  // node's engine while both processes are searched.
  const stream = await proxy.client.chat.completions.create(canaryRequest(canary));
  const it = stream[Symbol.asyncIterator]();
  assert.ok((await it.next()).value, 'the answer began');
  assert.ok(memoryHolds(realNode.pid, canary), 'the node decrypted the prompt (so the search works)');
  assert.ok(!memoryHolds(gw.proc.pid, canary), 'the canary is in the gateway\'s memory');
  for (let r = await it.next(); !r.done; r = await it.next()) { /* drain */ }
  await waitFor('the generation record', async () => fs.existsSync(path.join(gw.dataDir, 'agora.db-wal')));
  const files = fs.readdirSync(gw.dataDir, { recursive: true }).map((f) => path.join(gw.dataDir, String(f)))
    .filter((f) => fs.statSync(f).isFile());
  for (const f of files) assert.ok(!fs.readFileSync(f).toString('latin1').includes(canary), `${f} holds the canary`);
  assert.ok(!`${gw.proc.out}${gw.proc.err}`.includes(canary), 'the gateway logs hold the canary');
  assert.ok(!`${proxy.proc.out}${proxy.proc.err}`.includes(canary), 'the proxy logs hold the canary');
});

// ---- a malicious gateway

const startMitm = () => startGatewayMitm(gw, { only: '/v1/chat/completions' });

const sseEvents = (text) => text.split('\n\n').filter(Boolean);
const isSealed = (e) => e.includes('"agora_sealed"');

test('a malicious gateway cannot truncate, reorder, alter or replay a sealed exchange unnoticed', async () => {
  const mitm = await startMitm();
  const via = await startProxy(mitm.url);
  const req = ask('Tell me about the moon');
  // Untouched, the MITM is invisible.
  assert.ok((await via.client.chat.completions.create(req)).choices[0].message.content.length > 0);

  const refused = async (rewrite, stream) => {
    mitm.state.rewrite = rewrite;
    try {
      if (!stream) {
        await assert.rejects(via.client.chat.completions.create(req),
                             (e) => e instanceof OpenAI.APIError && e.status === 502 && /sealed answer is not valid/.test(e.message));
      } else {
        await assert.rejects((async () => {
          for await (const c of await via.client.chat.completions.create({ ...req, stream: true })) void c;
        })(), (e) => /sealed answer is not valid/.test(String(e.message ?? e)));
      }
    } finally {
      mitm.state.rewrite = null;
    }
  };
  const unaryChunks = (f) => (text) => {
    const j = JSON.parse(text);
    j.agora_sealed.chunks = f(j.agora_sealed.chunks);
    return JSON.stringify(j);
  };
  // Unary: drop the final chunk, swap two, flip a ciphertext byte.
  await refused(unaryChunks((c) => c.slice(0, -1)), false);
  await refused(unaryChunks((c) => (c.length > 2 ? [c[1], c[0], ...c.slice(2)] : c.reverse())), false);
  await refused(unaryChunks((c) => c.map((x, i) => (i === 0 ? { ...x, ciphertext: flip(x.ciphertext) } : x))), false);
  // Streams: cut before the final sealed chunk, reorder, replay a chunk.
  const streamEvents = (f) => (text) => {
    const events = sseEvents(text);
    const sealed = events.filter(isSealed);
    return `${f(events, sealed).join('\n\n')}\n\n`;
  };
  await refused(streamEvents((ev, s) => ev.filter((e) => e !== s[s.length - 1])), true);
  await refused(streamEvents((ev, s) => ev.map((e) => (e === s[0] ? s[1] : e === s[1] ? s[0] : e))), true);
  await refused(streamEvents((ev, s) => ev.flatMap((e) => (e === s[1] ? [s[0], e] : [e]))), true);

  // Replay: the sealed request the proxy sent, sent again by the gateway.
  const sent = mitm.state.seen.filter((x) => x.url === '/v1/chat/completions').at(-1);
  assert.ok(JSON.parse(sent.body).agora_sealed, 'the proxy sent a sealed request');
  assert.ok(!sent.body.toString().includes('moon'), 'the gateway saw no plaintext');
  const again = await gw.raw('POST', '/v1/chat/completions', { key, body: sent.body.toString(),
                                                              headers: { 'content-type': 'application/json' } });
  assert.equal(again.status, 400, again.body);
  assert.match(JSON.parse(again.body).error.message, /replayed/);
  await via.proc.stop();
});

function flip(b64) {
  const raw = Buffer.from(b64, 'base64');
  raw[raw.length - 1] ^= 1;
  return raw.toString('base64');
}

test('a sealed request is refused on any node it was not sealed to, and the gateway cannot route it elsewhere', async () => {
  // Sealed for node-real only: another recipient list in plaintext is
  // simply a different (unsealable) request.
  const mitm = await startMitm();
  const via = await startProxy(mitm.url, ['--candidates', '1']);
  await via.client.chat.completions.create(ask('hello'));
  const sent = JSON.parse(mitm.state.seen.filter((x) => x.url === '/v1/chat/completions').at(-1).body);
  assert.equal(sent.agora_sealed.recipients.length, 1);
  const [only] = sent.agora_sealed.recipients;
  // Relabel the share to another node: that node cannot open it.
  const other = only.node_id === 'node-real' ? 'node-slow' : 'node-real';
  const forged = { ...sent, model: other === 'node-slow' ? 'slow' : MODEL,
                   agora_sealed: { ...sent.agora_sealed, recipients: [{ ...only, node_id: other }] } };
  const r = await gw.raw('POST', '/v1/chat/completions', { key, body: forged });
  assert.equal(r.status, 400, r.body);
  assert.match(JSON.parse(r.body).error.message, /does not open|not among the request's recipients/);
  await via.proc.stop();
});
