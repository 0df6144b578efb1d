// Opt-in conversation memory through the official openai SDK: a request
// with conversation_id gets the earlier turns prepended (what the node
// receives is recorded, so the check is on what the model really sees),
// trimmed to the context by dropping the oldest turns; only the owning key
// (and its rotations) can read, extend or delete it; it is encrypted at
// rest and leaves no trace in the database file or its WAL once deleted.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import OpenAI from 'openai';
import { Gateway, agora, waitFor } from './harness.mjs';
import { RecordingNode } from './recording_node.mjs';

let gw;
let node;  // serves "recorded" with a 4096-token context
let small;  // serves "small" with a 400-token context

before(async () => {
  gw = await Gateway.start({ providers: ['memory'] });
  const token = gw.providers.memory.token;
  node = new RecordingNode({ port: gw.port, ca: gw.ca, token, nodeId: 'node-memory', model: 'recorded' });
  small = new RecordingNode({ port: gw.port, ca: gw.ca, token, nodeId: 'node-small', model: 'small', ctx: 400 });
  await node.connect();
  await small.connect();
  await gw.waitForModel('recorded');
  await gw.waitForModel('small');
});

async function keyIdOf(name) {
  const { stdout } = await agora(['keys', 'list', '--json', '--data-dir', gw.dataDir]);
  return JSON.parse(stdout).find((k) => k.name === name).id;
}

function lastJob(n) {
  return n.jobs[n.jobs.length - 1];
}

async function expect404(promise) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `a 404, got ${e}`);
    assert.equal(e.code, 'conversation_not_found');
    return true;
  });
}

// GET/DELETE /v1/conversations/{id} through the SDK's generic methods.
const getConversation = (client, id) => client.get(`/conversations/${id}`);
const deleteConversation = (client, id) => client.delete(`/conversations/${id}`);

test('later turns get the earlier ones prepended (system messages stay first and are not stored)', async () => {
  const client = gw.client(await gw.createKey('memory-turns'));
  const id = `chat-${Date.now()}`;
  const first = await client.chat.completions.create({
    model: 'recorded', conversation_id: id,
    messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'my name is Ada' }],
  });
  assert.deepEqual(first.agora.conversation, { turns_used: 0, turns_dropped: 0 });
  assert.deepEqual(lastJob(node).request.messages,
                   [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'my name is Ada' }]);

  // Streamed this time: the answer is collected from the chunks.
  let text = '';
  const stream = await client.chat.completions.create({
    model: 'recorded', conversation_id: id, stream: true,
    messages: [{ role: 'system', content: 'be briefer' }, { role: 'user', content: 'what is my name?' }],
  });
  let agoraInfo;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? '';
    if (c.agora) agoraInfo = c.agora;
  }
  assert.equal(text, 'hello');
  assert.deepEqual(agoraInfo.conversation, { turns_used: 1, turns_dropped: 0 });
  assert.deepEqual(lastJob(node).request.messages, [
    { role: 'system', content: 'be briefer' },
    { role: 'user', content: 'my name is Ada' },
    { role: 'assistant', content: 'hello' },
    { role: 'user', content: 'what is my name?' },
  ]);

  const stored = await getConversation(client, id);
  assert.equal(stored.id, id);
  assert.equal(stored.object, 'conversation');
  assert.deepEqual(stored.messages, [
    { role: 'user', content: 'my name is Ada' }, { role: 'assistant', content: 'hello' },
    { role: 'user', content: 'what is my name?' }, { role: 'assistant', content: 'hello' },
  ]);
  assert.ok(stored.expires_at > Date.now() / 1000, 'the default TTL applies');
  // Without conversation_id nothing is prepended or stored.
  await client.chat.completions.create({ model: 'recorded', messages: [{ role: 'user', content: 'stateless' }] });
  assert.deepEqual(lastJob(node).request.messages, [{ role: 'user', content: 'stateless' }]);
});

test('only the owning key can read, extend or delete a conversation; its rotation keeps it', async () => {
  const ownerKey = await gw.createKey('memory-owner');
  const owner = gw.client(ownerKey);
  const other = gw.client(await gw.createKey('memory-other'));
  const id = 'shared-name';
  await owner.chat.completions.create({ model: 'recorded', conversation_id: id,
                                         messages: [{ role: 'user', content: 'owner secret turn' }] });
  await expect404(getConversation(other, id));
  await expect404(deleteConversation(other, id));
  // The same id from another key is another conversation: nothing leaks in.
  await other.chat.completions.create({ model: 'recorded', conversation_id: id,
                                         messages: [{ role: 'user', content: 'other turn' }] });
  assert.deepEqual(lastJob(node).request.messages, [{ role: 'user', content: 'other turn' }]);
  assert.deepEqual((await getConversation(owner, id)).messages.map((m) => m.content), ['owner secret turn', 'hello']);
  assert.deepEqual((await getConversation(other, id)).messages.map((m) => m.content), ['other turn', 'hello']);

  // A rotated key is the same owner (its lineage).
  const { stdout } = await agora(['keys', 'rotate', '--data-dir', gw.dataDir, await keyIdOf('memory-owner'), '--grace', '0s']);
  const rotated = gw.client(stdout.trim());
  await waitFor('the rotated key', async () => (await gw.raw('GET', '/v1/models', { key: stdout.trim() })).status === 200);
  await rotated.chat.completions.create({ model: 'recorded', conversation_id: id,
                                           messages: [{ role: 'user', content: 'after rotation' }] });
  assert.deepEqual(lastJob(node).request.messages.map((m) => m.content), ['owner secret turn', 'hello', 'after rotation']);

  const deleted = await deleteConversation(rotated, id);
  assert.deepEqual(deleted, { id, object: 'conversation.deleted', deleted: true });
  await expect404(getConversation(rotated, id));
  await expect404(deleteConversation(rotated, id));
  // The other key's conversation of the same name is untouched.
  assert.equal((await getConversation(other, id)).messages.length, 2);
});

