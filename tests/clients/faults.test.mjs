// Faults and hostile input, end to end: real gateway and node processes,
// mostly on the fake engine (deterministic text " tok" per token, adjustable
// speed) so that streams are slow enough to interrupt on purpose. Each test
// starts its own gateway so that one failure cannot cascade.

import assert from 'node:assert/strict';
import https from 'node:https';
import { test } from 'node:test';
import OpenAI from 'openai';
import { Gateway, fakeSha256, sseData, withTimeout } from './harness.mjs';

const messages = [{ role: 'user', content: 'hello' }];

// A gateway with providers `faults` and `providers`, and fake nodes for it.
// `nodes` are --fake specs (strings) or {fake, nodeId, provider (a name)}
// objects; every model they serve is waited for.
async function setup({ set = {}, providers = [], nodes = [] } = {}) {
  const gw = await Gateway.start({ set, providers: ['faults', ...providers] });
  const provider = gw.providers.faults;
  const client = gw.client();
  const started = [];
  const want = new Map();
  for (const n of nodes) {
    const spec = typeof n === 'string' ? { fake: n } : n;
    const p = gw.providers[spec.provider || 'faults'];
    started.push(gw.startNode({ token: p.token, fake: spec.fake, nodeId: spec.nodeId }));
    const model = (spec.fake.match(/(?:^|,)name=([^,]+)/) || [])[1] || 'fake';
    want.set(model, (want.get(model) || 0) + 1);
  }
  for (const [model, count] of want) await gw.waitForModel(model, { nodes: count });
  return { gw, provider, client, nodes: started };
}

// Consumes an SDK stream; calls onChunk(chunk, index) for each chunk.
async function consume(stream, onChunk = () => {}) {
  const chunks = [];
  for await (const c of stream) {
    chunks.push(c);
    await onChunk(c, chunks.length - 1);
  }
  return chunks;
}

const text = (chunks) => chunks.flatMap((c) => c.choices.map((ch) => ch.delta?.content ?? '')).join('');

