// Trust in providers, seen from outside: a node gets jobs only under the
// current data-handling agreement (and re-accepts when the operator
// publishes a new one), `agora providers suspend|resume|terminate` act on
// live nodes, and the audit trail records all of it in a chain that
// `agora audit verify` checks. Real gateway, real nodes (fake engine), real
// SQLite file, the official openai SDK.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Gateway, agora, tempDir, waitFor } from './harness.mjs';

const AGREEMENT = fileURLToPath(new URL('../../docs/PROVIDER_AGREEMENT.md', import.meta.url));
const hi = [{ role: 'user', content: 'hi' }];

async function queueDepth(gw) {
  return gw.metric('agora_queue_depth');
}

async function auditEntries(gw, args = []) {
  const { stdout } = await agora(['audit', 'query', '--data-dir', gw.dataDir, ...args]);
  return stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function keyId(gw, name) {
  const { stdout } = await agora(['keys', 'list', '--json', '--data-dir', gw.dataDir]);
  return JSON.parse(stdout).find((k) => k.name === name).id;
}

test('a node gets jobs only under the current agreement; a new version holds it until it accepts', async () => {
  const gw = await Gateway.start({ providers: ['acme'] });
  const dir = await tempDir('agora-agreement-');
  const v2 = path.join(dir, 'agreement-v2.md');
  fs.writeFileSync(v2, fs.readFileSync(AGREEMENT, 'utf8').replace(/^Version: 1$/m, 'Version: 2'));
  const { token } = gw.providers.acme;
  // node-a accepts only the built-in version; node-b was started with both.
  const nodeA = gw.startNode({ token, fake: 'name=model-a,tokens=3', nodeId: 'node-a' });
  gw.startNode({ token, fake: 'name=model-b,tokens=3', nodeId: 'node-b', args: ['--agreement', AGREEMENT, '--agreement', v2] });
  await gw.waitForModel('model-a');
  await gw.waitForModel('model-b');
  const key = await gw.createKey('agreement');
  const client = gw.client(key);
  assert.equal((await client.chat.completions.create({ model: 'model-a', messages: hi })).choices[0].finish_reason, 'stop');

  const { stdout } = await agora(['providers', 'agreement', 'publish', '--data-dir', gw.dataDir, '--file', v2]);
  assert.match(stdout, /^published agreement version 2/);
  await nodeA.waitForOutput(/the gateway requires version 2 of the provider agreement/, { stream: 'err' });
  // node-b listed v2 in its hello: it keeps serving without a round trip.
  assert.equal((await client.chat.completions.create({ model: 'model-b', messages: hi })).choices[0].finish_reason, 'stop');
  // node-a gets no further job: the request waits in the queue...
  const waiting = client.chat.completions.create({ model: 'model-a', messages: hi });
  await gw.waitForMetric('agora_queue_depth', (v) => v === 1);
  // ...until a node that accepted v2 serves the model: its operator starts
  // it with the new document (a second node, so that the request does not
  // lose its last node in between), then retires the old one.
  gw.startNode({ token, fake: 'name=model-a,tokens=3', nodeId: 'node-a2', args: ['--agreement', v2] });
  assert.equal((await waiting).choices[0].finish_reason, 'stop');
  assert.equal(await queueDepth(gw), 0);
  await nodeA.stop();

  // Who accepted which version when: the operator's view and the audit trail.
  // (The gateway writes acceptances in the background, like job records.)
  const acc = await waitFor('four acceptances', async () => {
    const a = JSON.parse((await agora(['providers', 'agreement', 'acceptances', '--json', '--data-dir', gw.dataDir])).stdout);
    return a.length === 4 ? a : null;
  });
  const seen = acc.map((a) => `${a.node_id} v${a.version}`).sort();
  assert.deepEqual(seen, ['node-a v1', 'node-a2 v2', 'node-b v1', 'node-b v2']);
  for (const a of acc) assert.match(a.accepted, /^\d{4}-\d\d-\d\dT/);
  const list = JSON.parse((await agora(['providers', 'list', '--json', '--data-dir', gw.dataDir])).stdout);
  assert.ok(list[0].agreements.some((a) => a.node_id === 'node-a2' && a.version === 2));
  assert.ok(!list[0].agreements.some((a) => a.node_id === 'node-a' && a.version === 2));
  const accepted = await auditEntries(gw, ['--kind', 'provider.agreement_accepted']);
  assert.equal(accepted.length, 4);
  assert.ok(accepted.every((e) => e.provider_id === gw.providers.acme.id));
  const published = await auditEntries(gw, ['--kind', 'agreement.published']);
  assert.deepEqual(published.map((e) => e.data.version), [1, 2]);
});

test('suspend holds a live node (running jobs finish), resume releases it, terminate disconnects it at once', async () => {
  const gw = await Gateway.start({ providers: ['bob'] });
  const { token, id } = gw.providers.bob;
  const node = gw.startNode({ token, fake: 'name=slow,tokens=5,token-interval-us=100000', nodeId: 'node-slow' });
  await gw.waitForModel('slow');
  const key = await gw.createKey('suspension');
  const client = gw.client(key);

  // A stream is running when the suspension lands: it finishes.
  const stream = await client.chat.completions.create({ model: 'slow', messages: hi, stream: true });
  const it = stream[Symbol.asyncIterator]();
  assert.ok((await it.next()).value);  // output began
  await agora(['providers', 'suspend', '--data-dir', gw.dataDir, 'bob']);
  await waitFor('the gateway to hold the node', async () => /node_held node=node-slow .*suspended=true/.test(gw.proc.err + gw.proc.out));
  let text = '';
  for (let r = await it.next(); !r.done; r = await it.next()) text += r.value.choices[0]?.delta?.content ?? '';
  assert.ok(text.length > 0, 'the running stream completed');
  // A new request waits: the suspended node takes no new job.
  const waiting = client.chat.completions.create({ model: 'slow', messages: hi });
  await gw.waitForMetric('agora_queue_depth', (v) => v === 1);
  await agora(['providers', 'resume', '--data-dir', gw.dataDir, 'bob']);
  assert.equal((await waiting).choices[0].finish_reason, 'stop');

  // Terminate: the node is cut off at once (not at its next heartbeat) and
  // the forfeiture of what it served is recorded (from the job records,
  // which the gateway writes in the background: wait for both).
  await waitFor('both jobs recorded', async () => (await auditEntries(gw, ['--provider', id, '--kind', 'job'])).length === 2);
  const t0 = Date.now();
  const { stdout } = await agora(['providers', 'terminate', '--data-dir', gw.dataDir, 'bob']);
  assert.match(stdout, /^terminated provider .*forfeited earnings recorded in the audit trail \(2 jobs, 10 completion tokens\)/);
  await waitFor('the node to be disconnected', async () => {
    const m = (await gw.models()).find((x) => x.id === 'slow');
    return !m || m.agora.nodes === 0;
  }, { timeoutMs: 5000 });
  const ms = Date.now() - t0;
  assert.ok(ms < 1500, `disconnected after ${ms} ms`);
  await node.waitForOutput(/refused the provider token/, { stream: 'err' });
  const [terminated] = await auditEntries(gw, ['--kind', 'provider.terminated']);
  assert.equal(terminated.provider_id, id);
  assert.deepEqual({ jobs: terminated.data.forfeited.jobs, completion_tokens: terminated.data.forfeited.completion_tokens },
                   { jobs: 2, completion_tokens: 10 });
  // The disconnection is recorded by the gateway's background writer.
  const kinds = await waitFor('the disconnection in the audit trail', async () => {
    const k = (await auditEntries(gw, ['--provider', id])).map((e) => e.kind);
    return k.includes('provider.disconnected') ? k : null;
  });
  for (const k of ['provider.registered', 'provider.connected', 'provider.agreement_accepted', 'job',
                   'provider.suspended', 'provider.resumed', 'provider.terminated', 'provider.disconnected']) {
    assert.ok(kinds.includes(k), `${k} in ${kinds}`);
  }
  const list = JSON.parse((await agora(['providers', 'list', '--json', '--data-dir', gw.dataDir])).stdout);
  assert.equal(list[0].status, 'terminated');
});

test('audit: every job is recorded with its key, provider, tokens and outcome; the chain verifies and is signed at shutdown', async () => {
  const gw = await Gateway.start({ providers: ['carol'] });
  gw.startNode({ token: gw.providers.carol.token, fake: 'name=fast,tokens=4', nodeId: 'node-fast' });
  await gw.waitForModel('fast');
  const key = await gw.createKey('audited');
  const kid = await keyId(gw, 'audited');
  const client = gw.client(key);
  const ids = [];
  for (let i = 0; i < 3; ++i) {
    const r = await client.chat.completions.create({ model: 'fast', messages: [{ role: 'user', content: `secret prompt ${i}` }] });
    ids.push(r.id);
  }
  let streamed;
  for await (const c of await client.chat.completions.create({ model: 'fast', messages: hi, stream: true })) streamed = c.id;
  ids.push(streamed);
  const jobs = await waitFor('four job entries', async () => {
    const j = await auditEntries(gw, ['--key', kid, '--kind', 'job']);
    return j.length === 4 ? j : null;
  });
  assert.deepEqual(jobs.map((j) => j.data.generation_id).sort(), [...ids].sort());
  for (const j of jobs) {
    assert.equal(j.provider_id, gw.providers.carol.id);
    assert.equal(j.data.node_id, 'node-fast');
    assert.equal(j.data.outcome, 'stop');
    assert.equal(j.data.completion_tokens, 4);
    assert.ok(j.data.prompt_tokens > 0 && j.data.total_ms >= 0);
    assert.ok(!JSON.stringify(j).includes('secret prompt'), 'no prompt text in the audit trail');
  }
  assert.deepEqual(jobs.map((j) => j.data.stream), [false, false, false, true]);

  await gw.stop();  // signs the end of the chain
  const { stdout } = await agora(['audit', 'verify', '--json', '--data-dir', gw.dataDir]);
  const report = JSON.parse(stdout);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(report.last_signed_seq, report.last_seq, 'everything is signed after a clean shutdown');
  assert.ok(report.entries >= 9);
  assert.match(gw.proc.err + gw.proc.out, new RegExp(`audit_checkpoint seq=${report.last_seq} hash=[0-9a-f]{64}`));
});

test('a node\'s X25519 identity key is made once (0600), kept across restarts and shown to the operator', async () => {
  const gw = await Gateway.start({ providers: ['dave'] });
  const dir = await tempDir('agora-identity-');
  const { token } = gw.providers.dave;
  const first = gw.startNode({ token, fake: 'name=ident,tokens=2', nodeId: 'node-ident', dataDir: dir });
  const [, key] = await first.waitForOutput(/identity key ([0-9a-f]{64})/, { stream: 'err' });
  const file = path.join(dir, 'identity.key');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.match(fs.readFileSync(file, 'utf8'), /^[0-9a-f]{64}\n$/);
  assert.notEqual(fs.readFileSync(file, 'utf8').trim(), key, 'the file holds the private key, the log the public one');
  await gw.waitForModel('ident');
  const listed = async () => {
    const list = JSON.parse((await agora(['providers', 'list', '--json', '--data-dir', gw.dataDir])).stdout);
    return list[0].nodes.find((n) => n.node_id === 'node-ident')?.identity_key;
  };
  assert.equal(await waitFor('the node in providers list', listed), key);
  await first.stop();
  const again = gw.startNode({ token, fake: 'name=ident,tokens=2', nodeId: 'node-ident', dataDir: dir });
  const [, key2] = await again.waitForOutput(/identity key ([0-9a-f]{64})/, { stream: 'err' });
  assert.equal(key2, key, 'the same identity after a restart');
  fs.chmodSync(file, 0o644);
  const loose = gw.startNode({ token, fake: 'name=ident2,tokens=2', nodeId: 'node-loose', dataDir: dir });
  const { code } = await loose.exited;
  assert.equal(code, 1);
  assert.match(loose.err, /permissions 0644 are too open for a secret; run: chmod 600/);
  const connected = await waitFor('the connection in the audit trail', async () => {
    const e = await auditEntries(gw, ['--kind', 'provider.connected']);
    return e.length >= 1 ? e : null;
  });
  assert.equal(connected[0].data.identity_key, key);
});

test('GET /v1/providers lists the nodes a request can be sealed to, by model, region and trust level', async () => {
  const gw = await Gateway.start({ providers: ['erin', 'frank'] });
  const eu = gw.startNode({ token: gw.providers.erin.token, fake: 'name=listed,tokens=2', nodeId: 'node-eu', args: ['--region', 'eu-west'] });
  gw.startNode({ token: gw.providers.frank.token, fake: 'name=listed,tokens=2', nodeId: 'node-us', args: ['--region', 'us-east'] });
  gw.startNode({ token: gw.providers.frank.token, fake: 'name=other,tokens=2', nodeId: 'node-other' });
  await gw.waitForModel('listed', { nodes: 2 });
  const [, euKey] = await eu.waitForOutput(/identity key ([0-9a-f]{64})/, { stream: 'err' });
  const key = await gw.createKey('lister');
  const get = async (q, k = key) => {
    const r = await gw.raw('GET', `/v1/providers${q}`, { key: k });
    return { status: r.status, body: JSON.parse(r.body) };
  };
  const all = await get('?model=listed');
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.data.map((n) => n.id).sort(), ['node-eu', 'node-us']);
  const e = all.body.data.find((n) => n.id === 'node-eu');
  assert.equal(e.identity_key, euKey);
  assert.equal(e.provider_id, gw.providers.erin.id);
  assert.equal(e.region, 'eu-west');
  assert.match(e.model_sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(e.attestation, { level: 'standard', status: 'none', kind: null, evidence: null });
  assert.deepEqual((await get('?model=listed&region=eu-west')).body.data.map((n) => n.id), ['node-eu']);
  assert.deepEqual((await get('?model=listed&region=ap-south,us-east')).body.data.map((n) => n.id), ['node-us']);
  // No node here offers attestation: the trust levels list nobody, never a downgrade.
  assert.deepEqual((await get('?model=listed&privacyLevel=verified')).body.data, []);
  assert.deepEqual((await get('?model=listed&confidential=true')).body.data, []);
  // A suspended provider's node takes no jobs: not a candidate.
  await agora(['providers', 'suspend', '--data-dir', gw.dataDir, 'frank']);
  await waitFor('the suspension', async () => (await get('?model=listed')).body.data.length === 1);
  assert.equal((await get('')).status, 400);
  assert.equal((await get('?model=listed&privacyLevel=secret')).status, 400);
  assert.equal((await get('?model=%zz')).status, 400);
  assert.equal((await gw.raw('GET', '/v1/providers?model=listed')).status, 401);
});