test('the oldest whole turns are dropped to fit the model context; the request\'s own messages never are', async () => {
  const client = gw.client(await gw.createKey('memory-trim'));
  const id = 'long-one';
  // Each user message is ~106 estimated tokens (6 + 300 bytes / 3); with a
  // 400-token context and max_tokens 10, two earlier turns fit beside a new one.
  const turn = (i) => ({ role: 'user', content: `${i}`.padEnd(300, '.') });
  let last;
  for (let i = 1; i <= 5; ++i) {
    last = await client.chat.completions.create({ model: 'small', conversation_id: id, max_tokens: 10, messages: [turn(i)] });
  }
  assert.deepEqual(last.agora.conversation, { turns_used: 2, turns_dropped: 2 });
  assert.deepEqual(lastJob(small).request.messages.map((m) => m.content[0] + m.role),
                   ['3user', 'hassistant', '4user', 'hassistant', '5user']);
  // Storage keeps every turn; only what is sent is trimmed.
  assert.equal((await getConversation(client, id)).messages.length, 10);
});

test('conversation_ttl: the conversation is gone once it expires', async () => {
  const client = gw.client(await gw.createKey('memory-ttl'));
  await client.chat.completions.create({ model: 'recorded', conversation_id: 'brief', conversation_ttl: 1,
                                         messages: [{ role: 'user', content: 'soon forgotten' }] });
  const c = await getConversation(client, 'brief');
  assert.ok(c.expires_at <= Math.ceil(Date.now() / 1000) + 1);
  await waitFor('the conversation to expire', async () => {
    try {
      await getConversation(client, 'brief');
      return false;
    } catch (e) {
      if (e instanceof OpenAI.NotFoundError) return true;
      throw e;
    }
  }, { timeoutMs: 5000, intervalMs: 100 });
  await client.chat.completions.create({ model: 'recorded', conversation_id: 'brief', messages: [{ role: 'user', content: 'anew' }] });
  assert.deepEqual(lastJob(node).request.messages, [{ role: 'user', content: 'anew' }]);
});

test('bad conversation parameters are 400s naming them', async () => {
  const client = gw.client(await gw.createKey('memory-bad'));
  const bad = async (body, param) => {
    await assert.rejects(client.chat.completions.create({ model: 'recorded', messages: [{ role: 'user', content: 'x' }], ...body }),
                         (e) => e instanceof OpenAI.BadRequestError && e.param === param);
  };
  await bad({ conversation_id: 'has space' }, 'conversation_id');
  await bad({ conversation_id: 'x'.repeat(129) }, 'conversation_id');
  await bad({ conversation_id: 7 }, 'conversation_id');
  await bad({ conversation_ttl: 60 }, 'conversation_ttl');
  await bad({ conversation_id: 'ok', conversation_ttl: 0 }, 'conversation_ttl');
});

test('encrypted at rest, and a deleted conversation leaves neither plaintext nor ciphertext in the database or its WAL', async () => {
  const key = await gw.createKey('memory-at-rest');
  const owner = await keyIdOf('memory-at-rest');
  const client = gw.client(key);
  const canary = `CANARY${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  await client.chat.completions.create({ model: 'recorded', conversation_id: 'private',
                                         messages: [{ role: 'user', content: `remember ${canary}` }] });
  await client.chat.completions.create({ model: 'recorded', conversation_id: 'private',
                                         messages: [{ role: 'user', content: `and ${canary} again` }] });
  assert.ok((await getConversation(client, 'private')).messages[0].content.includes(canary), 'stored (the scan has a target)');
  const files = ['agora.db', 'agora.db-wal'].map((f) => path.join(gw.dataDir, f));
  const bytes = () => Buffer.concat(files.filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
  assert.ok(!bytes().includes(canary), 'no plaintext at rest');
  assert.ok(!bytes().includes('private'), 'the conversation id is stored only as a keyed hash');
  const hex = execFileSync('sqlite3', [path.join(gw.dataDir, 'agora.db'),
                                       `SELECT hex(ciphertext) FROM conversations WHERE owner = '${owner}'`]).toString().trim();
  assert.match(hex, /^[0-9A-F]{64,}$/, 'one ciphertext row for this key');
  const ciphertext = Buffer.from(hex, 'hex');
  const probe = ciphertext.subarray(0, 32);
  assert.ok(bytes().includes(probe), 'the ciphertext is in the files before deletion (the scan works)');

  await deleteConversation(client, 'private');
  const after = bytes();
  assert.ok(!after.includes(probe), 'no ciphertext left in agora.db or its WAL');
  assert.ok(!after.includes(ciphertext.subarray(ciphertext.length - 32)), 'nor its tail');
  assert.ok(!after.includes(canary));
  assert.equal(fs.statSync(files[1]).size, 0, 'the WAL was emptied');
});
