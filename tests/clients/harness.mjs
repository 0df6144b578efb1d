// Test harness for the client conformance and fault tests: starts real
// `agora gateway` and `agora node` processes on port 0 in temp dirs, talks to
// them over HTTPS with the gateway's own CA, and cleans everything up.
//
// Environment:
//   AGORA_BIN         the agora binary (default: ../../build/agora)
//   AGORA_TEST_MODEL  the tiny llama model; synthesised here when missing
//   AGORA_KEEP_TMP=1  keep the temp dirs (data dirs, logs) for debugging
//
// Trusting the gateway's CA. Each gateway makes a fresh self-signed CA in
// DATA_DIR/tls/ca.pem when it first starts, so the CA exists only after the
// test process is running. NODE_EXTRA_CA_CERTS is read once at process start
// (too early), Node 20 has no API to add a root to the global store, and
// undici (behind the global fetch) cannot be imported by name to build an
// Agent with a `ca`. So every HTTPS call here goes through node:https with an
// explicit `ca` (only that CA is trusted; the hostname is checked as usual),
// and the OpenAI SDK gets a small WHATWG-fetch adapter over the same
// https.Agent (`makeFetch`): the SDK's own request building, SSE parsing,
// error typing and abort handling all run unchanged on top of it. The
// adapter streams response bodies (Readable.toWeb), so SSE arrives chunk by
// chunk exactly as the gateway writes it.
//
// Synchronisation is by events or by polling a condition with a short
// interval and a hard deadline (`waitFor`); there are no fixed sleeps.
//
// Every spawned process's stdout and stderr are captured; when a test fails,
// afterEach prints the logs of every process that was alive during it.
// Processes a test started are killed when it ends (afterEach), those a
// before hook started at the end of the file (after), and any left, as a
// last resort, when the test process exits.

import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { after, afterEach, beforeEach } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

export const AGORA_BIN = process.env.AGORA_BIN || fileURLToPath(new URL('../../build/agora', import.meta.url));
export const TEST_MODEL =
  process.env.AGORA_TEST_MODEL || path.join(os.tmpdir(), 'agora-clients-model', 'tiny.gguf');

const kLogCap = 1 << 20;  // bytes of each stream kept per process
const kDumpBytes = 24 * 1024;  // bytes of each stream printed on failure

// ---------------------------------------------------------------------------
// Waiting

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// An error that makes waitFor give up at once (the condition can no longer
// come true, e.g. the process it waits on has exited).
export class Fatal extends Error {}

// Polls `fn` (sync or async) every `intervalMs` until it returns a truthy
// value, which is returned; throws after `timeoutMs` with the last value or
// error, or at once when `fn` throws a Fatal. This is waiting for a
// condition with a deadline, not a fixed sleep.
export async function waitFor(what, fn, { timeoutMs = 10000, intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      if (e instanceof Fatal) throw new Error(`gave up waiting for ${what}: ${e.message}`);
      last = e;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.stack || last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await delay(intervalMs);
  }
}

// Resolves with `promise`'s value, or rejects after `ms` naming `what`.
export async function withTimeout(what, promise, ms) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Processes

const live = new Set();  // Proc objects still running
const tempDirs = [];
const agents = new Set();
let aliveAtTestStart = [];
let inTest = false;  // between beforeEach and afterEach
const testProcs = [];  // started by the running test (not by a before hook)
const testAgents = [];

