// Provider node vs llama.cpp's own server, A/B in one run (issue 4, item 4).
// Same synthesised model, threads, slots and context per slot; greedy
// sampling with ignore_eos so both generate exactly the same token counts.
//
//   node bench/peer/node_vs_llama_server.mjs --model models/bench-1b.gguf \
//        [--threads 2] [--slots 8] [--ctx 4096] [--prompt-words 200] [--max-tokens 64] \
//        [--streams 1,4,8] [--repeat 2] [--json FILE]
//
// Agora is measured through its gateway (HTTPS, node over WSS); llama-server
// directly (plain HTTP, loopback). Per concurrency level it reports TTFT,
// per-stream decode tok/s and aggregate decode tok/s; single-stream prompt
// processing tok/s comes from the TTFT of a long prompt. Timings are
// machine-dependent; the ratios are what matters.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]?.startsWith('--') || all[i + 1] === undefined ? 'true' : all[i + 1]]);
  return acc;
}, []));
const model = path.resolve(args.model || path.join(root, 'models/bench-1b.gguf'));
const threads = Number(args.threads || os.cpus().length);
const slots = Number(args.slots || 8);
const ctx = Number(args.ctx || 4096);
const promptWords = Number(args['prompt-words'] || 200);
const maxTokens = Number(args['max-tokens'] || 64);
const streamsList = (args.streams || '1,4,8').split(',').map(Number);
const repeat = Number(args.repeat || 2);
const agora = args.agora || path.join(root, 'build/agora');
const smoke = args.smoke === 'true';  // tests: fake engine, no llama-server

