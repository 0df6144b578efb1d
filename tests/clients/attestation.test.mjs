// Attestation and routing by trust, end to end: real `agora gateway` and
// `agora node` processes, the official openai SDK, and `agora proxy`.
// A test PKI made here (tests/attest/test_attester.cpp) stands in for
// NVIDIA's attestation service and for Google Play Integrity: the gateway
// pins its NRAS root and Play Integrity keys; each attested node runs
// agora-test-attester as its --attestation-cmd.
//
//   gpu    the real tiny model, GPU TEE evidence  -> confidential
//   phone  fake engine, Play Integrity evidence   -> verified
//   plain  fake engine, no evidence               -> standard
//
// Verdicts here last 6 s and are renewed 3 s before they end, so renewal,
// failure and expiry all happen within the test. A control file per node
// makes its attestation command fail or hang.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { createHash, randomBytes } from 'node:crypto';
import { Gateway, Proc, agora, ensureTinyModel, startGatewayMitm, tempDir, waitFor } from './harness.mjs';
import { RecordingNode } from './recording_node.mjs';

const ATTESTER = process.env.AGORA_TEST_ATTESTER ||
  new URL('../../build/tests/attest/agora-test-attester', import.meta.url).pathname;
const MODEL = 'tiny';

let gw;
let pki;
let client;
const control = {};  // node -> its control file

function attest(args) {
  return new Promise((resolve, reject) => {
    execFile(ATTESTER, args, { timeout: 30000 }, (error, stdout, stderr) =>
      (error ? reject(new Error(`${ATTESTER} ${args.join(' ')}: ${error.message}\n${stderr}`)) : resolve(stdout)));
  });
}

async function providers(query) {
  const r = await gw.raw('GET', `/v1/providers?model=${MODEL}${query}`, { key: gw.key });
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body).data;
}

const byId = (list) => Object.fromEntries(list.map((n) => [n.id, n]));

async function startProxy(extra, url = gw.baseUrl) {
  const p = new Proc('agora proxy', ['--log-level', 'info', 'proxy', '--gateway', url, '--api-key', gw.key,
                                     '--ca-cert', gw.caPath, '--listen', '127.0.0.1:0', ...extra]);
  const m = await p.waitForOutput(/listening on (http:\/\/127\.0\.0\.1:\d+\/v1)/);
  return { proc: p, client: new OpenAI({ baseURL: m[1], apiKey: 'unused', maxRetries: 0, timeout: 60000 }) };
}

const ask = (extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content: 'Tell me about the sea' }],
                               max_tokens: 8, temperature: 0, seed: 1, ...extra });

async function status503(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, `${e}`);
    return e;
  }
  assert.fail('the request was served');
}

before(async () => {
  const model = await ensureTinyModel();
  pki = await tempDir('agora-pki-');
  await attest(['init', pki]);
  gw = await Gateway.start({
    providers: ['gpu', 'phone', 'plain'],
    set: {
      nvidia_root_cert: path.join(pki, 'nvidia-root.pem'),
      play_integrity_decryption_key: path.join(pki, 'play-decryption.b64'),
      play_integrity_verification_key: path.join(pki, 'play-verification.b64'),
      play_integrity_package: fs.readFileSync(path.join(pki, 'play-package'), 'utf8').trim(),
      play_integrity_cert_sha256: fs.readFileSync(path.join(pki, 'play-cert-digest'), 'utf8').trim(),
      attestation_lifetime_ms: 6000,
      attestation_refresh_ms: 3000,
      attestation_timeout_ms: 30000,
      attestation_retry_ms: 300,
    },
  });
  client = gw.client();
  for (const n of ['gpu', 'phone']) control[n] = path.join(pki, `${n}.control`);
  gw.startNode({ token: gw.providers.gpu.token, model, modelName: MODEL, slots: 2, nodeId: 'node-gpu',
                 args: ['--attestation-kind', 'nvidia_cc',
                        '--attestation-cmd', `${ATTESTER} nvidia ${pki} --control ${control.gpu}`] });
  gw.startNode({ token: gw.providers.phone.token, fake: `name=${MODEL},tokens=4`, nodeId: 'node-phone',
                 args: ['--attestation-kind', 'play_integrity',
                        '--attestation-cmd', `${ATTESTER} play ${pki} --control ${control.phone}`] });
  gw.startNode({ token: gw.providers.plain.token, fake: `name=${MODEL},tokens=4`, nodeId: 'node-plain' });
  await gw.waitForModel(MODEL, { nodes: 3, timeoutMs: 60000 });
  await waitFor('both attested nodes verified', async () => {
    const n = byId(await providers(''));
    return n['node-gpu']?.attestation.level === 'confidential' && n['node-phone']?.attestation.level === 'verified';
  }, { timeoutMs: 30000 });
});

