// Shared helpers of the benchmark drivers (bench/run.mjs and friends):
// child processes with captured logs, bounded polling, /proc sampling,
// Prometheus histogram percentiles, markdown tables.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

// ---------------------------------------------------------------- processes

const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch {} } });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// Starts a child whose stdout+stderr are kept (the last ~512 KiB) for
// diagnostics. `opts.env` adds to the environment.
export function start(cmd, argv, name, opts = {}) {
  const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) },
                               cwd: opts.cwd });
  c.name = name;
  c.logs = '';
  const keep = (d) => { c.logs += d; if (c.logs.length > 1 << 20) c.logs = c.logs.slice(-(1 << 19)); };
  c.stdout.on('data', keep);
  c.stderr.on('data', keep);
  c.exitPromise = new Promise((resolve) => c.on('exit', (code, sig) => {
    c.exited = code ?? sig; children.delete(c); resolve(c.exited);
  }));
  children.add(c);
  return c;
}

export async function stop(c, signal = 'SIGTERM', ms = 10000) {
  if (!c || c.exited !== undefined) return;
  c.kill(signal);
  const t = setTimeout(() => c.kill('SIGKILL'), ms);
  await c.exitPromise;
  clearTimeout(t);
}

export function describeChildren() {
  return [...children].map((c) => `--- ${c.name} (pid ${c.pid}):\n${c.logs.slice(-3000)}`).join('\n');
}

// Polls fn() until it returns a truthy value; fails when the deadline
// passes or a watched child exits (with its log).
export async function until(what, fn, { ms = 60000, watch = [...children], every = 50 } = {}) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await Promise.resolve().then(fn).catch(() => undefined);
    if (v) return v;
    for (const c of watch) {
      if (c.exited !== undefined) throw new Error(`${c.name} exited (${c.exited}) while waiting for ${what}:\n${c.logs.slice(-3000)}`);
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// Runs a program to completion; resolves {code, stdout, stderr}.
export function run(cmd, argv, { env, cwd, input } = {}) {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...(env || {}) }, cwd });
    let stdout = ''; let stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19)); });
    c.on('error', reject);
    c.on('exit', (code) => resolve({ code, stdout, stderr }));
    c.stdin.end(input ?? '');
  });
}

// ---------------------------------------------------------------- /proc

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

// CPU seconds (user+system) and resident memory of a process.
export function procUsage(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpu_s = (Number(f[11]) + Number(f[12])) / CLK_TCK;  // utime, stime (fields 14, 15)
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1] || 0);
  return { cpu_s, rss_kb: kb('VmRSS'), hwm_kb: kb('VmHWM') };
}

// Samples processes while `work` runs: CPU% over the whole run and peak
// RSS (polled every 100 ms).
export async function sampled(pids, work) {
  const before = pids.map((p) => procUsage(p));
  const peak = before.map((u) => u.rss_kb);
  const t0 = performance.now();
  const timer = setInterval(() => {
    pids.forEach((p, i) => { try { peak[i] = Math.max(peak[i], procUsage(p).rss_kb); } catch {} });
  }, 100);
  try {
    const result = await work();
    const wall = (performance.now() - t0) / 1000;
    const after = pids.map((p) => procUsage(p));
    const usage = pids.map((_, i) => ({
      cpu_percent: (100 * (after[i].cpu_s - before[i].cpu_s)) / wall,
      rss_mib: after[i].rss_kb / 1024,
      peak_rss_mib: Math.max(peak[i], after[i].rss_kb) / 1024,
    }));
    return { result, usage };
  } finally {
    clearInterval(timer);
  }
}

// ---------------------------------------------------------------- machine

export function machine(root) {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [])[1] || os.cpus()[0]?.model;
  const git = (args) => { try { return execFileSync('git', ['-C', root, ...args]).toString().trim(); } catch { return ''; } };
  const dirty = git(['status', '--porcelain', '--untracked-files=no']) !== '';
  return {
    cpu: cpu?.replace(/\s+/g, ' ').trim(),
    cores: os.cpus().length,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    commit: (git(['rev-parse', '--short', 'HEAD']) || 'unknown') + (dirty ? '+dirty' : ''),
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    load_average: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  };
}

// ---------------------------------------------------------------- metrics

export function getText(url, ca, headers = {}) {
  return new Promise((resolve, reject) => {
    https.get(url, { ca, agent: false, headers }, (r) => {
      let b = '';
      r.setEncoding('utf8');
      r.on('data', (d) => { b += d; });
      r.on('end', () => resolve({ status: r.statusCode, body: b }));
    }).on('error', reject);
  });
}

// Cumulative histogram buckets of `name` from Prometheus text: [[le, count]].
export function histogram(text, name) {
  const out = [];
  const re = new RegExp(`^${name}_bucket\\{(?:[^}]*,)?le="([^"]+)"\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) out.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
  return out;
}

// Percentile q of the observations between two scrapes of one histogram,
// linearly interpolated inside the bucket (as Prometheus'
// histogram_quantile does). Returns {count, p50, p90, p99, p999} in seconds.
export function histogramDelta(before, after) {
  const d = after.map(([le, c], i) => [le, c - (before[i]?.[1] ?? 0)]);
  const count = d.length ? d[d.length - 1][1] : 0;
  const q = (p) => {
    if (!count) return undefined;
    const rank = p * count;
    let prevLe = 0; let prevC = 0;
    for (const [le, c] of d) {
      if (c >= rank) {
        if (le === Infinity) return prevLe;
        return prevLe + ((le - prevLe) * (rank - prevC)) / Math.max(c - prevC, 1);
      }
      prevLe = le; prevC = c;
    }
    return prevLe;
  };
  return { count, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999) };
}

// ---------------------------------------------------------------- output

export function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export const num = (x, digits = 0) => (x === undefined || x === null || Number.isNaN(x) ? '—'
  : Number(x).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));

// Replaces the block between <!-- BEGIN bench:id --> and <!-- END bench:id -->
// in `doc`; appends a new block when there is none.
export function replaceBlock(doc, id, body) {
  const begin = `<!-- BEGIN bench:${id} (generated by make bench; edits here are overwritten) -->`;
  const end = `<!-- END bench:${id} -->`;
  const re = new RegExp(`<!-- BEGIN bench:${id}[^>]*-->[\\s\\S]*?<!-- END bench:${id} -->`);
  const block = `${begin}\n${body.trim()}\n${end}`;
  return re.test(doc) ? doc.replace(re, () => block) : `${doc.trimEnd()}\n\n${block}\n`;
}

export function writeFileAtomic(file, data) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

export const log = (...a) => console.error('[bench]', ...a);