const children = [];
process.on('exit', () => children.forEach((c) => { try { c.kill('SIGKILL'); } catch {} }));
function start(cmd, argv, name) {
  const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  c.logs = '';
  c.stdout.on('data', (d) => { c.logs += d; });
  c.stderr.on('data', (d) => { c.logs += d; if (c.logs.length > 1e6) c.logs = c.logs.slice(-5e5); });
  c.on('exit', (code) => { c.exited = code ?? 'signal'; });
  c.name = name;
  children.push(c);
  return c;
}
async function until(what, fn, ms = 120000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    for (const c of children) if (c.exited !== undefined) throw new Error(`${c.name} exited (${c.exited}):\n${c.logs.slice(-3000)}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
function request(target, body) {
  // Streams one completion; resolves {ttft, t_first, t_last, t_end, tokens,
  // prompt_tokens, times} (times: arrival of each content chunk).
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const mod = target.url.startsWith('https') ? https : http;
    const req = mod.request(target.url + '/v1/chat/completions', {
      method: 'POST', agent: target.agent,
      headers: { 'content-type': 'application/json', ...(target.key ? { authorization: `Bearer ${target.key}` } : {}) },
    }, (res) => {
      if (res.statusCode !== 200) {
        let b = '';
        res.on('data', (d) => { b += d; });
        res.on('end', () => reject(new Error(`${target.name}: HTTP ${res.statusCode}: ${b}`)));
        return;
      }
      let buf = ''; let first; let last; let pieces = 0; let usage; const times = [];
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i); buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
          const j = JSON.parse(ev.slice(6));
          if (j.usage) usage = j.usage;
          if (j.choices?.[0]?.delta?.content) {
            const now = performance.now();
            if (first === undefined) first = now;
            last = now; pieces++; times.push(now);
          }
        }
      });
      res.on('end', () => resolve({ ttft: first - t0, t_first: first, t_last: last, t_end: performance.now(),
                                    tokens: usage?.completion_tokens ?? pieces, prompt_tokens: usage?.prompt_tokens, times }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
const pct = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

async function measure(target, fn) {
  try {
    return await fn();
  } catch (e) {
    for (const c of children) console.error(`--- ${c.name} (exit ${c.exited}):\n${c.logs.slice(-2000)}`);
    throw new Error(`${target.name}: ${e.message}`);
  }
}

const words = Array.from({ length: promptWords }, (_, i) => ['river', 'stone', 'light', 'harbor'][i % 4]).join(' ');
const body = (target, n, salt) => ({ model: target.model, messages: [{ role: 'user', content: `${salt} ${words}` }],
  max_tokens: n, temperature: 0, top_p: 1, ignore_eos: true, stream: true,
  stream_options: { include_usage: true }, cache_prompt: false });

// One measurement: `streams` concurrent requests, each with its own prompt
// (no shared prefix).
async function measureOrThrow(target, streams, r) {
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: streams },
    (_, k) => request(target, body(target, maxTokens, `s${r}-${k}-${Date.now()}`))));
  const decodeStart = Math.min(...res.map((x) => x.t_first));
  const decodeEnd = Math.max(...res.map((x) => x.t_last));
  const tokens = res.reduce((a, x) => a + x.tokens - 1, 0);
  // Aggregate decode: tokens per second while all `streams` decode at once,
  // i.e. over [the last stream's first token, the first stream's last
  // token], counting each stream's chunks that arrive inside (a chunk
  // weighs its stream's tokens ÷ chunks). A server that prefills one
  // stream's prompt while others already decode (agora) and one that
  // prefills them all first (llama-server) are then compared on the same
  // work: batched decode steps.
  const steadyStart = Math.max(...res.map((x) => x.t_first));
  const steadyEnd = Math.min(...res.map((x) => x.t_last));
  let steadyTokens = 0;
  for (const x of res) {
    const w = x.tokens / x.times.length;
    steadyTokens += w * x.times.filter((t) => t > steadyStart && t <= steadyEnd).length;
  }
  // undefined when the streams never all decode at once.
  const steady = steadyEnd > steadyStart && steadyTokens >= streams ? steadyTokens / ((steadyEnd - steadyStart) / 1000) : undefined;
  const row = {
    streams,
    ttft_ms_p50: pct(res.map((x) => x.ttft), 0.5),
    per_stream_tok_s: pct(res.map((x) => (x.tokens - 1) / ((x.t_last - x.t_first) / 1000)), 0.5),
    // One stream: its own decode rate.
    aggregate_tok_s: streams === 1 ? (res[0].tokens - 1) / ((res[0].t_last - res[0].t_first) / 1000) : steady,
    steady_window_s: (steadyEnd - steadyStart) / 1000,
    // First stream's first token to the last token, every token after each
    // stream's first (the figure earlier runs reported as aggregate).
    window_tok_s: tokens / ((decodeEnd - decodeStart) / 1000),
    prompt_tokens: res[0].prompt_tokens,
    pp_tok_s: res[0].prompt_tokens / (pct(res.map((x) => x.ttft), 0) / 1000),
    wall_s: (performance.now() - t0) / 1000,
  };
  // Batch throughput: every generated token over the wall time from
  // submitting the batch to its last byte (prefill scheduling included).
  row.batch_tok_s = res.reduce((a, x) => a + x.tokens, 0) / row.wall_s;
  return row;
}

// The median run (by aggregate tok/s) of `repeat`, with the spread.
function summarize(runs) {
  const sorted = [...runs].sort((a, b) => (a.aggregate_tok_s ?? 0) - (b.aggregate_tok_s ?? 0));
  const med = sorted[Math.floor((sorted.length - 1) / 2)];
  const spread = (100 * (sorted.at(-1).aggregate_tok_s - sorted[0].aggregate_tok_s)) / med.aggregate_tok_s;
  return { ...med, aggregate_spread: spread, runs: runs.map((x) => x.aggregate_tok_s) };
}

// Benchmark keys: limits far above any load here, so the rate limiter runs
// its full admission and settlement path on every request without refusing.
const UNLIMITED_KEY = ['--rpm', '1000000000000', '--tpm', '1000000000000', '--max-concurrent', '1000000000'];

async function agoraTarget() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agora-peer-'));
  const token = execFileSync(agora, ['providers', 'register', '--data-dir', dir, '--name', 'bench']).toString().trim();
  const key = execFileSync(agora, ['keys', 'create', '--data-dir', dir, '--name', 'bench', ...UNLIMITED_KEY]).toString().trim();
  start(agora, ['gateway', '--data-dir', dir, '--listen', '127.0.0.1:0'], 'agora gateway');
  const info = await until('gateway.json', async () => JSON.parse(fs.readFileSync(path.join(dir, 'gateway.json'), 'utf8')));
  const nodeArgs = ['node', '--gateway', info.node_url.replace(/\/v1\/node$/, ''), '--token', token, '--ca-cert', info.ca_cert,
                    '--data-dir', path.join(dir, 'node'), '--slots', String(slots), '--threads', String(threads), '--ctx', String(ctx)];
  if (smoke) nodeArgs.push('--engine', 'fake', '--fake', `name=bench,slots=${slots},ctx-per-slot=${ctx},token-interval-us=2000`);
  else nodeArgs.push('--model', `bench=${model}`);
  start(agora, nodeArgs, 'agora node');
  const agent = new https.Agent({ ca: fs.readFileSync(info.ca_cert), keepAlive: true, maxSockets: 64 });
  const t = { name: 'agora (gateway)', url: info.base_url, key, agent, model: 'bench' };
  await until('the node to connect', () => new Promise((resolve) => {
    https.get(info.base_url + '/readyz', { agent }, (r) => { r.resume(); resolve(r.statusCode === 200); }).on('error', () => resolve(false));
  }));
  return t;
}

async function llamaServerTarget() {
  const bin = execFileSync(path.join(root, 'scripts/build-llama-server'), { stdio: ['ignore', 'pipe', 'inherit'] }).toString().trim();
  const port = 20000 + Math.floor(Math.random() * 20000);
  start(bin, ['-m', model, '--host', '127.0.0.1', '--port', String(port), '-t', String(threads), '-tb', String(threads),
              '-np', String(slots), '-c', String(slots * ctx), '--no-webui', '-b', '512'], 'llama-server');
  const url = `http://127.0.0.1:${port}`;
  // No keep-alive: llama-server's HTTP library closes idle keep-alive
  // sockets, and a request sent on one just as it closes is a hang-up.
  const agent = new http.Agent({ keepAlive: false, maxSockets: 64 });
  await until('llama-server health', () => new Promise((resolve) => {
    http.get(url + '/health', { agent: false }, (r) => { r.resume(); resolve(r.statusCode === 200); }).on('error', () => resolve(false));
  }));
  return { name: 'llama-server', url, agent, model: 'bench' };
}

// Both servers stay up (each idle while the other is measured) and the
// runs alternate, A B B A …, so drift on the machine hits both alike.
const targets = [await agoraTarget()];
if (!smoke) targets.push(await llamaServerTarget());
for (const t of targets) await measure(t, () => request(t, body(t, 4, 'warmup')));
const samples = new Map(targets.map((t) => [t, new Map(streamsList.map((n) => [n, []]))]));
for (const streams of streamsList) {
  for (let r = 0; r < repeat; r++) {
    const order = r % 2 ? [...targets].reverse() : targets;
    for (const t of order) {
      console.error(`measuring ${t.name}: ${streams} stream(s), run ${r + 1}/${repeat}`);
      samples.get(t).get(streams).push(await measure(t, () => measureOrThrow(t, streams, r)));
    }
  }
}
for (const c of children) c.kill('SIGTERM');
const results = {
  config: `${smoke ? 'Smoke run: fake engine' : `Model ${path.basename(model)}`}, ${threads} threads, ${slots} slots × ${ctx} tokens of context, ` +
          `~${promptWords}-word prompts (distinct per stream), ${maxTokens} tokens, greedy with ignore_eos; ` +
          `median of ${repeat} alternating runs per level.`,
  agora: streamsList.map((n) => summarize(samples.get(targets[0]).get(n))),
};
if (targets[1]) results.llama_server = streamsList.map((n) => summarize(samples.get(targets[1]).get(n)));

const fmt = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(1));
console.log(results.config);
console.log('| streams | server | TTFT p50 ms | prompt tok/s | per-stream tok/s | aggregate tok/s | ratio (agora / llama-server) |');
console.log('|---|---|---|---|---|---|---|');
results.agora.forEach((r, i) => {
  const l = results.llama_server?.[i];
  console.log(`| ${r.streams} | agora via gateway | ${fmt(r.ttft_ms_p50)} | ${fmt(r.pp_tok_s)} | ${fmt(r.per_stream_tok_s)} | ${fmt(r.aggregate_tok_s)} | ${l ? (r.aggregate_tok_s / l.aggregate_tok_s).toFixed(3) : '-'} |`);
  if (l) console.log(`| ${l.streams} | llama-server | ${fmt(l.ttft_ms_p50)} | ${fmt(l.pp_tok_s)} | ${fmt(l.per_stream_tok_s)} | ${fmt(l.aggregate_tok_s)} | |`);
});
if (args.json) fs.writeFileSync(args.json, JSON.stringify(results, null, 2));
process.exit(0);