test('levels, verdicts and evidence show in /v1/providers, /v1/models and agora providers list', async () => {
  const all = byId(await providers(''));
  assert.equal(all['node-plain'].attestation.level, 'standard');
  assert.equal(all['node-plain'].attestation.evidence, null);
  const gpu = all['node-gpu'].attestation;
  assert.equal(gpu.kind, 'nvidia_cc');
  assert.equal(gpu.status, 'verified');
  assert.match(gpu.nonce, /^[0-9a-f]{64}$/);
  assert.ok(gpu.expires_ms > gpu.verified_ms && gpu.expires_ms - gpu.verified_ms <= 6000, JSON.stringify(gpu));
  assert.ok(JSON.parse(gpu.evidence)[0][0] === 'JWT', 'the EAT bundle, for clients to verify');
  assert.equal(all['node-phone'].attestation.kind, 'play_integrity');

  assert.deepEqual(Object.keys(byId(await providers('&confidential=true'))), ['node-gpu']);
  assert.deepEqual(Object.keys(byId(await providers('&privacyLevel=verified'))).sort(), ['node-gpu', 'node-phone']);

  // The limit keeps a large fleet's listing (and its evidence) bounded.
  assert.equal((await providers('&limit=1')).length, 1);
  assert.equal((await gw.raw('GET', `/v1/providers?model=${MODEL}&limit=0`, { key: gw.key })).status, 400);
  // Operators see levels and outcomes in /metrics.
  assert.equal(await gw.metric('agora_nodes_by_attestation', { level: 'confidential' }), 1);
  assert.equal(await gw.metric('agora_nodes_by_attestation', { level: 'verified' }), 1);
  assert.equal(await gw.metric('agora_nodes_by_attestation', { level: 'standard' }), 1);
  assert.ok((await gw.metric('agora_attestations_total', { result: 'verified' })) >= 2);

  const m = (await gw.models()).find((x) => x.id === MODEL);
  assert.deepEqual([m.agora.capacity.standard.nodes, m.agora.capacity.verified.nodes, m.agora.capacity.confidential.nodes],
                   [3, 2, 1]);
  assert.equal(m.agora.capacity.confidential.slots, 2);

  const listed = await waitFor('providers list to show the verdicts', async () => {
    const { stdout } = await agora(['providers', 'list', '--data-dir', gw.dataDir, '--json']);
    const nodes = JSON.parse(stdout).flatMap((p) => p.nodes);
    const n = Object.fromEntries(nodes.map((x) => [x.node_id, x.attestation]));
    return n['node-gpu']?.level === 'confidential' && n['node-phone']?.level === 'verified' ? n : null;
  });
  assert.equal(listed['node-gpu'].status, 'verified');
  assert.ok(listed['node-gpu'].expires_ms > Date.now() - 10000);
  assert.equal(listed['node-plain'].level, 'standard');
  const { stdout: table } = await agora(['providers', 'list', '--data-dir', gw.dataDir]);
  assert.match(table, /ATTESTATION/);
  assert.match(table, /confidential \(nvidia_cc, expires \d{4}-/);
});

test('verified and confidential requests reach only nodes with the matching live verdict', async () => {
  const seen = { standard: new Set(), verified: new Set(), confidential: new Set() };
  for (let i = 0; i < 12; ++i) {
    const c = await client.chat.completions.create(ask({ confidential: true }));
    assert.equal(c.agora.attestation, 'confidential');
    assert.equal(c.agora.provider_id, gw.providers.gpu.id);
    seen.confidential.add(c.agora.provider_id);
    const v = await client.chat.completions.create(ask({ routing_preferences: { privacyLevel: 'verified' } }));
    assert.ok(['verified', 'confidential'].includes(v.agora.attestation), v.agora.attestation);
    assert.notEqual(v.agora.provider_id, gw.providers.plain.id);
    seen.verified.add(v.agora.provider_id);
    const s = await client.chat.completions.create(ask());
    seen.standard.add(s.agora.provider_id);
  }
  assert.equal(seen.confidential.size, 1);
  // The generation record keeps the level used.
  const c = await client.chat.completions.create(ask({ confidential: true }));
  const g = await waitFor('the generation record', async () => {
    const r = await gw.raw('GET', `/v1/generations/${c.agora.generation_id}`, { key: gw.key });
    return r.status === 200 ? JSON.parse(r.body) : null;
  });
  assert.equal(g.attestation, 'confidential');
  // Data residency: no node in that region, and the answer says so.
  const e = await status503(client.chat.completions.create(ask({ routing_preferences: { region: ['mars'] } })));
  assert.equal(e.status, 503);
  assert.match(e.message, /routing_preferences\.region.*mars/);
});

test('agora proxy --confidential verifies the GPU evidence itself before sealing', async () => {
  const proxy = await startProxy(['--confidential', '--nvidia-root', path.join(pki, 'nvidia-root.pem')]);
  const direct = await client.chat.completions.create(ask({ confidential: true }));
  const sealed = await proxy.client.chat.completions.create(ask());
  assert.equal(sealed.agora.attestation, 'confidential');
  assert.equal(sealed.agora.node_id, 'node-gpu');
  assert.equal(sealed.choices[0].message.content, direct.choices[0].message.content);
  await proxy.proc.stop();

  // A proxy pinning another root trusts none of this gateway's evidence,
  // whatever the gateway says: nothing is sent.
  const foreign = await tempDir('agora-pki-foreign-');
  await attest(['init', foreign]);
  const wary = await startProxy(['--confidential', '--nvidia-root', path.join(foreign, 'nvidia-root.pem')]);
  const e = await status503(wary.client.chat.completions.create(ask()));
  assert.equal(e.status, 503);
  assert.match(e.message, /GPU TEE evidence this proxy verified/);
  await wary.proc.stop();
});

test('a lying gateway cannot get a confidential request sealed to a key the evidence does not bind', async () => {
  const mitm = await startGatewayMitm(gw, { only: '/v1/providers' });
  const proxy = await startProxy(['--confidential', '--nvidia-root', path.join(pki, 'nvidia-root.pem')], mitm.url);
  const lies = {
    'its own identity key': (n) => { n.identity_key = randomBytes(32).toString('hex'); },
    'evidence verified two days ago': (n) => { n.attestation.verified_ms = Date.now() - 2 * 86400 * 1000; },
    'another challenge\'s nonce': (n) => { n.attestation.nonce = randomBytes(32).toString('hex'); },
    'the GPU node\'s evidence on a standard node': null,  // below
  };
  for (const [lie, edit] of Object.entries(lies)) {
    mitm.state.rewrite = (text) => {
      const body = JSON.parse(text);
      if (edit) {
        for (const n of body.data) edit(n);
      } else {
        // The plain node, dressed up with the GPU node's verdict and evidence.
        const gpu = body.data.find((n) => n.id === 'node-gpu');
        body.data = [{ ...body.data[0], id: 'node-plain', identity_key: randomBytes(32).toString('hex'), attestation: gpu.attestation }];
      }
      return JSON.stringify(body);
    };
    const before = mitm.state.seen.filter((x) => x.url === '/v1/chat/completions').length;
    const e = await status503(proxy.client.chat.completions.create(ask({ messages: [{ role: 'user', content: lie }] })));
    assert.equal(e.status, 503, lie);
    assert.match(e.message, /GPU TEE evidence this proxy verified/, lie);
    assert.equal(mitm.state.seen.filter((x) => x.url === '/v1/chat/completions').length, before, `${lie}: nothing was sent`);
  }
  // The same path, unaltered, works (the refusals were about the lies).
  mitm.state.rewrite = null;
  const ok = await proxy.client.chat.completions.create(ask());
  assert.equal(ok.agora.node_id, 'node-gpu');
  await proxy.proc.stop();
});

test('a failed attestation drops the node to standard at once, and it recovers with fresh evidence', async () => {
  fs.writeFileSync(control.phone, 'fail\n');
  await waitFor('the phone node to lose its verdict', async () => {
    const n = byId(await providers(''))['node-phone'];
    return n.attestation.level === 'standard' && n.attestation.status === 'failed' ? n : null;
  }, { timeoutMs: 15000 });
  assert.deepEqual(Object.keys(byId(await providers('&privacyLevel=verified'))), ['node-gpu']);
  for (let i = 0; i < 6; ++i) {
    const v = await client.chat.completions.create(ask({ routing_preferences: { privacyLevel: 'verified' } }));
    assert.equal(v.agora.provider_id, gw.providers.gpu.id);
  }
  // The audit trail records why (it is written by the store's writer, soon after).
  const entry = await waitFor('the attestation failure in the audit trail', async () => {
    const { stdout } = await agora(['audit', 'query', '--data-dir', gw.dataDir, '--kind', 'provider.attestation_failed']);
    return stdout.trim() ? stdout : null;
  });
  assert.match(entry, /node-phone/);
  assert.match(entry, /control file says fail/);
  fs.rmSync(control.phone);
  await waitFor('the phone node to be verified again', async () =>
    byId(await providers(''))['node-phone'].attestation.level === 'verified', { timeoutMs: 15000 });
});

// What the evidence must carry for a gateway nonce and an identity key (hex).
const evidenceNonce = (nonce, key) =>
  createHash('sha256').update(Buffer.concat([Buffer.from(nonce, 'hex'), Buffer.from(key, 'hex')])).digest('hex');

test('evidence binds the challenge and the identity key: copied, replayed or unasked-for evidence is refused', async () => {
  const key = randomBytes(32).toString('hex');
  const thief = new RecordingNode({ port: gw.port, ca: gw.ca, token: gw.providers.plain.token, nodeId: 'node-thief',
                                    model: MODEL, identityKey: key, attestation: 'nvidia_cc' });
  await thief.connect();
  const challenges = () => thief.frames.filter((f) => f.type === 'challenge');
  const level = async () => byId(await providers(''))['node-thief']?.attestation;
  try {
    // 1. The real GPU node's evidence, copied from /v1/providers: bound to
    //    another nonce and another key.
    await waitFor('a challenge', () => challenges().length >= 1);
    const real = byId(await providers(''))['node-gpu'].attestation;
    assert.equal(real.level, 'confidential');
    thief.send({ type: 'evidence', nonce: challenges()[0].nonce, kind: 'nvidia_cc', evidence: real.evidence });
    await waitFor('the copy refused', async () => ((await level())?.status === 'failed' ? true : null));
    await gw.proc.waitForOutput(/node_attestation_failed node=node-thief .*eat_nonce is not the nonce issued/,
                                { stream: 'err' });

    // 2. Fresh evidence from the attestation service for this challenge, but
    //    bound to the GPU node's identity key (whose requests the thief
    //    wants): the gateway binds the key the thief announced.
    await waitFor('a second challenge', () => challenges().length >= 2, { timeoutMs: 15000 });
    const second = challenges()[1].nonce;
    const forGpu = await attest(['nvidia', pki, evidenceNonce(second, byId(await providers(''))['node-gpu'].identity_key)]);
    thief.send({ type: 'evidence', nonce: second, kind: 'nvidia_cc', evidence: forGpu.trim() });
    await gw.proc.waitForOutput(/(node_attestation_failed node=node-thief .*eat_nonce[^\n]*\n[\s\S]*){2}/,
                                { stream: 'err' });
    assert.equal((await level()).level, 'standard');

    // 3. Evidence bound right gives the level (so the refusals above were
    //    about the binding)...
    await waitFor('a third challenge', () => challenges().length >= 3, { timeoutMs: 15000 });
    const third = challenges()[2].nonce;
    const own = (await attest(['nvidia', pki, evidenceNonce(third, key)])).trim();
    thief.send({ type: 'evidence', nonce: third, kind: 'nvidia_cc', evidence: own });
    await waitFor('the right binding verified', async () => ((await level())?.level === 'confidential' ? true : null));
    const verifiedAt = (await level()).verified_ms;
    // ...and the same evidence again, or evidence for no challenge, is ignored.
    thief.send({ type: 'evidence', nonce: third, kind: 'nvidia_cc', evidence: own });
    thief.send({ type: 'evidence', nonce: 'ab'.repeat(32), kind: 'nvidia_cc', evidence: own });
    await gw.proc.waitForOutput(/node_evidence_unexpected node=node-thief[\s\S]*node_evidence_unexpected node=node-thief/,
                                { stream: 'err' });
    assert.equal((await level()).verified_ms, verifiedAt);
    // A node that keeps sending evidence nobody asked for is cut off.
    for (let i = 0; i < 8; ++i) thief.send({ type: 'evidence', nonce: 'cd'.repeat(32), kind: 'nvidia_cc', evidence: own });
    await waitFor('the flooding node disconnected', () => thief.closed);
    await gw.proc.waitForOutput(/node_evidence_flood node=node-thief/, { stream: 'err' });
  } finally {
    thief.close();
  }
});

test('a node that does not answer a challenge in time stays standard, and is challenged again', async () => {
  const quick = await Gateway.start({
    name: 'gateway-quick', providers: ['p'],
    set: { nvidia_root_cert: path.join(pki, 'nvidia-root.pem'), attestation_timeout_ms: 1500, attestation_retry_ms: 200 },
  });
  const key = randomBytes(32).toString('hex');
  const mute = new RecordingNode({ port: quick.port, ca: quick.ca, token: quick.providers.p.token, nodeId: 'node-mute',
                                   model: MODEL, identityKey: key, attestation: 'nvidia_cc' });
  try {
    await mute.connect();
    await quick.proc.waitForOutput(/node_attestation_failed node=node-mute .*no evidence within 1500 ms/, { stream: 'err' });
    const challenges = () => mute.frames.filter((f) => f.type === 'challenge');
    // Challenged again after the retry delay; a timely, well-bound answer now verifies.
    await waitFor('a new challenge', () => challenges().length >= 2);
    const nonce = challenges().at(-1).nonce;
    mute.send({ type: 'evidence', nonce, kind: 'nvidia_cc', evidence: (await attest(['nvidia', pki, evidenceNonce(nonce, key)])).trim() });
    await waitFor('the late node verified', async () => {
      const r = await quick.raw('GET', `/v1/providers?model=${MODEL}&confidential=true`, { key: quick.key });
      return JSON.parse(r.body).data.some((n) => n.id === 'node-mute') ? true : null;
    });
  } finally {
    mute.close();
    await quick.stop();
  }
});

test('a confidential request waiting for its only node does not hold up standard requests behind it', async () => {
  const q = await Gateway.start({ name: 'gateway-queue', providers: ['p'],
                                  set: { nvidia_root_cert: path.join(pki, 'nvidia-root.pem'), queue_timeout_ms: 20000 } });
  const key = randomBytes(32).toString('hex');
  // The only confidential node: one slot, and it never answers.
  const tee = new RecordingNode({ port: q.port, ca: q.ca, token: q.providers.p.token, nodeId: 'node-tee', model: MODEL,
                                  identityKey: key, attestation: 'nvidia_cc', slots: 1, holdJobs: true });
  await tee.connect();
  await waitFor('a challenge', () => tee.frames.some((f) => f.type === 'challenge'));
  const nonce = tee.frames.find((f) => f.type === 'challenge').nonce;
  tee.send({ type: 'evidence', nonce, kind: 'nvidia_cc', evidence: (await attest(['nvidia', pki, evidenceNonce(nonce, key)])).trim() });
  // A standard node, one slot, each answer taking about a second.
  q.startNode({ token: q.providers.p.token, fake: `name=${MODEL},tokens=20,token-interval-us=50000`, slots: 1,
                nodeId: 'node-slow' });
  await q.waitForModel(MODEL, { nodes: 2 });
  await waitFor('the TEE node verified', async () => {
    const r = await q.raw('GET', `/v1/providers?model=${MODEL}&confidential=true`, { key: q.key });
    return JSON.parse(r.body).data.length === 1;
  });
  const c = q.client();
  const abort = new AbortController();
  try {
    const held = c.chat.completions.create(ask({ confidential: true }), { signal: abort.signal }).catch(() => {});
    await waitFor('the TEE node busy', () => tee.open.size === 1);
    const first = c.chat.completions.create(ask());  // the slow node's slot
    await waitFor('the slow node busy', async () => (await q.metric('agora_slots_busy')) === 2);
    const waiting = c.chat.completions.create(ask({ confidential: true }), { signal: abort.signal }).catch(() => {});
    await waitFor('the confidential request queued', async () => (await q.metric('agora_queue_depth')) === 1);
    const behind = c.chat.completions.create(ask());
    await waitFor('both queued', async () => (await q.metric('agora_queue_depth')) === 2);
    // The slow node frees its slot: the standard request behind the waiting
    // confidential one is served, and the confidential one keeps waiting.
    assert.ok((await first).choices[0].message.content);
    const served = await behind;
    assert.equal(served.agora.attestation, 'standard');
    assert.equal(await q.metric('agora_queue_depth'), 1);
    abort.abort();
    await Promise.all([held, waiting]);
  } finally {
    tee.close();
    await q.stop();
  }
});

test('when the GPU verdict expires, the same confidential request gets a 503 naming the constraint', async () => {
  const proxy = await startProxy(['--confidential', '--nvidia-root', path.join(pki, 'nvidia-root.pem')]);
  const ok = await proxy.client.chat.completions.create(ask());
  assert.equal(ok.agora.attestation, 'confidential');
  // The attestation service stops answering: the next challenge gets no
  // evidence, and the verdict runs out.
  fs.writeFileSync(control.gpu, 'hang\n');
  const gone = await waitFor('the GPU verdict to expire', async () => {
    const n = byId(await providers(''))['node-gpu'];
    return n.attestation.status === 'expired' ? n : null;
  }, { timeoutMs: 20000 });
  assert.equal(gone.attestation.level, 'standard');
  assert.equal(gone.attestation.evidence, null);
  const e = await status503(proxy.client.chat.completions.create(ask()));
  assert.equal(e.status, 503);
  const direct = await status503(client.chat.completions.create(ask({ confidential: true })));
  assert.equal(direct.status, 503);
  assert.match(direct.message, /confidential: true: no provider serving this model has a live GPU TEE/);
  // The node itself still serves standard requests.
  assert.equal(byId(await providers(''))['node-gpu'].attestation.level, 'standard');
  const s = await client.chat.completions.create(ask());
  assert.ok(s.choices[0].message.content !== undefined);
  await proxy.proc.stop();
});

after(async () => {
  await gw?.stop();
});
