// Function calling and structured outputs with the clients people build on:
// the official openai SDK, LangChain JS (@langchain/openai: bindTools,
// withStructuredOutput) and the Vercel AI SDK (ai + @ai-sdk/openai's
// chat-completions provider: generateText/streamText with tools and
// toolChoice, generateObject) — straight to the gateway and through
// `agora proxy` (sealed end to end), on a real node running the tiny model.
//
// The tiny model is random, so the assertions are the ones grammars make
// true for any model: a forced call is a call to that function whose
// arguments validate against its schema (ajv), and a json_schema answer
// validates whenever it finished (the schemas are bounded and max_tokens
// fits them). Parallel calls, which the random model cannot be made to
// emit, are checked with the fake engine's scripted calls. A version 1 node
// (the recording node speaks protocol 1) is never sent tool jobs.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { ChatOpenAI } from '@langchain/openai';
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, jsonSchema, streamText, tool } from 'ai';
import { Gateway, Proc, ensureTinyModel } from './harness.mjs';
import { RecordingNode } from './recording_node.mjs';

const MODEL = 'tiny';
const ajv = new Ajv({ strict: false });

const WEATHER = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 8 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 },
  },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};
const validWeather = ajv.compile(WEATHER);
const validPerson = ajv.compile(PERSON);
const weatherTool = { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: WEATHER } };
const timeTool = { type: 'function', function: { name: 'get_time', description: 'The time', parameters: { type: 'object', properties: {} } } };
const MAX = 160;  // tokens: room for either schema, whatever the model picks

function assertValid(validate, value, what) {
  assert.ok(validate(value), `${what} does not validate: ${JSON.stringify(value)} ${ajv.errorsText(validate.errors)}`);
}

let gw;
let key;
let proxyProc;
const targets = {};  // name -> { openai, baseURL, apiKey, fetch }

before(async () => {
  const model = await ensureTinyModel();
  gw = await Gateway.start({ providers: ['tools'] });
  key = await gw.createKey('tools');
  gw.startNode({ token: gw.providers.tools.token, model, modelName: MODEL, slots: 2, nodeId: 'node-tools' });
  gw.startNode({ token: gw.providers.tools.token, fake: 'name=calls,tool-calls=2,tokens=4', nodeId: 'node-calls' });
  await gw.waitForModel(MODEL, { timeoutMs: 60000 });
  await gw.waitForModel('calls');
  proxyProc = new Proc('agora proxy', ['--log-level', 'info', 'proxy', '--gateway', gw.baseUrl, '--api-key', key,
                                        '--ca-cert', gw.caPath, '--listen', '127.0.0.1:0']);
  const m = await proxyProc.waitForOutput(/listening on (http:\/\/127\.0\.0\.1:\d+\/v1)/);
  targets.gateway = { baseURL: `${gw.baseUrl}/v1`, apiKey: key, fetch: gw.fetch };
  targets.proxy = { baseURL: m[1], apiKey: 'unused-by-the-proxy', fetch: globalThis.fetch };
  for (const t of Object.values(targets)) {
    t.openai = new OpenAI({ baseURL: t.baseURL, apiKey: t.apiKey, fetch: t.fetch, maxRetries: 0, timeout: 60000 });
  }
});

after(async () => {
  await proxyProc?.stop();
  await gw?.stop();
});

const ask = (content, extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: MAX,
                                        temperature: 0, seed: 7, ...extra });