export class Proc {
  // `env`: extra environment variables for the process.
  constructor(name, args, { env } = {}) {
    this.name = name;
    this.args = args;
    this.out = '';
    this.err = '';
    this.startedAt = Date.now();
    this.exitedAt = undefined;
    this.code = undefined;
    this.signalName = undefined;
    this.stopRequested = false;  // the harness sent a signal meant to end it
    this.listeners = new Set();
    this.child = spawn(AGORA_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'],
                                         env: env ? { ...process.env, ...env } : process.env });
    this.pid = this.child.pid;
    live.add(this);
    if (inTest) testProcs.push(this);
    const append = (key) => (chunk) => {
      this[key] += chunk;
      if (this[key].length > 2 * kLogCap) this[key] = this[key].slice(-kLogCap);
      for (const l of this.listeners) l();
    };
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', append('out'));
    this.child.stderr.on('data', append('err'));
    this.exited = new Promise((resolve) => {
      const done = (code, signal, error) => {
        if (this.exitedAt !== undefined) return;
        this.exitedAt = Date.now();
        this.code = code;
        this.signalName = signal;
        if (error) this.err += `\n[harness] spawn failed: ${error.message}\n`;
        live.delete(this);
        for (const l of this.listeners) l();
        resolve({ code, signal });
      };
      // 'close' (not 'exit') so that all output has been read.
      this.child.on('close', (code, signal) => done(code, signal));
      this.child.on('error', (e) => done(null, null, e));
    });
  }

  get running() {
    return this.exitedAt === undefined;
  }

  // Sends a signal if the process still runs.
  signal(sig) {
    if (['SIGTERM', 'SIGKILL', 'SIGINT'].includes(sig)) this.stopRequested = true;
    if (this.running) {
      try {
        process.kill(this.pid, sig);
      } catch {
        // already gone
      }
    }
  }

  // SIGKILL, then waits for the exit.
  async kill() {
    this.signal('SIGCONT');
    this.signal('SIGKILL');
    await this.exited;
  }

  // Sends `sig` and waits up to `timeoutMs` for the exit, which is returned
  // ({code, signal}); on timeout kills the process and throws.
  async stop({ sig = 'SIGTERM', timeoutMs = 15000 } = {}) {
    this.signal(sig);
    try {
      return await withTimeout(`${this.name} exiting after ${sig}`, this.exited, timeoutMs);
    } catch (e) {
      await this.kill();
      throw new Error(`${e.message}\n${this.logs()}`);
    }
  }

  // Waits until stdout (or stderr with {stream: 'err'}) matches `re`;
  // returns the match. Fails fast if the process exits first.
  waitForOutput(re, { stream = 'out', timeoutMs = 15000 } = {}) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        const m = this[stream].match(re);
        if (m) {
          finish();
          resolve(m);
        } else if (!this.running) {
          finish();
          reject(new Error(`${this.name} exited (code ${this.code}, signal ${this.signalName}) ` +
                           `before printing ${re}\n${this.logs()}`));
        }
      };
      const finish = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.name} did not print ${re} within ${timeoutMs} ms\n${this.logs()}`));
      }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  logs(bytes = kDumpBytes) {
    const tail = (s) => (s.length > bytes ? `[…${s.length - bytes} bytes cut…]` + s.slice(-bytes) : s);
    const status = this.running ? 'running' : `exited code=${this.code} signal=${this.signalName}`;
    return `----- ${this.name} (pid ${this.pid}, ${status})\n` +
           `$ ${AGORA_BIN} ${this.args.join(' ')}\n` +
           `--- stdout\n${tail(this.out)}\n--- stderr\n${tail(this.err)}\n-----`;
  }
}

// Runs an agora CLI command to completion; returns {stdout, stderr}.
export function agora(args, { timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(AGORA_BIN, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`agora ${args.join(' ')} failed: ${error.message}\nstdout: ${stdout}\nstderr: ${stderr}`));
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

export async function tempDir(prefix = 'agora-clients-') {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

function killAllNow() {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGCONT');
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

process.on('exit', killAllNow);
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.once(sig, () => {
    killAllNow();
    process.exit(128 + n);
  });
}

beforeEach(() => {
  aliveAtTestStart = [...live];
  inTest = true;
});

// On failure, prints the logs of every process alive during the test. Then
// ends what the test started (what before hooks started lives on).
afterEach(async (t) => {
  inTest = false;
  if (t.passed === false) {
    const relevant = [...aliveAtTestStart, ...testProcs];
    process.stderr.write(`\n===== logs of the agora processes alive during the failed test "${t.name}"\n`);
    for (const p of relevant) process.stderr.write(p.logs() + '\n');
  }
  await Promise.all(testProcs.splice(0).map((p) => p.kill()));
  for (const a of testAgents.splice(0)) a.destroy();
});

after(async () => {
  await Promise.all([...live].map((p) => p.kill()));
  for (const a of agents) a.destroy();
  if (process.env.AGORA_KEEP_TMP) {
    process.stderr.write(`kept temp dirs: ${tempDirs.join(' ')}\n`);
    return;
  }
  await Promise.all(tempDirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
});

// ---------------------------------------------------------------------------
// The tiny llama model

// Returns the path of the tiny test model, synthesising it when missing: into
// a unique temp name in the same directory, then rename(2) over the final
// name, so concurrent test files never see a partial file and need no lock
// (synthesis is deterministic: every writer produces the same bytes).
export async function ensureTinyModel(file = TEST_MODEL) {
  if (fs.existsSync(file)) return file;
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await agora(['model', 'synth', '--preset', 'tiny', '--seed', '1', '--out', tmp], { timeoutMs: 120000 });
    await fsp.rename(tmp, file);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  return file;
}

// The model_sha256 the fake engine reports for a model `name`.
export function fakeSha256(name) {
  return createHash('sha256').update(`fake:${name}`).digest('hex');
}

// ---------------------------------------------------------------------------
// HTTPS

function abortError(signal) {
  if (signal?.reason instanceof Error) return signal.reason;
  return new DOMException('This operation was aborted', 'AbortError');
}

// A WHATWG fetch over node:https with `agent` (which carries the CA). Enough
// of fetch for the OpenAI SDK: method, headers, string/bytes/stream bodies,
// AbortSignal (before and during the response body), streamed bodies.
export function makeFetch(agent) {
  return function fetch(input, init = {}) {
    return new Promise((resolve, reject) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
      const method = (init.method || 'GET').toUpperCase();
      const signal = init.signal;
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const headers = {};
      new Headers(init.headers || {}).forEach((v, k) => {
        headers[k] = v;
      });
      let body = init.body;
      if (body instanceof URLSearchParams) body = body.toString();
      if (body instanceof ArrayBuffer) body = Buffer.from(body);
      else if (ArrayBuffer.isView(body)) body = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      let res;
      const req = https.request(url, { method, headers, agent }, (r) => {
        res = r;
        const h = new Headers();
        for (let i = 0; i < r.rawHeaders.length; i += 2) h.append(r.rawHeaders[i], r.rawHeaders[i + 1]);
        const nullBody = method === 'HEAD' || [101, 204, 205, 304].includes(r.statusCode);
        if (nullBody) r.resume();
        resolve(new Response(nullBody ? null : Readable.toWeb(r),
                             { status: r.statusCode, statusText: r.statusMessage, headers: h }));
      });
      const onAbort = () => {
        const err = abortError(signal);
        if (res) res.destroy(err);
        req.destroy(err);
        reject(err);
      };
      if (signal) {
        signal.addEventListener('abort', onAbort, { once: true });
        req.on('close', () => {
          // The request is over; a later abort may still cut a body being read.
          if (!res || res.complete) signal.removeEventListener('abort', onAbort);
        });
      }
      req.on('error', reject);  // no-op once resolved; body errors reach the stream
      if (body == null) {
        req.end();
      } else if (typeof body === 'string' || Buffer.isBuffer(body)) {
        req.end(body);
      } else if (body instanceof ReadableStream || typeof body[Symbol.asyncIterator] === 'function') {
        (body instanceof ReadableStream ? Readable.fromWeb(body) : Readable.from(body)).pipe(req);
      } else {
        req.destroy();
        reject(new TypeError(`makeFetch: unsupported body type ${Object.prototype.toString.call(body)}`));
      }
    });
  };
}

// Splits an SSE body into its events' data fields.
export function sseData(text) {
  return text
    .split('\n\n')
    .filter((e) => e.length > 0)
    .map((e) =>
      e
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n'));
}

// Parses Prometheus text into [{name, labels, value}].
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Gateway and nodes

// Registers a provider in `dataDir`; returns {id, token}.
export async function registerProvider(dataDir, name) {
  const { stdout, stderr } = await agora(['providers', 'register', '--data-dir', dataDir, '--name', name]);
  const token = stdout.trim();
  const id = (`${stderr}\n${stdout}`.match(/\b(prov_[A-Za-z0-9]+)/) || [])[1];
  if (!token.startsWith('pt_') || !id) {
    throw new Error(`unexpected output of providers register: stdout=${stdout} stderr=${stderr}`);
  }
  return { id, token };
}

export class Gateway {
  // Starts `agora gateway` on 127.0.0.1:`port` (0 = any) with `set`
  // (KEY=VALUE settings) and waits until it listens and has written
  // gateway.json. `dataDir` defaults to a fresh temp dir; pass an old one
  // (and its port) to restart a gateway. Creates an API key (`key`) for the
  // harness's own polling.
  //
  // `providers` (names) are registered before the gateway starts and come
  // back in `gw.providers[name]` = {id, token}. Register them up front: a
  // running gateway learns of new providers only on its next reload (about
  // a second later), and a node whose token is refused stops for good (401
  // is fatal to `agora node`), so registering while running would race.
  static async start({ dataDir, port = 0, set = {}, name = 'gateway', providers = [], env } = {}) {
    dataDir = dataDir || (await tempDir('agora-gw-'));
    const registered = {};
    for (const p of providers) registered[p] = await registerProvider(dataDir, p);
    const args = ['--log-level', 'info', 'gateway', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`];
    for (const [k, v] of Object.entries(set)) args.push('--set', `${k}=${v}`);
    const proc = new Proc(name, args, { env });
    const m = await proc.waitForOutput(/agora gateway listening on (https:\/\/127\.0\.0\.1:(\d+))/);
    const infoPath = path.join(dataDir, 'gateway.json');
    const info = await waitFor(`${name}: ${infoPath} for pid ${proc.pid}`, async () => {
      if (!proc.running) throw new Fatal(`${name} exited\n${proc.logs()}`);
      const j = JSON.parse(await fsp.readFile(infoPath, 'utf8'));
      return j.pid === proc.pid ? j : null;
    });
    const gw = new Gateway(proc, dataDir, m[1], Number(m[2]), info);
    gw.providers = registered;
    gw.key = await gw.createKey('harness');
    return gw;
  }

  constructor(proc, dataDir, baseUrl, port, info) {
    this.proc = proc;
    this.dataDir = dataDir;
    this.baseUrl = baseUrl;
    this.port = port;
    this.info = info;
    this.caPath = info.ca_cert;
    this.ca = fs.readFileSync(info.ca_cert, 'utf8');
    this.nodeUrl = `wss://127.0.0.1:${port}`;
    this.agent = new https.Agent({ ca: this.ca, keepAlive: true });
    agents.add(this.agent);
    if (inTest) testAgents.push(this.agent);
    this.fetch = makeFetch(this.agent);
    this.nodes = [];
  }

  // Throws a Fatal (ends any waitFor) when the gateway process has exited.
  assertRunning() {
    if (!this.proc.running) {
      throw new Fatal(`the gateway exited (code ${this.proc.code}, signal ${this.proc.signalName})\n` +
                      this.proc.logs());
    }
  }

  // The OpenAI SDK client for `apiKey`; no retries, so every error is seen.
  client(apiKey = this.key, options = {}) {
    return new OpenAI({ baseURL: `${this.baseUrl}/v1`, apiKey, fetch: this.fetch, maxRetries: 0,
                        timeout: 60000, ...options });
  }

  // One request on a fresh connection; returns {status, headers, body}.
  // `body` may be a string, Buffer or object (sent as JSON); `key` sets the
  // Authorization header.
  raw(method, urlPath, { body, key, headers = {}, timeoutMs = 60000 } = {}) {
    return new Promise((resolve, reject) => {
      const h = { ...headers };
      if (key) h.authorization = `Bearer ${key}`;
      if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
        body = JSON.stringify(body);
        h['content-type'] ??= 'application/json';
      }
      const req = https.request(`${this.baseUrl}${urlPath}`, { method, headers: h, ca: this.ca, agent: false },
                                (res) => {
                                  const chunks = [];
                                  res.on('data', (c) => chunks.push(c));
                                  res.on('error', reject);
                                  res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
                                                                body: Buffer.concat(chunks).toString('utf8') }));
                                });
      req.on('upgrade', (res, socket) => {  // a 101: report it, do not speak WebSocket
        socket.destroy();
        resolve({ status: res.statusCode, headers: res.headers, body: '' });
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${urlPath}: no answer in ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  // A TLS connection to the gateway (for hand-written HTTP).
  connectTls() {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: this.port, ca: this.ca });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  }

  async metrics() {
    const r = await this.raw('GET', '/metrics');
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.body}`);
    return parseMetrics(r.body);
  }

  // The sum of the samples of metric `name` whose labels include `labels`;
  // undefined when there is none.
  async metric(name, labels = {}) {
    const samples = (await this.metrics()).filter(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    return samples.length ? samples.reduce((a, s) => a + s.value, 0) : undefined;
  }

  async waitForMetric(name, pred, { labels = {}, timeoutMs = 10000 } = {}) {
    let last;
    try {
      return await waitFor(`${name}${JSON.stringify(labels)} to satisfy ${pred}`, async () => {
        this.assertRunning();
        last = await this.metric(name, labels);
        return pred(last) ? { value: last } : null;
      }, { timeoutMs });
    } catch (e) {
      e.message += ` (last value ${last})`;
      throw e;
    }
  }

  async models(key = this.key) {
    const r = await this.raw('GET', '/v1/models', { key });
    if (r.status !== 200) throw new Error(`/v1/models answered ${r.status}: ${r.body}`);
    return JSON.parse(r.body).data;
  }

  // Waits until /v1/models lists `model` served by at least `nodes` nodes;
  // returns its entry. Gives up at once when the gateway or one of its nodes
  // exits unasked.
  waitForModel(model, { nodes = 1, timeoutMs = 15000 } = {}) {
    return waitFor(`model ${model} on ${nodes} node(s) of ${this.baseUrl}`, async () => {
      this.assertRunning();
      for (const n of this.nodes) {
        if (!n.running && !n.stopRequested) throw new Fatal(`${n.name} exited\n${n.logs()}`);
      }
      const m = (await this.models()).find((x) => x.id === model);
      return m && m.agora && m.agora.nodes >= nodes ? m : null;
    }, { timeoutMs });
  }

  // Creates an API key and, as the gateway picks up new keys
  // asynchronously (within about a second), waits until it is accepted.
  // `args`: more `agora keys create` flags (--rpm 3, --admin, ...).
  async createKey(name, args = []) {
    const { stdout } = await agora(['keys', 'create', '--data-dir', this.dataDir, '--name', name, ...args]);
    const key = stdout.trim();
    if (args.includes('--admin')) {
      if (!key.startsWith('at_')) throw new Error(`unexpected output of keys create --admin: ${stdout}`);
      await waitFor(`the gateway to accept the admin token ${name}`, async () => {
        const r = await this.raw('GET', '/admin/v1/keys', { key });
        if (r.status !== 200 && r.status !== 401) throw new Error(`/admin/v1/keys answered ${r.status}: ${r.body}`);
        return r.status === 200;
      }, { timeoutMs: 10000, intervalMs: 50 });
      return key;
    }
    if (!key.startsWith('gk_')) throw new Error(`unexpected output of keys create: ${stdout}`);
    await waitFor(`the gateway to accept the new key ${name}`, async () => {
      this.assertRunning();
      const r = await this.raw('GET', '/v1/models', { key });
      if (r.status !== 200 && r.status !== 401) throw new Error(`/v1/models answered ${r.status}: ${r.body}`);
      return r.status === 200;
    }, { timeoutMs: 10000, intervalMs: 50 });
    return key;
  }

  async revokeKey(key) {
    await agora(['keys', 'revoke', '--data-dir', this.dataDir, key]);
  }

  // Starts a node for provider `token`. Either `model` (a GGUF file, served
  // as `modelName`) or `fake` (a --fake spec). Does not wait for it to
  // connect; see waitForModel.
  startNode({ token, model, modelName, fake, slots, nodeId, backoffMaxMs = 500, args = [], name, dataDir } = {}) {
    // Each node its own identity key, in a temp dir (never the source tree),
    // unless the test gives one (to restart a node as itself).
    if (!dataDir) {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agora-node-'));
      tempDirs.push(dataDir);
    }
    const a = ['--log-level', 'info', 'node', '--gateway', this.nodeUrl, '--token', token, '--ca-cert', this.caPath,
               '--data-dir', dataDir, '--backoff-max-ms', String(backoffMaxMs)];
    if (model) a.push('--model', modelName ? `${modelName}=${model}` : model);
    if (fake !== undefined) a.push('--engine', 'fake', '--fake', fake);
    if (slots !== undefined) a.push('--slots', String(slots));
    if (nodeId) a.push('--node-id', nodeId);
    a.push(...args);
    const node = new Proc(name || `node ${nodeId || this.nodes.length + 1}`, a);
    this.nodes.push(node);
    return node;
  }

  // SIGTERM and wait; returns {code, signal}.
  stop(options) {
    return this.proc.stop(options);
  }
}


// A malicious gateway for the proxy: forwards to `gw` with the gateway's own
// certificate (so a client's CA check passes), keeps every request in
// `state.seen`, and lets a test rewrite answer bodies with
// `state.rewrite(text, url)` (only for URLs starting with `only`, when given).
export async function startGatewayMitm(gw, { only } = {}) {
  const tlsDir = path.join(gw.dataDir, 'tls');
  const files = fs.readdirSync(tlsDir);
  const certFile = files.find((f) => /server.*\.pem$|cert\.pem$/.test(f) && !/key/.test(f) && f !== 'ca.pem');
  const keyFile = files.find((f) => /key\.pem$/.test(f) && !/ca/.test(f));
  if (!certFile || !keyFile) throw new Error(`no server certificate and key in ${tlsDir}: ${files}`);
  const state = { rewrite: null, seen: [] };
  const server = https.createServer({ cert: fs.readFileSync(path.join(tlsDir, certFile)),
                                      key: fs.readFileSync(path.join(tlsDir, keyFile)) }, (req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      state.seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      const up = https.request(`${gw.baseUrl}${req.url}`, { method: req.method, headers: req.headers, ca: gw.ca, agent: false },
                               (ur) => {
                                 const out = [];
                                 ur.on('data', (c) => out.push(c));
                                 ur.on('end', () => {
                                   let text = Buffer.concat(out).toString('utf8');
                                   if (state.rewrite && (!only || req.url.startsWith(only))) text = state.rewrite(text, req.url);
                                   const headers = { ...ur.headers };
                                   delete headers['content-length'];
                                   delete headers['transfer-encoding'];
                                   res.writeHead(ur.statusCode, headers);
                                   res.end(text);
                                 });
                               });
      up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
      up.end(body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  after(() => server.close());
  return { url: `https://127.0.0.1:${server.address().port}`, state };
}