// A streamed chat completion read raw; `onData(bodySoFar)` runs on every
// piece of the body. Resolves {status, body, complete} when the response
// ends (complete: the chunked body was terminated properly).
function rawStream(gw, body, onData = () => {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(`${gw.baseUrl}/v1/chat/completions`, {
      method: 'POST', ca: gw.ca, agent: false,
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
    }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        b += d;
        onData(b);
      });
      res.on('end', () => resolve({ status: res.statusCode, body: b, complete: res.complete }));
      res.on('error', (e) => resolve({ status: res.statusCode, body: b, complete: false, error: e }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

test('node killed mid-stream: the client gets an error promptly, and the gateway still serves', async () => {
  const slow = 'name=fake,tokens=1000,token-interval-us=20000';
  const { gw, client, nodes: [node] } = await setup({ providers: ['second', 'third'], nodes: [slow] });

  // Through the SDK: the stream's iteration throws.
  let killedAt;
  const stream = await client.chat.completions.create({ model: 'fake', messages, stream: true });
  await assert.rejects(withTimeout('the interrupted stream', consume(stream, async (c, i) => {
    if (i === 2) {
      killedAt = Date.now();
      await node.kill();
    }
  }), 15000), (e) => {
    assert.ok(e instanceof OpenAI.APIError, `an APIError from the SSE error event, not ${e}`);
    assert.equal(typeof e.error?.message, 'string');
    return true;
  });
  assert.ok(killedAt, 'the node was killed mid-stream');
  assert.ok(Date.now() - killedAt < 5000, `the error came ${Date.now() - killedAt} ms after the kill`);

  // Raw: an SSE error event, then the body ends properly, without [DONE].
  const node2 = gw.startNode({ token: gw.providers.second.token, fake: slow });
  await gw.waitForModel('fake');
  let killed = false;
  const killAfterThreeEvents = (bodySoFar) => {
    if (!killed && (bodySoFar.match(/^data: /gm) || []).length >= 3) {
      killed = true;
      node2.signal('SIGKILL');
    }
  };
  const r = await withTimeout('the raw interrupted stream',
                              rawStream(gw, { model: 'fake', messages, stream: true }, killAfterThreeEvents), 15000);
  assert.equal(r.status, 200);
  assert.ok(killed);
  assert.ok(r.complete, `the chunked body is terminated, not cut: ${r.error}`);
  const events = sseData(r.body);
  assert.ok(!events.includes('[DONE]'), 'no [DONE] after a failure');
  const last = JSON.parse(events.at(-1));
  assert.ok(last.error && typeof last.error.message === 'string', `the last event is an error: ${events.at(-1)}`);

  // The gateway still serves.
  gw.startNode({ token: gw.providers.third.token, fake: 'name=fake,tokens=4' });
  await gw.waitForModel('fake');
  const ok = await client.chat.completions.create({ model: 'fake', messages });
  assert.equal(ok.choices[0].message.content, ' tok'.repeat(4));
});

test('node killed before its first token: a second node serves the request transparently', async () => {
  const { gw, client, provider, nodes: [slowNode] } = await setup({
    providers: ['backup'],
    nodes: [{ fake: 'name=fake,tokens=8,slots=2,first-token-us=60000000', nodeId: 'node-slow' }],
  });
  // One unary and one streamed request, both admitted on the slow node.
  const unary = client.chat.completions.create({ model: 'fake', messages });
  const streamed = client.chat.completions.create({
    model: 'fake', messages, stream: true, stream_options: { include_usage: true },
  }).then(consume);
  unary.catch(() => {});
  streamed.catch(() => {});
  await gw.waitForMetric('agora_slots_busy', (v) => v === 2);

  const other = gw.providers.backup;
  assert.notEqual(other.id, provider.id);
  gw.startNode({ token: other.token, fake: 'name=fake,tokens=8', nodeId: 'node-backup' });
  await gw.waitForModel('fake', { nodes: 2 });
  await slowNode.kill();

  const r = await withTimeout('the unary request', unary, 15000);
  assert.equal(r.choices[0].message.content, ' tok'.repeat(8));
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.agora.provider_id, other.id, 'served by the second provider');
  const g = await client.get(`/generations/${r.id}`);
  assert.equal(g.node_id, 'node-backup');

  const chunks = await withTimeout('the streamed request', streamed, 15000);
  assert.equal(text(chunks), ' tok'.repeat(8));
  assert.equal(chunks.at(-1).agora.provider_id, other.id);
  assert.equal(chunks.at(-1).usage.completion_tokens, 8);
  assert.equal(await gw.metric('agora_job_retries_total'), 2);
});

test('client disconnects mid-stream: the slot is freed', async () => {
  const { gw, client } = await setup({ nodes: ['name=fake,tokens=100000,token-interval-us=20000,slots=4'] });
  const controller = new AbortController();
  const stream = await client.chat.completions.create({ model: 'fake', messages, stream: true },
                                                      { signal: controller.signal });
  let busyWhileStreaming;
  await withTimeout('the aborted stream', consume(stream, async (c, i) => {
    if (i === 2) {
      busyWhileStreaming = await gw.metric('agora_slots_busy');
      controller.abort();
    }
  }).catch((e) => {
    if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
  }), 15000);
  assert.equal(busyWhileStreaming, 1, 'one slot busy while streaming');
  await gw.waitForMetric('agora_slots_busy', (v) => v === 0, { timeoutMs: 5000 });
  // And the node serves again at once.
  const r = await client.chat.completions.create({ model: 'fake', messages, max_tokens: 3 });
  assert.equal(r.choices[0].message.content, ' tok'.repeat(3));
});

test('two nodes with different models: each request reaches the right one', async () => {
  const gw = await Gateway.start({ providers: ['alpha', 'beta'] });
  const { alpha: pa, beta: pb } = gw.providers;
  gw.startNode({ token: pa.token, fake: 'name=alpha,tokens=3,token-text= alpha' });
  gw.startNode({ token: pb.token, fake: 'name=beta,tokens=3,token-text= beta' });
  const ma = await gw.waitForModel('alpha');
  const mb = await gw.waitForModel('beta');
  assert.deepEqual(ma.agora.sha256, [fakeSha256('alpha')]);
  assert.deepEqual(mb.agora.sha256, [fakeSha256('beta')]);
  const client = gw.client();
  const want = { alpha: { text: ' alpha'.repeat(3), provider: pa.id }, beta: { text: ' beta'.repeat(3), provider: pb.id } };
  const asks = [];
  for (let i = 0; i < 8; ++i) {
    const model = i % 2 ? 'beta' : 'alpha';
    asks.push(client.chat.completions.create({ model, messages }).then((r) => ({ model, r })));
  }
  for (const { model, r } of await Promise.all(asks)) {
    assert.equal(r.model, model);
    assert.equal(r.choices[0].message.content, want[model].text);
    assert.equal(r.agora.model_sha256, fakeSha256(model));
    assert.equal(r.agora.provider_id, want[model].provider);
  }
});

test('gateway restarted on the same port and data dir: the node reconnects and serves again', async () => {
  const { gw, client, nodes: [node] } = await setup({ nodes: ['name=fake,tokens=4'] });
  assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(4));
  const { code } = await gw.stop();
  assert.equal(code, 0, 'the gateway exits 0 on SIGTERM');

  const gw2 = await Gateway.start({ dataDir: gw.dataDir, port: gw.port, name: 'gateway (restarted)' });
  assert.equal(gw2.port, gw.port);
  assert.equal(gw2.ca, gw.ca, 'the CA survives a restart');
  await gw2.waitForModel('fake', { timeoutMs: 10000 });
  assert.ok(node.running, 'the node kept running and reconnected');
  // The key made before the restart still works.
  const c2 = gw2.client(gw.key);
  assert.equal((await c2.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(4));
});

test('a silent node (SIGSTOP) is evicted after node_timeout_ms, and comes back after SIGCONT', async () => {
  const { gw, client, nodes: [node] } = await setup({ set: { node_timeout_ms: 2000 }, nodes: ['name=fake,tokens=2'] });
  assert.equal(await gw.metric('agora_nodes_connected'), 1);
  node.signal('SIGSTOP');
  try {
    await gw.waitForMetric('agora_nodes_connected', (v) => v === 0, { timeoutMs: 8000 });
    assert.equal((await gw.models()).find((m) => m.id === 'fake'), undefined, 'the model is gone with its node');
  } finally {
    node.signal('SIGCONT');
  }
  await gw.waitForModel('fake', { timeoutMs: 10000 });
  assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(2));
});

test('bad input: malformed JSON, wrong types, n=2 and bad tools are 400s naming the parameter', async () => {
  const { gw, client } = await setup({ nodes: ['name=fake,tokens=2'] });
  const post = (body) => gw.raw('POST', '/v1/chat/completions', { key: gw.key, body,
                                                                  headers: { 'content-type': 'application/json' } });
  for (const body of ['{"model":', 'not json', '[1,2]', '']) {
    const r = await post(body);
    assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${r.body}`);
    assert.equal(JSON.parse(r.body).error.type, 'invalid_request_error');
  }
  for (const [extra, param] of [
    [{ model: 5 }, 'model'],
    [{ messages: 'hi' }, 'messages'],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    [{ max_tokens: 'ten' }, 'max_tokens'],
    [{ max_tokens: 2.5 }, 'max_tokens'],
    [{ temperature: 'hot' }, 'temperature'],
    [{ stream: 'yes' }, 'stream'],
    [{ stop: 5 }, 'stop'],
    [{ seed: 'x' }, 'seed'],
    [{ logprobs: 1 }, 'logprobs'],
  ]) {
    const r = await post(JSON.stringify({ model: 'fake', messages, ...extra }));
    assert.equal(r.status, 400, `${JSON.stringify(extra)} -> ${r.status} ${r.body}`);
    assert.equal(JSON.parse(r.body).error.param, param, `${JSON.stringify(extra)} -> ${r.body}`);
  }
  await assert.rejects(client.chat.completions.create({ model: 'fake', messages, n: 2 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `${e}`);
    assert.equal(e.param, 'n');
    return true;
  });
  const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }];
  await assert.rejects(client.chat.completions.create({ model: 'fake', messages, tools: [{ type: 'retrieval' }] }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `${e}`);
    assert.equal(e.param, 'tools[0].type');
    return true;
  });
  // Valid tools, but this model's node cannot render them: a 503 naming the constraint.
  await assert.rejects(client.chat.completions.create({ model: 'fake', messages, tools }), (e) => {
    assert.equal(e.status, 503, `${e}`);
    assert.match(e.message, /tools: no provider serving this model supports tool calling/);
    return true;
  });
  // None of it hurt the gateway.
  assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(2));
});

test('bad input: a body over the default 4 MiB limit is a 413, and the gateway keeps serving', async () => {
  const { gw, client } = await setup({ nodes: ['name=fake,tokens=2'] });
  const huge = [{ role: 'user', content: 'x'.repeat(5 * 1024 * 1024) }];
  await assert.rejects(client.chat.completions.create({ model: 'fake', messages: huge }), (e) => {
    assert.ok(e instanceof OpenAI.APIError, `${e}`);
    assert.equal(e.status, 413, `${e}`);
    return true;
  });
  assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(2));
});

test('bad input: a client that stalls mid-request is cut off after read_timeout_ms; others are served', async () => {
  const { gw, client } = await setup({ set: { read_timeout_ms: 1000 }, nodes: ['name=fake,tokens=2'] });
  const stall = async (partial) => {
    const s = await gw.connectTls();
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      got += d;
    });
    const closed = new Promise((resolve) => s.on('close', resolve));
    s.on('error', () => {});
    const t0 = Date.now();
    s.write(partial);
    return { closed: closed.then(() => ({ got, ms: Date.now() - t0 })) };
  };
  // Headers whole, body stalled; and headers themselves stalled.
  const body = await stall('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
                           `Authorization: Bearer ${gw.key}\r\nContent-Type: application/json\r\n` +
                           'Content-Length: 100\r\n\r\n{"model":');
  const head = await stall('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor');

  // Meanwhile, others are served.
  for (let i = 0; i < 3; ++i) {
    assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
                 ' tok'.repeat(2));
  }
  for (const [what, s] of [['stalled body', body], ['stalled headers', head]]) {
    const { got, ms } = await withTimeout(`the ${what} connection to close`, s.closed, 10000);
    assert.ok(ms >= 800, `${what}: closed after ${ms} ms, not before the 1000 ms read timeout`);
    assert.ok(ms < 6000, `${what}: closed after ${ms} ms`);
    // A 408 first is polite; a bare close is what read_timeout promises.
    assert.ok(got === '' || /^HTTP\/1\.1 408 /.test(got), `${what}: answered ${JSON.stringify(got.slice(0, 200))}`);
  }
  const health = await gw.raw('GET', '/healthz').catch((e) => ({ status: `no answer (${e.message})` }));
  assert.equal(health.status, 200, `the gateway still serves after the stalled clients (running: ${gw.proc.running})`);
  assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(2));
});

test('hostile requests get their error and never bring the gateway down', async () => {
  const { gw, client } = await setup({ nodes: ['name=fake,tokens=2'] });
  const ws = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-version': '13',
               'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };
  for (const [what, method, target, opts, status] of [
    ['an unknown path', 'GET', '/nope', {}, 404],
    ['an unknown path with a key', 'GET', '/v1/nope', { key: gw.key }, 404],
    ['an unknown generation', 'GET', '/v1/generations/gen-doesnotexist', { key: gw.key }, 404],
    ['a wrong method', 'DELETE', '/v1/models', { key: gw.key }, 405],
    ['a node upgrade without a token', 'GET', '/v1/node', { headers: ws }, 401],
    ['a node upgrade with a bad token', 'GET', '/v1/node',
     { headers: { ...ws, authorization: 'Bearer pt_bogus' } }, 401],
    ['an upgrade on another path', 'GET', '/v1/models', { headers: ws }, 404],
    ['oversized headers', 'GET', '/v1/models', { headers: { 'x-big': 'a'.repeat(20000) } }, 431],
  ]) {
    const r = await gw.raw(method, target, opts).catch((e) => ({ status: `no answer (${e.message})` }));
    assert.equal(r.status, status, `${what}: ${method} ${target} -> ${r.status} ${r.body ?? ''}`);
    const health = await gw.raw('GET', '/healthz').catch((e) => ({ status: `no answer (${e.message})` }));
    assert.equal(health.status, 200, `the gateway still serves after ${what} (running: ${gw.proc.running})`);
  }
  assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(2));
});

// Writes `wire` on the TLS socket `s` in one write and reads back raw
// HTTP/1.1 responses (status line, headers, Content-Length body) in the
// order they come. Resolves {responses, closed} as soon as `enough(responses)`
// holds or the connection closes, whichever is first.
function rawExchange(s, wire, enough = () => false) {
  return new Promise((resolve) => {
    let pending = Buffer.alloc(0);
    const responses = [];
    let closed = false;
    const finish = () => {
      s.off('data', onData);
      s.off('close', onClose);
      resolve({ responses, closed });
    };
    const onData = (d) => {
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) break;
        const lines = pending.subarray(0, end).toString('latin1').split('\r\n');
        const headers = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        const length = Number(headers['content-length'] ?? 0);
        if (pending.length < end + 4 + length) break;
        responses.push({ status: Number(lines[0].split(' ')[1]), headers,
                         body: pending.subarray(end + 4, end + 4 + length).toString('utf8') });
        pending = pending.subarray(end + 4 + length);
      }
      if (enough(responses)) finish();
    };
    const onClose = () => {
      closed = true;
      finish();
    };
    s.on('data', onData);
    s.on('close', onClose);
    s.on('error', () => {});
    s.write(wire);
  });
}

test('a request without exactly one valid Host is a 400 in JSON and the connection closes (RFC 9112 §3.2)',
     async () => {
  // Long timeouts: a close seen here is the gateway's answer, not a timer.
  const gw = await Gateway.start({ set: { idle_timeout_ms: 60000, read_timeout_ms: 60000 }, providers: ['p'] });
  const next = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';  // pipelined: must not be answered
  const upgrade = 'GET /v1/node HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                  'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
                  `Authorization: Bearer ${gw.providers.p.token}\r\n\r\n`;
  for (const [what, wire] of [
    ['no Host', 'GET /healthz HTTP/1.1\r\n\r\n' + next],
    ['two Hosts', 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n' + next],
    ['an invalid Host', 'GET /healthz HTTP/1.1\r\nHost: a/b\r\n\r\n' + next],
    ['a port that is not a number', 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:port\r\n\r\n' + next],
    ['a node upgrade with a valid token and no Host', upgrade],
  ]) {
    const s = await gw.connectTls();
    const { responses, closed } = await withTimeout(`${what}: the answer and the close`,
                                                    rawExchange(s, wire, (r) => r.length >= 2), 10000);
    s.destroy();
    assert.deepEqual(responses.map((r) => r.status), [400], `${what}: ${JSON.stringify(responses)}`);
    const [r] = responses;
    assert.ok(closed, `${what}: the connection stays open after the 400`);
    assert.equal(r.headers.connection, 'close', what);
    assert.match(r.headers['content-type'], /^application\/json/, what);
    const body = JSON.parse(r.body);
    assert.equal(body.error.type, 'invalid_request_error', what);
    assert.equal(body.error.code, 'bad_request', what);
    assert.match(body.error.message, /Host/, what);
  }
  // HTTP/1.0 may omit Host.
  const s = await gw.connectTls();
  const old = await withTimeout('an HTTP/1.0 request without Host', rawExchange(s, 'GET /healthz HTTP/1.0\r\n\r\n'),
                                10000);
  s.destroy();
  assert.deepEqual(old.responses.map((r) => [r.status, r.body]), [[200, '{"status":"ok"}']]);
  assert.equal((await gw.raw('GET', '/healthz')).status, 200, 'the gateway still serves');
});

test('pipelining: 40 KB of requests in one write are all answered, in order, at once', async () => {
  // Long timeouts: a stall would show as a missing answer well before them.
  const gw = await Gateway.start({ set: { idle_timeout_ms: 30000, read_timeout_ms: 30000 } });
  // /healthz, with a 404 marker naming its index every 50th request so that
  // the order of the answers is checked, not only their number.
  const expected = [];
  let wire = '';
  for (let i = 0; wire.length < 40 * 1024; ++i) {
    const target = i % 50 === 49 ? `/nope-${i}` : '/healthz';
    wire += `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    expected.push(target === '/healthz' ? [200, '{"status":"ok"}'] : [404, `Unknown path ${target}`]);
  }
  const s = await gw.connectTls();
  const t0 = Date.now();
  const { responses, closed } = await withTimeout(
    `${expected.length} pipelined answers`, rawExchange(s, wire, (r) => r.length >= expected.length), 10000);
  const ms = Date.now() - t0;
  assert.ok(!closed, `the connection closed after ${responses.length} of ${expected.length} answers`);
  assert.equal(responses.length, expected.length);
  const got = responses.map((r) => [r.status, r.status === 200 ? r.body : JSON.parse(r.body).error.message]);
  assert.deepEqual(got, expected);
  assert.ok(ms < 10000, `answered in ${ms} ms`);
  // The connection still serves what comes next.
  const more = await withTimeout('one more request on the connection',
                                 rawExchange(s, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', (r) => r.length >= 1),
                                 10000);
  s.destroy();
  assert.deepEqual(more.responses.map((r) => r.status), [200]);
});

test('a node with a bad token is refused and exits non-zero; the gateway carries on', async () => {
  const { gw, client } = await setup({ nodes: ['name=fake,tokens=2'] });
  // --auth-grace-ms 0: refuse at once (by default a refused token is retried
  // for 10 s, in case the provider was registered a moment ago).
  const bad = gw.startNode({ token: 'pt_bogus', fake: 'name=other', name: 'node with a bad token',
                            args: ['--auth-grace-ms', '0'] });
  const { code } = await withTimeout('the refused node to exit', bad.exited, 10000);
  assert.notEqual(code, 0);
  assert.match(bad.err, /token/, 'it says why');
  const health = await gw.raw('GET', '/healthz').catch((e) => ({ status: `no answer (${e.message})` }));
  assert.equal(health.status, 200, `the gateway still serves (running: ${gw.proc.running})`);
  assert.equal((await client.chat.completions.create({ model: 'fake', messages })).choices[0].message.content,
               ' tok'.repeat(2));
});

test('no capacity: 503 with Retry-After after queue_timeout_ms; /readyz follows the nodes', async () => {
  const gw = await Gateway.start({ set: { queue_timeout_ms: 300 }, providers: ['faults'] });
  const client = gw.client();
  assert.equal((await gw.raw('GET', '/readyz')).status, 503, 'not ready without nodes');
  gw.startNode({ token: gw.providers.faults.token, fake: 'name=fake,slots=1,tokens=1000,token-interval-us=20000' });
  await gw.waitForModel('fake');
  assert.equal((await gw.raw('GET', '/readyz')).status, 200, 'ready with a node');

  const controller = new AbortController();
  const busy = await client.chat.completions.create({ model: 'fake', messages, stream: true },
                                                    { signal: controller.signal });
  const first = await busy[Symbol.asyncIterator]().next();
  assert.equal(first.done, false, 'the only slot is taken');
  const t0 = Date.now();
  const r = await gw.raw('POST', '/v1/chat/completions', { key: gw.key, body: { model: 'fake', messages } });
  const waited = Date.now() - t0;
  assert.equal(r.status, 503, r.body);
  assert.ok(Number(r.headers['retry-after']) >= 1, `Retry-After: ${r.headers['retry-after']}`);
  assert.ok(waited >= 250 && waited < 5000, `answered after ${waited} ms (queue_timeout_ms=300)`);
  await assert.rejects(client.chat.completions.create({ model: 'fake', messages }), (e) => {
    assert.ok(e instanceof OpenAI.APIError && e.status === 503, `${e}`);
    return true;
  });
  controller.abort();
  await gw.waitForMetric('agora_slots_busy', (v) => v === 0);
  assert.equal((await client.chat.completions.create({ model: 'fake', messages, max_tokens: 2 }))
    .choices[0].message.content, ' tok'.repeat(2));
});

test('50 concurrent requests on a 4-slot node all succeed (queueing)', async () => {
  const { gw, client } = await setup({ nodes: ['name=fake,tokens=16,slots=4,token-interval-us=2000'] });
  let maxBusy = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      maxBusy = Math.max(maxBusy, (await gw.metric('agora_slots_busy')) ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  const results = await withTimeout('50 concurrent requests', Promise.allSettled(
    Array.from({ length: 50 }, (_, i) => (i % 2
      ? client.chat.completions.create({ model: 'fake', messages })
      : client.chat.completions.create({ model: 'fake', messages, stream: true }).then(consume)))), 60000);
  sampling = false;
  await sampler;
  const failed = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
  assert.deepEqual(failed, [], 'every request succeeded');
  for (const [i, r] of results.entries()) {
    const t = i % 2 ? r.value.choices[0].message.content : text(r.value);
    assert.equal(t, ' tok'.repeat(16));
  }
  assert.ok(maxBusy <= 4, `never more than the node's 4 slots busy (saw ${maxBusy})`);
  await gw.waitForMetric('agora_slots_busy', (v) => v === 0);
  assert.equal(await gw.metric('agora_queue_depth'), 0);
});

test('node SIGTERM drains: an in-flight stream completes normally, then the node exits 0', async () => {
  const { gw, client, nodes: [node] } = await setup({ nodes: ['name=fake,tokens=30,token-interval-us=20000'] });
  const stream = await client.chat.completions.create({
    model: 'fake', messages, stream: true, stream_options: { include_usage: true },
  });
  const chunks = await withTimeout('the draining stream', consume(stream, (c, i) => {
    if (i === 1) node.signal('SIGTERM');
  }), 15000);
  assert.equal(text(chunks), ' tok'.repeat(30));
  assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason === 'stop').length, 1);
  assert.equal(chunks.at(-1).usage.completion_tokens, 30, 'the usage chunk (just before [DONE]) arrived');
  const { code, signal } = await withTimeout('the node to exit', node.exited, 10000);
  assert.equal(signal, null);
  assert.equal(code, 0);
  await gw.waitForMetric('agora_nodes_connected', (v) => v === 0);
});