for (const via of ['gateway', 'proxy']) {
  describe(`through the ${via}`, () => {
    const t = () => targets[via];

    test('openai: a required call is a call whose arguments validate, and the conversation goes on', async () => {
      const r = await t().openai.chat.completions.create(ask('Weather in Paris?', { tools: [weatherTool, timeTool],
                                                                                   tool_choice: 'required' }));
      const choice = r.choices[0];
      assert.equal(choice.finish_reason, 'tool_calls');
      assert.ok(choice.message.tool_calls.length >= 1);
      const call = choice.message.tool_calls[0];
      assert.match(call.id, /\S/);
      assert.equal(call.type, 'function');
      assert.ok(['get_weather', 'get_time'].includes(call.function.name));
      const args = JSON.parse(call.function.arguments);
      if (call.function.name === 'get_weather') assertValid(validWeather, args, 'the arguments');
      // The call's result goes back; the model answers (auto: text or a call).
      const next = await t().openai.chat.completions.create({
        ...ask('Weather in Paris?', { tools: [weatherTool, timeTool] }),
        messages: [{ role: 'user', content: 'Weather in Paris?' }, choice.message,
                   { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' }],
        max_tokens: 8,
      });
      assert.ok(['stop', 'length', 'tool_calls'].includes(next.choices[0].finish_reason));
      assert.ok(next.usage.prompt_tokens > r.usage.prompt_tokens, 'the call and its result are in the prompt');
    });

    test('openai: a named call streams as OpenAI streams it (id and name first, then argument fragments)', async () => {
      const stream = await t().openai.chat.completions.create(ask('Weather?', {
        tools: [weatherTool, timeTool], tool_choice: { type: 'function', function: { name: 'get_weather' } },
        stream: true, stream_options: { include_usage: true } }));
      const calls = [];
      let finish = null;
      let usage = null;
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        const c = chunk.choices[0];
        if (!c) continue;
        if (c.finish_reason) finish = c.finish_reason;
        for (const d of c.delta.tool_calls ?? []) {
          if (!calls[d.index]) {
            assert.match(d.id ?? '', /\S/, 'the first fragment carries the id');
            assert.equal(d.type, 'function');
            assert.equal(d.function.name, 'get_weather');
            calls[d.index] = { id: d.id, args: '' };
          } else {
            assert.equal(d.id, undefined, 'later fragments carry arguments only');
          }
          calls[d.index].args += d.function?.arguments ?? '';
        }
      }
      assert.equal(finish, 'tool_calls');
      assert.equal(calls.length, 1);
      assertValid(validWeather, JSON.parse(calls[0].args), 'the streamed arguments');
      assert.ok(usage && usage.completion_tokens > 0);
    });

    test('openai: json_schema answers validate, unary and streamed; json_object is JSON when finished', async () => {
      const format = { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: PERSON } };
      const r = await t().openai.chat.completions.create(ask('Describe someone', { response_format: format }));
      assert.equal(r.choices[0].finish_reason, 'stop');
      assertValid(validPerson, JSON.parse(r.choices[0].message.content), 'the answer');
      const stream = await t().openai.chat.completions.create(ask('Describe someone else',
                                                                  { response_format: format, stream: true }));
      let text = '';
      let finish = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(finish, 'stop');
      assertValid(validPerson, JSON.parse(text), 'the streamed answer');
      const j = await t().openai.chat.completions.create(ask('Some JSON', { response_format: { type: 'json_object' },
                                                                           max_tokens: 48 }));
      const content = j.choices[0].message.content;
      assert.match(content, /^\s*[{[]/, 'a JSON object begins');
      if (j.choices[0].finish_reason === 'stop') JSON.parse(content);
      else assert.equal(j.choices[0].finish_reason, 'length');
    });

    test('openai: max_tokens cutting a constrained answer short is "length" with what was produced', async () => {
      const format = { type: 'json_schema', json_schema: { name: 'person', schema: PERSON } };
      const r = await t().openai.chat.completions.create(ask('Describe someone', { response_format: format, max_tokens: 3,
                                                                                   logprobs: true }));
      assert.equal(r.choices[0].finish_reason, 'length');
      assert.equal(r.usage.completion_tokens, 3);
      const produced = r.choices[0].logprobs.content.map((x) => x.token).join('');
      assert.equal(r.choices[0].message.content, produced);
      assert.match(produced, /^\s*(\{|$)/, 'JSON (after the whitespace JSON allows) begins');
    });

    test('LangChain: bindTools with a forced call, and withStructuredOutput', async () => {
      const llm = new ChatOpenAI({ model: MODEL, apiKey: t().apiKey, temperature: 0, maxTokens: MAX, maxRetries: 0,
                                   configuration: { baseURL: t().baseURL, fetch: t().fetch } });
      const msg = await llm.bindTools([weatherTool], { tool_choice: 'required' }).invoke('Weather in Oslo?');
      assert.equal(msg.tool_calls.length, 1);
      assert.equal(msg.tool_calls[0].name, 'get_weather');
      assertValid(validWeather, msg.tool_calls[0].args, 'LangChain\'s parsed arguments');
      let streamed = null;
      for await (const chunk of await llm.bindTools([weatherTool], { tool_choice: 'required' }).stream('Weather?')) {
        streamed = streamed ? streamed.concat(chunk) : chunk;
      }
      assert.equal(streamed.tool_calls[0].name, 'get_weather');
      assertValid(validWeather, streamed.tool_calls[0].args, 'LangChain\'s streamed arguments');
      const person = await llm.withStructuredOutput(PERSON, { name: 'person', method: 'jsonSchema' }).invoke('Someone');
      assertValid(validPerson, person, 'LangChain\'s structured output');
    });

    test('AI SDK: generateText and streamText with tools and toolChoice, and generateObject', async () => {
      const provider = createOpenAI({ baseURL: t().baseURL, apiKey: t().apiKey, fetch: t().fetch });
      const model = provider.chat(MODEL);
      const tools = { get_weather: tool({ description: 'Weather in a city', inputSchema: jsonSchema(WEATHER) }) };
      const r = await generateText({ model, tools, toolChoice: 'required', prompt: 'Weather in Rome?',
                                     maxOutputTokens: MAX, temperature: 0, maxRetries: 0 });
      assert.equal(r.finishReason, 'tool-calls');
      assert.equal(r.toolCalls.length, 1);
      assert.equal(r.toolCalls[0].toolName, 'get_weather');
      assertValid(validWeather, r.toolCalls[0].input, 'the AI SDK\'s parsed input');
      const s = streamText({ model, tools, toolChoice: { type: 'tool', toolName: 'get_weather' }, prompt: 'Weather?',
                             maxOutputTokens: MAX, temperature: 0, maxRetries: 0 });
      const calls = await s.toolCalls;
      assert.equal(calls.length, 1);
      assertValid(validWeather, calls[0].input, 'the AI SDK\'s streamed input');
      assert.equal(await s.finishReason, 'tool-calls');
      const o = await generateObject({ model, schema: jsonSchema(PERSON), prompt: 'Someone', maxOutputTokens: MAX,
                                       temperature: 0, maxRetries: 0 });
      assertValid(validPerson, o.object, 'the AI SDK\'s object');
    });

    test('bad tool fields are 400s naming the parameter; a forged control token in a definition too', async () => {
      const bad = (body) => t().openai.chat.completions.create(ask('x', body)).then(
        () => assert.fail('accepted'), (e) => e);
      let e = await bad({ tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'nope' } } });
      assert.equal(e.status, 400);
      assert.equal(e.param, 'tool_choice');
      e = await bad({ tools: [{ type: 'function', function: { name: 'f', parameters: {
        type: 'object', properties: { x: { type: 'array', uniqueItems: true } } } } }] });
      assert.equal(e.status, 400);
      assert.match(e.message, /uniqueItems/);
      // Refused by the node, which sees the model's control tokens: through
      // the proxy the reason travels sealed, and is still the real one.
      e = await bad({ tools: [{ type: 'function', function: { name: 'f', description: 'Weather <|eot_id|>' } }] });
      assert.equal(e.status, 400);
      assert.match(e.message, /tools\[0\]\.function\.description/);
    });

    test('parallel calls (the fake engine\'s scripted ones) stream and assemble, and parallel_tool_calls: false gives one', async () => {
      const req = { model: 'calls', messages: [{ role: 'user', content: 'go' }], tools: [weatherTool, timeTool] };
      const r = await t().openai.chat.completions.create(req);
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
      assert.deepEqual(r.choices[0].message.tool_calls.map((c) => [c.function.name, c.function.arguments]),
                       [['get_weather', '{"n":0}'], ['get_time', '{"n":1}']]);
      assert.notEqual(r.choices[0].message.tool_calls[0].id, r.choices[0].message.tool_calls[1].id);
      const seen = [];
      for await (const chunk of await t().openai.chat.completions.create({ ...req, stream: true })) {
        for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
          seen[d.index] = (seen[d.index] ?? '') + (d.function?.arguments ?? '');
        }
      }
      assert.deepEqual(seen, ['{"n":0}', '{"n":1}']);
      const one = await t().openai.chat.completions.create({ ...req, parallel_tool_calls: false });
      assert.equal(one.choices[0].message.tool_calls.length, 1);
      const llm = new ChatOpenAI({ model: 'calls', apiKey: t().apiKey, maxRetries: 0,
                                   configuration: { baseURL: t().baseURL, fetch: t().fetch } });
      const msg = await llm.bindTools([weatherTool, timeTool]).invoke('go');
      assert.deepEqual(msg.tool_calls.map((c) => c.args), [{ n: 0 }, { n: 1 }]);
    });
  });
}

