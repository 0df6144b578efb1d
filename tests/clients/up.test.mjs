// `agora up`, the main job, as a user runs it: one command starts a gateway
// and nodes on the tiny model, prints how to call it and writes up.json; the
// OpenAI SDK is then served through it; Ctrl-C (SIGINT) stops it cleanly; a
// second run on the same data dir reuses the API key.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import OpenAI from 'openai';
import { Proc, ensureTinyModel, makeFetch, tempDir } from './harness.mjs';

async function startUp(dir, model) {
  const up = new Proc('agora up', ['up', '--data-dir', dir, '--port', '0', '--model', model, '--nodes', '2']);
  await up.waitForOutput(/Press Ctrl-C to stop/, { timeoutMs: 60000 });
  const info = JSON.parse(await fs.readFile(path.join(dir, 'up.json'), 'utf8'));
  return { up, info };
}

test('agora up serves the OpenAI SDK, prints what to paste, and stops on Ctrl-C', async () => {
  const model = await ensureTinyModel();
  const dir = await tempDir('agora-up-');
  const { up, info } = await startUp(dir, model);

  assert.match(info.base_url, /^https:\/\/127\.0\.0\.1:\d+\/v1$/);
  assert.match(info.api_key, /^gk_[0-9A-Za-z]{43}$/);
  assert.equal(info.ca_cert, path.join(dir, 'tls', 'ca.pem'));
  for (const text of [info.base_url, info.api_key, info.ca_cert, 'curl --cacert', 'OpenAI SDK']) {
    assert.ok(up.out.includes(text), `stdout shows ${text}`);
  }

  const agent = new https.Agent({ ca: await fs.readFile(info.ca_cert), keepAlive: true });
  const client = new OpenAI({ baseURL: info.base_url, apiKey: info.api_key, fetch: makeFetch(agent) });
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['tiny']);
  assert.equal(models.data[0].agora.nodes, 2);

  const r = await client.chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 8, seed: 1,
  });
  assert.equal(r.usage.completion_tokens, 8);
  assert.match(r.agora.provider_id, /^prov_/);
  let streamed = '';
  for await (const chunk of await client.chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 8, seed: 1, stream: true,
  })) {
    streamed += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(streamed, r.choices[0].message.content, 'streamed and unary text agree for the same seed');
  agent.destroy();

  await up.stop({ sig: 'SIGINT', timeoutMs: 15000 });
  assert.equal(up.code, 0, up.logs());
  assert.match(up.err, /agora up: stopped/);

  // Again on the same data dir: same key, same CA.
  const again = await startUp(dir, model);
  assert.equal(again.info.api_key, info.api_key);
  assert.equal(again.info.ca_fingerprint, info.ca_fingerprint);
  await again.up.stop({ sig: 'SIGINT', timeoutMs: 15000 });
  assert.equal(again.up.code, 0, again.up.logs());
});