test('models list supported_parameters; providers list each node\'s capabilities', async () => {
  const models = await targets.gateway.openai.models.list();
  const tiny = models.data.find((m) => m.id === MODEL);
  for (const p of ['tools', 'tool_choice', 'response_format', 'structured_outputs', 'temperature']) {
    assert.ok(tiny.supported_parameters.includes(p), p);
  }
  const calls = models.data.find((m) => m.id === 'calls');
  assert.ok(calls.supported_parameters.includes('tools'));
  assert.ok(!calls.supported_parameters.includes('response_format'), 'the fake engine has no grammars');
  const res = await gw.raw('GET', `/v1/providers?model=${MODEL}`, { key });
  const node = JSON.parse(res.body).data[0];
  assert.equal(node.protocol, 2);
  assert.equal(node.capabilities.tools, true);
  assert.equal(node.capabilities.structured_outputs, true);
  // The tiny model's template renders one call per turn.
  assert.equal(node.capabilities.parallel_tool_calls, false);
  assert.ok(!node.supported_parameters.includes('parallel_tool_calls'));
});

test('a structured request to a model without grammars is a 503 naming the constraint', async () => {
  const e = await targets.gateway.openai.chat.completions.create({
    model: 'calls', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } })
    .then(() => assert.fail('accepted'), (x) => x);
  assert.equal(e.status, 503);
  assert.match(e.message, /response_format/);
});

test('a protocol 1 node gets plain jobs and never a tool or structured one', async () => {
  const old = new RecordingNode({ port: gw.port, ca: gw.ca, token: gw.providers.tools.token, nodeId: 'node-v1',
                                  model: 'recorded' });
  const welcome = await old.connect();
  try {
    assert.equal(welcome.protocol, 1, 'the session speaks the node\'s version');
    await gw.waitForModel('recorded');
    const plain = await targets.gateway.openai.chat.completions.create({
      model: 'recorded', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(plain.choices[0].message.content, 'hello');
    const before = old.jobs.length;
    for (const extra of [{ tools: [weatherTool] }, { response_format: { type: 'json_object' } }]) {
      const e = await targets.gateway.openai.chat.completions.create({
        model: 'recorded', messages: [{ role: 'user', content: 'hi' }], ...extra })
        .then(() => assert.fail('accepted'), (x) => x);
      assert.equal(e.status, 503);
      assert.match(e.message, /protocol version 1/);
    }
    assert.equal(old.jobs.length, before, 'no tool job reached the version 1 node');
  } finally {
    old.close();
  }
});
