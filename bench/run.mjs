// `make bench`: runs every benchmark of issue 4 and rewrites the generated
// blocks of docs/BENCHMARKS.md (and the plots under docs/bench/) with the
// machine, the commit and the exact commands.
//
//   node bench/run.mjs [--only gateway,streaming,node,roofline,scale,engine]
//                      [--out docs/BENCHMARKS.md] [--plots docs/bench]
//                      [--duration S] [--rates 1000,2000,5000,10000] [--repeat N]
//   node bench/run.mjs --smoke --out /tmp/b.md   # tests: seconds, no timings judged
//
// Sections:
//   gateway    agora (gateway + fake-engine node over TLS/WSS) and the Portkey
//              gateway (+ a mock OpenAI upstream) at the same fixed rates, both
//              driven by agora-load; saturation of each; latency-vs-rate plot
//   streaming  1,000 concurrent streams: TTFT and per-token forwarding overhead
//   node       provider node vs llama-server (bench/peer/node_vs_llama_server.mjs)
//   roofline   memory bandwidth and decode as a fraction of it
//   scale      idle node connections (bench/idle) and router decision time
//   engine     engine throughput (agora bench engine) and micro-benchmarks
//   e2e        plain vs sealed (through agora proxy): latency, TTFT, CPU
//   ab         not in the default set: this build's gateway overhead against
//              another build's (--baseline BIN), alternating runs
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  start, stop, until, run, sampled, machine, getText, histogram, histogramDelta, table, num,
  replaceBlock, writeFileAtomic, log, describeChildren,
} from './lib.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const flag = (name) => argv.includes(`--${name}`);
if (flag('help')) {
  // The file's opening comment, then the placement and results notes.
  const lines = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
  const head = lines.slice(0, lines.findIndex((l) => !l.startsWith('//')));
  const block = (first) => { const i = lines.findIndex((l) => l.startsWith(first)); const r = [];
    for (let j = i; j >= 0 && lines[j].startsWith('//'); j++) r.push(lines[j]); return r; };
  console.log([...head, '//', ...block('// CPU placement'), '//', ...block('// Smoke mode'), '//', ...block('// Results accumulate'),
               '//', '// Options: --only LIST, --out FILE, --plots DIR, --duration S, --rates LIST, --repeat N,',
               '//   --baseline BIN and --baseline-label NAME (section ab: this build against another build of agora),',
               '//   --ab-note TEXT (section ab: what this build changed, for the table\'s text),',
               '//   --build DIR (default build/), --json FILE (this run\'s raw results), --no-pin, --smoke, --help']
    .map((l) => l.slice(3)).join('\n'));
  process.exit(0);
}
const smoke = flag('smoke');
const build = path.resolve(opt('build', path.join(root, 'build')));
const bin = {
  agora: path.join(build, 'agora'),
  load: path.join(build, 'bench/load/agora-load'),
  mock: path.join(build, 'bench/mock_upstream/agora-mock-openai'),
  idle: path.join(build, 'bench/idle/agora-idle-nodes'),
  router: path.join(build, 'bench/agora_router_bench'),
  bandwidth: path.join(build, 'bench/agora_bandwidth'),
  micro: path.join(build, 'bench/agora_microbench'),
  kernel: path.join(build, 'bench/agora_kernel_roof'),
};
const out = path.resolve(opt('out', path.join(root, 'docs/BENCHMARKS.md')));
const plots = path.resolve(opt('plots', smoke ? path.join(os.tmpdir(), `agora-bench-plots-${process.pid}`) : path.join(root, 'docs/bench')));
const sections = (opt('only', 'gateway,e2e,streaming,node,roofline,scale,engine')).split(',');
const duration = Number(opt('duration', smoke ? 1 : 10));
const warmup = smoke ? 0 : 2;
const rates = opt('rates', smoke ? '100,200' : '1000,2000,5000,10000').split(',').map(Number);
const repeat = Number(opt('repeat', smoke ? 1 : 3));
const TOKENS = smoke ? 4 : 16;  // content tokens per answer, both gateways
const CONNECTIONS = smoke ? 16 : 128;
const rel = (p) => path.relative(root, p) || '.';

// CPU placement for the gateway comparisons: the gateway under test (agora's
// or Portkey) alone on the last core, its upstream and the load generator on
// the others, the same for both systems, so the gateway's tail is its own and
// not the scheduler's (three busy processes on two cores). This harness
// itself (it samples /proc while a run goes) stays off the gateway's core
// too. --no-pin disables. The streaming section is not pinned: 1,000
// streams keep the node and the client busier than the gateway, and one
// core cannot hold both.
const cores = os.cpus().length;
const pinning = !flag('no-pin') && cores >= 2 && !smoke;
const GATEWAY_CPUS = String(cores - 1);
const OTHER_CPUS = cores > 2 ? `0-${cores - 2}` : '0';
let pinActive = false;  // set by harnessOn for the sections that pin
const pinned = (cpus, cmd, args) => (pinActive ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args]);
// Runs fn with this process (and so what it starts unpinned) on `cpus`.
async function harnessOn(cpus, fn) {
  const set = (c) => execFileSync('taskset', ['-a', '-p', '-c', c, String(process.pid)], { stdio: 'ignore' });
  if (!pinning) return fn();
  set(cpus);
  pinActive = true;
  try { return await fn(); } finally { pinActive = false; set(`0-${cores - 1}`); }
}

const m = machine(root);
const machineLine = `${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB; Linux ${m.kernel}; Node ${m.node}; ` +
  `commit \`${m.commit}\`, ${m.date}; load average at start ${m.load_average}`;
let doc = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '# Benchmarks\n';
const results = { machine: m };
const save = (id, body) => {
  doc = replaceBlock(doc, id, body);
  writeFileAtomic(out, doc);
  log(`wrote section ${id} to ${rel(out)}`);
};

// Smoke mode (ctest bench.run_smoke) checks that each benchmark really ran:
// requests succeeded, samples were taken. Never timings.
function expect(cond, what) {
  if (smoke && !cond) throw new Error(`smoke check failed: ${what}`);
}

// Benchmark keys: limits far above any load here, so the rate limiter runs
// its full admission and settlement path on every request without refusing.
const UNLIMITED_KEY = ['--rpm', '1000000000000', '--tpm', '1000000000000', '--max-concurrent', '1000000000'];

// ---------------------------------------------------------------- set-ups

// A real gateway (TLS) and one fake-engine node (WSS) in a temp data dir.
// `agora`: the binary (another build's for the A/B section); one from
// before per-key limits existed gets a plain key.
async function marketplace({ fake, gatewaySet = [], agora = bin.agora }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agora-bench-'));
  const token = execFileSync(agora, ['providers', 'register', '--data-dir', dir, '--name', 'bench']).toString().trim();
  const limits = execFileSync(agora, ['keys', 'create', '--help']).toString().includes('--rpm') ? UNLIMITED_KEY : [];
  const key = execFileSync(agora, ['keys', 'create', '--data-dir', dir, '--name', 'bench', ...limits]).toString().trim();
  const sets = gatewaySet.flatMap((s) => ['--set', s]);
  const gateway = start(...pinned(GATEWAY_CPUS, agora, ['gateway', '--data-dir', dir, '--listen', '127.0.0.1:0', ...sets]), 'agora gateway');
  const info = await until('gateway.json', () => JSON.parse(fs.readFileSync(path.join(dir, 'gateway.json'), 'utf8')));
  // The node's identity key in the run's temp dir (builds before node
  // identities had no --data-dir).
  const nodeDir = execFileSync(agora, ['node', '--help']).toString().includes('--data-dir') ? ['--data-dir', path.join(dir, 'node')] : [];
  const node = start(...pinned(OTHER_CPUS, agora, ['node', '--gateway', info.node_url.replace(/\/v1\/node$/, ''), '--token', token,
                                                  '--ca-cert', info.ca_cert, ...nodeDir, '--engine', 'fake', '--fake', fake]),
                     'agora node (fake)');
  const ca = fs.readFileSync(info.ca_cert);
  await until('the node to register', async () => (await getText(`${info.base_url}/readyz`, ca)).status === 200);
  return {
    name: 'agora', dir, key, token, info, ca, gateway, node, pids: [gateway.pid, node.pid],
    loadArgs: ['--url', `${info.base_url}/v1/chat/completions`, '--api-key', key, '--ca-cert', info.ca_cert],
    metrics: async () => (await getText(`${info.base_url}/metrics`, ca)).body,
    async close() { await stop(node); await stop(gateway); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

// The Portkey gateway (Node.js, npm @portkey-ai/gateway) in front of
// agora-mock-openai, both on loopback over plain HTTP.
async function portkey() {
  const dir = path.join(root, 'bench/peer/portkey');
  if (!fs.existsSync(path.join(dir, 'node_modules/@portkey-ai/gateway'))) {
    throw new Error(`Portkey is not installed in ${rel(dir)} (scripts/setup --bench installs it)`);
  }
  const mock = start(...pinned(OTHER_CPUS, bin.mock, ['--port', '0', '--tokens', String(TOKENS)]), 'agora-mock-openai');
  const mockPort = await until('the mock upstream port', () => (mock.logs.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/) || [])[1]);
  const pk = await import(path.join(dir, 'portkey.mjs'));
  const gw = await pk.startPortkey({ start: (cmd, args, ...rest) => start(...pinned(GATEWAY_CPUS, cmd, args), ...rest), until, dir });
  return {
    name: 'portkey', pids: [gw.child.pid, mock.pid], version: gw.version,
    loadArgs: ['--url', `${gw.url}/v1/chat/completions`, '--api-key', 'sk-bench',
               ...pk.headers(`http://127.0.0.1:${mockPort}/v1`).flatMap((h) => ['--header', h])],
    async close() { await stop(gw.child); await stop(mock); },
  };
}

// One agora-load run against a target; returns its JSON summary plus the
// CPU% and RSS of the target's processes over the run.
async function load(target, { rate, stream = false, secs = duration, warm = warmup, connections = CONNECTIONS,
                              maxTokens = TOKENS, timeout = 10, model = 'fake' }) {
  const args = [...target.loadArgs, '--model', model, '--max-tokens', String(maxTokens), '--rate', String(rate),
                '--duration', String(secs), '--warmup', String(warm), '--connections', String(connections),
                '--timeout', String(timeout), '--json', ...(stream ? ['--stream'] : [])];
  const { result, usage } = await sampled(target.pids, () => run(...pinned(OTHER_CPUS, bin.load, args)));
  if (result.code === 2 || !result.stdout.trim()) throw new Error(`agora-load failed (${result.code}): ${result.stderr}`);
  const summary = JSON.parse(result.stdout);
  const shown = (a) => (/^(gk_|sk-)/.test(a) ? `${a.slice(0, 3)}…` : /[\s"$]/.test(a) ? `'${a}'` : a);
  summary.command = `agora-load ${args.map(shown).join(' ')}`;
  return { ...summary, usage };
}

// Waits until the target answers one request again (after an overload run).
async function settle(target) {
  await until(`${target.name} to answer again`, async () => (await load(target, {
    rate: 10, secs: 0.1, warm: 0, connections: 1, timeout: 5,
  })).ok > 0, { ms: 120000, every: 500, watch: [] });
}

const sustained = (r, rate) => r.errors === 0 && r.ok > 0 && r.achieved_rate >= 0.97 * rate && r.latency_ms.p99 < 100;

// Highest rate the target sustains (all requests OK, achieved ≥ 97 % of the
// offered rate, p99 < 100 ms): doubling from `from`, then 3 bisections.
async function saturation(target, { stream, from }) {
  const probes = [];
  const probe = async (rate) => {
    const r = await load(target, { rate, stream, secs: smoke ? 0.5 : 5, warm: smoke ? 0 : 1 });
    const ok = sustained(r, rate);
    probes.push({ rate, ok, achieved: r.achieved_rate, p99: r.latency_ms.p99, errors: r.errors,
                  generator_cpu: r.cpu.percent, lag_ms: r.max_dispatch_lag_ms });
    log(`${target.name} ${stream ? 'stream' : 'unary'} saturation probe ${rate}/s: ${ok ? 'sustained' : 'not sustained'}` +
        ` (achieved ${num(r.achieved_rate)}/s, p99 ${num(r.latency_ms.p99, 2)} ms, errors ${r.errors})`);
    if (!ok) await settle(target);
    return ok;
  };
  let good = 0; let bad = 0;
  for (let rate = from; rate <= (smoke ? from * 2 : 128000); rate *= 2) {
    if (await probe(rate)) good = rate; else { bad = rate; break; }
  }
  for (let i = 0; i < (smoke ? 0 : 3) && bad && bad - good > from / 4; i++) {
    const mid = Math.round((good + bad) / 2);
    if (await probe(mid)) good = mid; else bad = mid;
  }
  // When the generator itself was late by > 5 ms at the best rate, the
  // figure is a lower bound set by the generator.
  const best = probes.find((p) => p.rate === good);
  return { sustained_rate: good, first_unsustained: bad || undefined, generator_bound: !!best && best.lag_ms > 5, probes };
}

// ---------------------------------------------------------------- gateway

async function benchGateway() {
  const fake = `name=fake,tokens=${TOKENS},slots=4096`;
  const targets = [];
  targets.push(await marketplace({ fake, gatewaySet: ['max_queue=100000'] }).catch(async (e) => {
    throw new Error(`agora set-up: ${e.message}\n${describeChildren()}`);
  }));
  let peerError;
  try {
    targets.push(await portkey());
  } catch (e) {
    peerError = e.message;
    log(`peer gateway unavailable: ${e.message}`);
  }
  // Priming: Portkey's first seconds run cold (JIT); give both the same.
  if (!smoke) for (const t of targets) await load(t, { rate: 300, secs: 3, warm: 0 });
  const runs = [];
  for (const stream of [false, true]) {
    const overloadedAt = {};
    for (const rate of rates) {
      for (const t of targets) {
        // Past the rate where a system's median latency went over a second,
        // higher rates only queue more (minutes of backlog): not run.
        if (overloadedAt[t.name]) {
          runs.push({ system: t.name, stream, rate, skipped: overloadedAt[t.name] });
          continue;
        }
        log(`${t.name} ${stream ? 'stream' : 'unary'} at ${rate}/s for ${duration} s`);
        const r = await load(t, { rate, stream });
        runs.push({ system: t.name, stream, rate, r });
        expect(r.sent > 0 && r.ok === r.sent && r.usage[0].cpu_percent >= 0, `${t.name} at ${rate}/s: ok ${r.ok} of ${r.sent}`);
        expect(t.name !== 'agora' || stream || r.overhead_us?.count === r.ok, 'every agora response carries x-agora-overhead-us');
        log(`  ok ${r.ok}/${r.sent}, p50 ${num(r.latency_ms.p50, 2)} ms, p99 ${num(r.latency_ms.p99, 2)} ms` +
            (r.overhead_us ? `, overhead p99 ${num(r.overhead_us.p99)} µs` : '') + `, cpu ${num(r.usage[0].cpu_percent)} %`);
        if (!smoke && r.latency_ms.p50 > 1000) overloadedAt[t.name] = rate;
        if (r.errors || overloadedAt[t.name]) await settle(t);
      }
    }
  }
  const sat = {};
  for (const t of targets) {
    for (const stream of [false, true]) {
      sat[`${t.name}/${stream ? 'stream' : 'unary'}`] = await saturation(t, { stream, from: smoke ? 50 : (t.name === 'agora' ? 2000 : 250) });
    }
  }
  for (const t of targets) await t.close();
  results.gateway = { runs, saturation: sat, peerError };
  writeGateway(results.gateway, targets.find((t) => t.name === 'portkey'));
}

function writeGateway({ runs, saturation: sat, peerError }, pk) {
  const pct = (r) => `${num(r.latency_ms.p50, 2)} / ${num(r.latency_ms.p90, 2)} / ${num(r.latency_ms.p99, 2)} / ${num(r.latency_ms.p999, 2)}`;
  const ov = (r) => (r.overhead_us ? `${num(r.overhead_us.p50)} / ${num(r.overhead_us.p90)} / ${num(r.overhead_us.p99)} / ${num(r.overhead_us.p999)}` : '—');
  const rows = runs.map(({ system, stream, rate, r, skipped }) => {
    if (skipped) {
      return [system, stream ? 'stream' : 'unary', num(rate), `not run: overloaded (p50 > 1 s) at ${num(skipped)}/s`,
              '', '', '', '', '', '', '', '', ''];
    }
    const peer = runs.find((x) => x.system !== system && x.stream === stream && x.rate === rate && !x.skipped);
    const ratio = system === 'portkey' && peer ? num(r.latency_ms.p99 / peer.r.latency_ms.p99, 1) + '×' : '';
    return [system, stream ? 'stream' : 'unary', num(rate), `${num(r.ok)} / ${num(r.sent)} (${num((100 * r.ok) / Math.max(r.sent, 1), 2)} %)`,
            num(r.achieved_rate), pct(r), stream ? `${num(r.ttft_ms.p50, 2)} / ${num(r.ttft_ms.p99, 2)}` : '—', ov(r),
            num(r.usage[0].cpu_percent), num(r.usage[0].peak_rss_mib, 1), num(r.usage[1].cpu_percent), num(r.cpu.percent), ratio];
  });
  const satRows = Object.entries(sat).map(([k, s]) => {
    const [system, mode] = k.split('/');
    const other = sat[`${system === 'agora' ? 'portkey' : 'agora'}/${mode}`];
    return [system, mode, `${num(s.sustained_rate)}${s.generator_bound ? ' (generator-bound: lower bound)' : ''}`,
            s.first_unsustained ? num(s.first_unsustained) : '—',
            system === 'agora' && other?.sustained_rate ? `${num(s.sustained_rate / other.sustained_rate, 1)}×` : ''];
  });
  const at5k = runs.find((x) => x.system === 'agora' && !x.stream && x.rate === 5000 && !x.skipped)?.r;
  const text = [
    `Machine: ${machineLine}.`,
    '',
    `Each system answers ${TOKENS} content tokens per request. **agora**: \`agora gateway\` (HTTPS) with one`,
    `\`agora node --engine fake --fake ${`name=fake,tokens=${TOKENS},slots=4096`}\` over WSS. **portkey**: the Portkey gateway`,
    `${pk?.version ? `(\`@portkey-ai/gateway@${pk.version}\`) ` : ''}over plain HTTP in front of \`agora-mock-openai --tokens ${TOKENS}\`.`,
    `Both driven by \`agora-load\` (open loop, ${CONNECTIONS} keep-alive connections, ${warmup} s warm-up, ${duration} s measured), one run after the`,
    'other at each rate. Latency in ms from the *scheduled* send time to the last byte; *overhead* is the gateway\'s',
    'own added time (`x-agora-overhead-us`: end-to-end at the gateway minus the node\'s reported time, so it includes',
    'the WSS hop). CPU is % of one core over the run (gateway, then its upstream: the fake node or the mock); *gen* is',
    'the load generator\'s. The *p99 ×* column is Portkey\'s p99 over agora\'s at the same rate and mode.',
    pinning ? `Placement (both systems alike): the gateway alone on CPU ${GATEWAY_CPUS}; its upstream and the load generator on CPU ${OTHER_CPUS} (\`taskset\`).` : 'No CPU pinning in this run.',
    peerError ? `\n**Peer not measured in this run:** ${peerError}\n` : '',
    table(['system', 'mode', 'rate/s', 'ok', 'achieved/s', 'latency p50 / p90 / p99 / p99.9 ms', 'TTFT p50 / p99 ms',
           'overhead p50 / p90 / p99 / p99.9 µs', 'gateway CPU %', 'gateway peak RSS MiB', 'upstream CPU %', 'gen CPU %', 'p99 ×'], rows),
    '',
    at5k ? `At 5,000 req/s (unary) agora's added latency p99 is **${num(at5k.overhead_us?.p99)} µs** with ${num((100 * at5k.ok) / Math.max(at5k.sent, 1), 2)} % success.` : '',
    '',
    '**Saturation**: the highest rate sustained with every request OK, achieved ≥ 97 % of offered and p99 < 100 ms',
    '(doubling, then three bisections; 5 s probes):',
    '',
    table(['system', 'mode', 'sustained req/s', 'first rate not sustained', 'agora / portkey'], satRows),
    '',
    `![latency vs rate](bench/latency-vs-rate.svg)`,
    '',
    'Reproduce: `make bench` or `node bench/run.mjs --only gateway`. A run\'s exact commands:',
    '',
    '```sh',
    ...[...new Set(runs.filter((x) => x.rate === rates[0] && !x.skipped).map((x) => x.r.command.replace(/--rate \d+/, '--rate R')))],
    '```',
  ].join('\n');
  save('gateway', text);
  plotLatency(runs);
}

// ---------------------------------------------------------------- A/B

// The gateway overhead of this build against another build of agora
// (--baseline BIN, e.g. a worktree of an earlier commit), same machine, same
// load generator (this build's), same placement as the gateway section;
// the two alternate run by run (--repeat N) so drift hits both alike.
async function benchAb() {
  const baseline = opt('baseline');
  if (!baseline || !fs.existsSync(baseline)) throw new Error('--only ab needs --baseline PATH/TO/agora (another build)');
  const label = opt('baseline-label', 'baseline');
  const fake = `name=fake,tokens=${TOKENS},slots=4096`;
  const abRates = opt('rates') ? rates : [2000, 5000];
  const builds = [{ name: label, agora: path.resolve(baseline) }, { name: 'this build', agora: bin.agora }];
  const runs = [];
  for (let i = 0; i < repeat; ++i) {
    for (const b of i % 2 ? [...builds].reverse() : builds) {
      const t = await marketplace({ fake, gatewaySet: ['max_queue=100000'], agora: b.agora });
      try {
        if (!smoke) await load(t, { rate: 300, secs: 2, warm: 0 });
        for (const rate of abRates) {
          log(`${b.name}: unary at ${rate}/s for ${duration} s (run ${i + 1}/${repeat})`);
          const r = await load(t, { rate });
          expect(r.ok === r.sent && r.overhead_us?.count === r.ok, `${b.name} at ${rate}/s: ok ${r.ok} of ${r.sent}`);
          runs.push({ build: b.name, rate, repeat: i, r });
          log(`  ok ${r.ok}/${r.sent}, overhead p50 ${num(r.overhead_us?.p50)} p99 ${num(r.overhead_us?.p99)} µs, ` +
              `gateway cpu ${num(r.usage[0].cpu_percent)} %`);
        }
      } finally {
        await t.close();
      }
    }
  }
  results.ab = { baseline: label, runs: runs.map(({ build, rate, repeat: k, r }) => ({ build, rate, repeat: k,
    ok: r.ok, sent: r.sent, latency_ms: r.latency_ms, overhead_us: r.overhead_us, gateway_cpu: r.usage[0].cpu_percent })) };
  const med = (xs) => { const v = [...xs].sort((a, b) => a - b); return v.length ? v[Math.floor((v.length - 1) / 2)] : undefined; };
  const rows = [];
  for (const rate of abRates) {
    for (const b of builds) {
      const mine = runs.filter((x) => x.build === b.name && x.rate === rate).map((x) => x.r);
      const o = (k) => num(med(mine.map((r) => r.overhead_us?.[k])));
      const l = (k) => num(med(mine.map((r) => r.latency_ms[k])), 2);
      const okAll = mine.reduce((a, r) => a + r.ok, 0), sentAll = mine.reduce((a, r) => a + r.sent, 0);
      rows.push([b.name, num(rate), `${num(okAll)} / ${num(sentAll)}`, `${o('p50')} / ${o('p90')} / ${o('p99')} / ${o('p999')}`,
                 `${l('p50')} / ${l('p99')}`, num(med(mine.map((r) => r.usage[0].cpu_percent)))]);
    }
  }
  save('ab', [
    `Machine: ${machineLine}.`,
    '',
    `**${label}** against **this build**: each a gateway with one fake-engine node (${TOKENS} tokens per answer), unary`,
    `requests from \`agora-load\` (${CONNECTIONS} connections, ${duration} s measured after ${warmup} s), ${repeat} alternating runs per`,
    'build and rate; medians over the runs. Overhead is `x-agora-overhead-us` (the gateway\'s own added time, WSS hop',
    `included).${opt('ab-note') ? ` ${opt('ab-note')}` : ''}`,
    pinning ? `Placement: the gateway alone on CPU ${GATEWAY_CPUS}; node and load generator on CPU ${OTHER_CPUS}.` : 'No CPU pinning in this run.',
    '',
    table(['build', 'rate/s', 'ok', 'overhead p50 / p90 / p99 / p99.9 µs', 'latency p50 / p99 ms', 'gateway CPU %'], rows),
    '',
    `Reproduce: \`node bench/run.mjs --only ab --baseline OTHER/build/agora --baseline-label NAME\` (see the section's text).`,
  ].join('\n'));
}

// ---------------------------------------------------------------- end to end

// The cost of end-to-end encryption: the same gateway and fake node, driven
// straight (plain) and through `agora proxy` (sealed), at the same rates,
// unary and streamed. The proxy is the client's side: it runs beside the
// load generator, off the gateway's core.
async function benchE2e() {
  const fake = `name=fake,tokens=${TOKENS},slots=4096`;
  const t = await marketplace({ fake, gatewaySet: ['max_queue=100000'] });
  const proxyProc = start(...pinned(OTHER_CPUS, bin.agora, ['proxy', '--gateway', t.info.base_url, '--api-key', t.key,
                                                           '--ca-cert', t.info.ca_cert, '--listen', '127.0.0.1:0']),
                          'agora proxy');
  const port = await until('the proxy', () => (proxyProc.logs.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/) || [])[1]);
  const sealedTarget = { ...t, name: 'sealed', pids: [t.gateway.pid, t.node.pid, proxyProc.pid],
                         loadArgs: ['--url', `http://127.0.0.1:${port}/v1/chat/completions`, '--api-key', 'gk_unused'] };
  const plainTarget = { ...t, name: 'plain', pids: [t.gateway.pid, t.node.pid, proxyProc.pid] };
  const e2eRates = opt('rates') ? rates : (smoke ? [20] : [100, 300]);
  const runs = [];
  // A second node pacing its tokens like a real model (500 tokens/s, 200
  // per answer), for decode tokens/s of one stream at a time.
  const pacedTokens = smoke ? 20 : 200;
  const pacedNode = start(...pinned(OTHER_CPUS, bin.agora, ['node', '--gateway', t.info.node_url.replace(/\/v1\/node$/, ''),
                                                           '--token', t.token, '--ca-cert', t.info.ca_cert,
                                                           '--data-dir', path.join(t.dir, 'paced-node'), '--engine', 'fake',
                                                           '--fake', `name=paced,tokens=${pacedTokens},slots=8,token-interval-us=2000`]),
                          'agora node (paced)');
  await until('the paced node', async () => JSON.parse((await getText(`${t.info.base_url}/v1/models`, t.ca,
    { authorization: `Bearer ${t.key}` })).body).data.some((m) => m.id === 'paced'));
  const paced = [];
  try {
    if (!smoke) for (const x of [plainTarget, sealedTarget]) await load(x, { rate: 50, secs: 2, warm: 0 });
    for (const stream of [false, true]) {
      for (const rate of e2eRates) {
        for (const x of [plainTarget, sealedTarget]) {
          log(`${x.name} ${stream ? 'stream' : 'unary'} at ${rate}/s for ${duration} s`);
          const r = await load(x, { rate, stream });
          expect(r.ok === r.sent && r.sent > 0, `${x.name} at ${rate}/s: ok ${r.ok} of ${r.sent}`);
          runs.push({ path: x.name, stream, rate, r });
          log(`  ok ${r.ok}/${r.sent}, p50 ${num(r.latency_ms.p50, 2)} ms, p99 ${num(r.latency_ms.p99, 2)} ms`);
          if (r.errors) await settle(x);
        }
      }
    }
    for (const x of [plainTarget, sealedTarget]) {
      log(`${x.name}: one paced stream at a time`);
      const r = await load(x, { rate: smoke ? 2 : 2, stream: true, connections: 1, maxTokens: pacedTokens, model: 'paced',
                                secs: smoke ? 1 : duration });
      expect(r.ok === r.sent && r.sent > 0, `${x.name} paced: ok ${r.ok} of ${r.sent}`);
      const tokps = (pacedTokens - 1) / ((r.latency_ms.p50 - r.ttft_ms.p50) / 1000);
      paced.push({ path: x.name, r, tokps });
      log(`  ${num(tokps, 1)} tokens/s, TTFT p50 ${num(r.ttft_ms.p50, 2)} ms`);
    }
  } finally {
    await stop(pacedNode);
    await stop(proxyProc);
    await t.close();
  }
  results.e2e_paced = paced.map(({ path: p, r, tokps }) => ({ path: p, tokens_per_s: tokps, ttft_ms: r.ttft_ms, latency_ms: r.latency_ms }));
  results.e2e = { runs: runs.map(({ path: p, stream, rate, r }) => ({ path: p, stream, rate, ok: r.ok, sent: r.sent,
    latency_ms: r.latency_ms, ttft_ms: r.ttft_ms, achieved_rate: r.achieved_rate, usage: r.usage })) };
  const rows = runs.map(({ path: p, stream, rate, r }) => [p, stream ? 'stream' : 'unary', num(rate),
    `${num(r.ok)} / ${num(r.sent)}`, `${num(r.latency_ms.p50, 2)} / ${num(r.latency_ms.p90, 2)} / ${num(r.latency_ms.p99, 2)}`,
    stream ? `${num(r.ttft_ms.p50, 2)} / ${num(r.ttft_ms.p99, 2)}` : '—',
    num(r.usage[0].cpu_percent), num(r.usage[2].cpu_percent), num(r.cpu.percent)]);
  save('e2e', [
    `Machine: ${machineLine}.`,
    '',
    `One gateway and one fake-engine node (${TOKENS} tokens per answer), driven by \`agora-load\` (${CONNECTIONS} connections,`,
    `${warmup} s warm-up, ${duration} s measured) **plain** (HTTPS straight to the gateway) and **sealed** (plain HTTP to`,
    '`agora proxy`, which fetches candidates, seals with HPKE, posts over HTTPS and opens every chunk). Latency and TTFT',
    'in ms from the scheduled send time. CPU: % of one core — gateway, proxy, load generator.',
    pinning ? `Placement: the gateway alone on CPU ${GATEWAY_CPUS}; node, proxy and load generator on CPU ${OTHER_CPUS}.` : 'No CPU pinning in this run.',
    '',
    table(['path', 'mode', 'rate/s', 'ok', 'latency p50 / p90 / p99 ms', 'TTFT p50 / p99 ms', 'gateway CPU %', 'proxy CPU %',
           'gen CPU %'], rows),
    '',
    `Decode rate of one stream at a time from a node pacing ${pacedTokens} tokens at 500 tokens/s (what a real model`,
    'does), tokens after the first ÷ (latency − TTFT), medians:',
    '',
    table(['path', 'tokens/s', 'TTFT p50 / p99 ms', 'latency p50 ms'],
          paced.map(({ path: p, r, tokps }) => [p, num(tokps, 1), `${num(r.ttft_ms.p50, 2)} / ${num(r.ttft_ms.p99, 2)}`,
                                               num(r.latency_ms.p50, 1)])),
    '',
    'Reproduce: `node bench/run.mjs --only e2e [--rates 100,300]`.',
  ].join('\n'));
}

// ---------------------------------------------------------------- plots

function gnuplot(name, script) {
  fs.mkdirSync(plots, { recursive: true });
  const files = [];
  for (const [term, ext] of [['svg size 800,480 dynamic font "sans,11"', 'svg'], ['pngcairo size 800,480 font "sans,10"', 'png']]) {
    const file = path.join(plots, `${name}.${ext}`);
    try {
      execFileSync('gnuplot', [], { input: `set terminal ${term}\nset output '${file}'\n${script}\n`, stdio: ['pipe', 'ignore', 'pipe'] });
      files.push(file);
    } catch (e) {
      log(`gnuplot (${ext}) failed: ${e.stderr?.toString() || e.message}`);
    }
  }
  if (files.length) log(`plotted ${files.map(rel).join(', ')}`);
}

function plotLatency(runs) {
  const series = [];
  for (const system of ['agora', 'portkey']) {
    for (const stream of [false, true]) {
      const pts = runs.filter((x) => x.system === system && x.stream === stream && !x.skipped)
        .map((x) => `${x.rate} ${x.r.latency_ms.p50} ${x.r.latency_ms.p99}`);
      if (pts.length) series.push({ title: `${system} ${stream ? 'stream' : 'unary'}`, pts });
    }
  }
  if (!series.length) return;
  const plot = series.flatMap((s, i) => [
    `'-' using 1:3 with linespoints lw 2 lc ${i + 1} pt 7 title '${s.title} p99'`,
    `'-' using 1:2 with linespoints lw 1 dt 2 lc ${i + 1} pt 6 title '${s.title} p50'`]);
  const twice = series.map((s) => `${s.pts.join('\n')}\ne\n${s.pts.join('\n')}\ne`).join('\n');
  gnuplot('latency-vs-rate', [
    `set title 'End-to-end latency vs offered rate (${TOKENS} tokens; ${m.cores} cores; ${m.commit})'`,
    "set xlabel 'offered rate (requests/s)'", "set ylabel 'latency (ms)'", 'set logscale xy', 'set grid',
    'set key top left', `plot ${plot.join(', ')}`, twice,
  ].join('\n'));
}

function plotTokens(rows) {
  const by = (name) => rows.filter((r) => r.server === name).map((r) => `${r.streams} ${r.aggregate_tok_s}`);
  const a = by('agora'); const l = by('llama-server');
  if (!a.length) return;
  gnuplot('tokens-vs-concurrency', [
    `set title 'Aggregate decode tok/s vs concurrent streams (bench-1b; ${m.cores} cores; ${m.commit})'`,
    "set xlabel 'concurrent streams'", "set ylabel 'decode tokens/s (all streams)'", 'set grid', 'set key top left',
    'set yrange [0:*]',
    `plot '-' using 1:2 with linespoints lw 2 pt 7 title 'agora (via gateway)'${l.length ? ", '-' using 1:2 with linespoints lw 2 pt 5 title 'llama-server'" : ''}`,
    `${a.join('\n')}\ne`, l.length ? `${l.join('\n')}\ne` : '',
  ].join('\n'));
}

// ---------------------------------------------------------------- streaming

async function benchStreaming() {
  const streams = smoke ? 50 : 1000;
  const tokens = smoke ? 8 : 64;
  // Two paces per stream: 10 tokens/s (what a CPU node serves) and 50 (a
  // GPU's pace; 50,000 chunks/s in all, which the gateway, the node and the
  // client cannot all get from two cores: that row shows saturation).
  const paces = smoke ? [200] : [10, 50];
  const runs = [];
  for (const pace of paces) {
    const intervalUs = Math.round(1e6 / pace);
    const lifetime = (tokens * intervalUs) / 1e6;
    const rate = Math.round(streams / lifetime);  // Little's law: ~`streams` in flight
    const secs = smoke ? 1 : Math.max(15, Math.ceil(3 * lifetime));
    const warm = smoke ? 0 : Math.ceil(lifetime + 1);
    log(`streaming: ${streams} streams at ${pace} tokens/s each (${rate} requests/s)`);
    const mk = await marketplace({ fake: `name=fake,tokens=${tokens},slots=${streams * 2},token-interval-us=${intervalUs},first-token-us=${intervalUs}`,
                                   gatewaySet: [`max_connections=${streams * 4}`, 'max_queue=100000'] });
    try {
      const before = await mk.metrics();
      const r = await load(mk, { rate, stream: true, secs, warm, connections: Math.round(streams * 1.2), maxTokens: tokens, timeout: 60 });
      const after = await mk.metrics();
      const h = (name) => histogramDelta(histogram(before, name), histogram(after, name));
      const ttftOver = h('agora_gateway_ttft_overhead_seconds');
      const fwd = h('agora_gateway_token_forward_seconds');
      expect(r.ok === r.sent && r.sent > 0, `streams ok ${r.ok} of ${r.sent}`);
      expect(ttftOver.count >= r.ok && fwd.count > 0, `overhead histograms counted ${ttftOver.count} / ${fwd.count}`);
      runs.push({ pace, intervalUs, rate, secs, warm, r, ttftOver, fwd });
    } finally {
      await mk.close();
    }
  }
  results.streaming = { streams, tokens, runs };
  const us = (x) => num(x * 1e6, 1);
  const text = [
    `Machine: ${machineLine}.`,
    '',
    `${num(streams)} concurrent streams: a fake-engine node producing ${tokens} tokens per stream at a fixed pace (first token after`,
    `one interval), requests at the rate that keeps ~${num(streams)} streams in flight (Little's law), ${num(Math.round(streams * 1.2))}`,
    'keep-alive connections. No CPU pinning here: the node and the client do as much work per token as the gateway.',
    '',
    table(['tokens/s per stream', 'requests/s', 'ok', 'content chunks', 'TTFT at the client p50 / p99 / p99.9 ms',
           'end-to-end p50 / p99 ms (ideal)', 'gateway CPU %', 'gateway peak RSS MiB', 'node CPU %', 'client CPU %'],
          runs.map(({ pace, rate, r, intervalUs }) => [num(pace), num(rate), `${num(r.ok)} / ${num(r.sent)}`, num(r.chunks),
            `${num(r.ttft_ms.p50, 2)} / ${num(r.ttft_ms.p99, 2)} / ${num(r.ttft_ms.p999, 2)}`,
            `${num(r.latency_ms.p50, 1)} / ${num(r.latency_ms.p99, 1)} (${num(tokens * intervalUs / 1000, 0)})`,
            num(r.usage[0].cpu_percent), num(r.usage[0].peak_rss_mib, 1), num(r.usage[1]?.cpu_percent), num(r.cpu.percent)])),
    '',
    'The gateway\'s own share, from its histograms (`/metrics` before and after; percentiles interpolated inside',
    'the buckets, which are 2, 5, 10, 25, 50, 100, 250, 500 µs, 1 ms… for forwarding and 50, 100, 250, 500 µs… for TTFT):',
    '',
    table(['tokens/s per stream', 'overhead', 'samples', 'p50 µs', 'p90 µs', 'p99 µs', 'p99.9 µs'], runs.flatMap(({ pace, ttftOver, fwd }) => [
      [num(pace), 'time to first token (first chunk sent − node queue+prompt time)', num(ttftOver.count), us(ttftOver.p50), us(ttftOver.p90), us(ttftOver.p99), us(ttftOver.p999)],
      [num(pace), 'per token (node frame read → SSE chunk written)', num(fwd.count), us(fwd.p50), us(fwd.p90), us(fwd.p99), us(fwd.p999)],
    ])),
    '',
    'Reproduce: `node bench/run.mjs --only streaming`; the load commands:',
    '',
    '```sh', ...runs.map(({ r }) => r.command), '```',
  ].join('\n');
  save('streaming', text);
}

// ---------------------------------------------------------------- node vs llama-server

async function benchNode() {
  const model = path.join(root, 'models/bench-1b.gguf');
  const jsonFile = path.join(os.tmpdir(), `agora-peer-${process.pid}.json`);
  const args = smoke
    ? ['--smoke', '--streams', '1,2', '--max-tokens', '8', '--repeat', '1']
    : ['--model', model, '--threads', String(m.cores), '--slots', '8', '--ctx', '1024', '--streams', '1,4,8',
       '--max-tokens', '64', '--prompt-words', '100', '--repeat', String(repeat)];
  args.push('--agora', bin.agora, '--json', jsonFile);
  log(`node vs llama-server: node bench/peer/node_vs_llama_server.mjs ${args.join(' ')}`);
  const r = await run(process.execPath, [path.join(root, 'bench/peer/node_vs_llama_server.mjs'), ...args]);
  if (r.code !== 0) throw new Error(`node_vs_llama_server failed (${r.code}):\n${r.stderr.slice(-4000)}`);
  const res = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
  fs.rmSync(jsonFile, { force: true });
  results.node = res;
  expect(res.agora.length === 2 && res.agora.every((x) => x.aggregate_tok_s > 0), 'node results for 1 and 2 streams');
  const rows = [];
  const flat = [];
  for (const a of res.agora) {
    const l = res.llama_server?.find((x) => x.streams === a.streams);
    const ratio = (k) => (l ? `**${num(a[k] / l[k], 3)}**` : '—');
    const batch = (x) => x.batch_tok_s ?? (x.streams * (smoke ? 8 : 64)) / x.wall_s;
    const win = (x) => (x.window_tok_s === undefined ? '—' : num(x.window_tok_s, 2));
    rows.push([a.streams, 'agora (via gateway)', num(a.ttft_ms_p50), num(a.pp_tok_s, 1), num(a.per_stream_tok_s, 2), num(a.aggregate_tok_s, 2),
               num(a.aggregate_spread, 1), ratio('aggregate_tok_s'), win(a), num(batch(a), 2), l ? `**${num(batch(a) / batch(l), 3)}**` : '—']);
    flat.push({ server: 'agora', ...a });
    if (l) {
      rows.push([l.streams, 'llama-server', num(l.ttft_ms_p50), num(l.pp_tok_s, 1), num(l.per_stream_tok_s, 2), num(l.aggregate_tok_s, 2),
                 num(l.aggregate_spread, 1), '', win(l), num(batch(l), 2), '']);
      flat.push({ server: 'llama-server', ...l });
    }
  }
  const text = [
    `Machine: ${machineLine}.`,
    '',
    `${res.config || ''}`,
    '',
    table(['streams', 'server', 'TTFT p50 ms', 'prompt tok/s', 'per-stream decode tok/s', 'aggregate decode tok/s', 'spread % (max−min)/median',
           'agora / llama-server', 'first→last token tok/s', 'batch tok/s', 'agora / llama-server (batch)'], rows),
    '',
    '*Aggregate decode* is the rate while all N streams decode at once: the tokens that arrive between the last stream\'s',
    'first token and the first stream\'s last token, over that window (one stream: its own decode rate). Both servers then',
    'do the same work, batched decode steps of N sequences. *First→last token* is the figure earlier runs reported: every',
    'token after each stream\'s first over the window from the first stream\'s first token to the last token; it also',
    'holds the prefill of streams that start later, which agora interleaves with the others\' decoding (so its early',
    'streams start sooner) while llama-server prefills all prompts before decoding any. *Batch* counts every token over',
    'the wall time from submitting the batch to its last byte: what a client running N requests sees.',
    '',
    '![tokens/s vs concurrency](bench/tokens-vs-concurrency.svg)',
    '',
    'Reproduce: `node bench/peer/node_vs_llama_server.mjs ' + args.filter((x) => x !== jsonFile && x !== bin.agora && x !== '--agora' && x !== '--json')
      .map((x) => (x === model ? 'models/bench-1b.gguf' : x)).join(' ') + '`',
  ].join('\n');
  save('node', text);
  plotTokens(flat);
}

// ---------------------------------------------------------------- roofline

async function benchRoofline() {
  const bw = JSON.parse((await run(bin.bandwidth, ['--bytes', smoke ? '64M' : '1G', '--threads', `1,${m.cores}`,
                                                   '--repeat', smoke ? '1' : '5', '--json'])).stdout);
  const model = smoke ? null : path.join(root, 'models/bench-1b.gguf');
  let info = null;
  if (model) info = JSON.parse(execFileSync(bin.agora, ['model', 'info', '--json', model]).toString());
  const best = Math.max(...bw.results.map((x) => x.best_gbps));
  const bytes = info?.weight_bytes_per_token;
  const bound = bytes ? (best * 1e9) / bytes : undefined;
  // Decode at 1 thread and at all cores, engine only: if tok/s grows with
  // threads in step with compute while bandwidth is left over, decode is
  // compute-bound here, not memory-bound.
  const scaling = [];
  if (model) {
    for (const t of [1, m.cores]) {
      const r = await run(bin.agora, ['bench', 'engine', '--model', model, '--streams', '1', '--threads', String(t),
                                      '--prompt-tokens', '16', '--max-tokens', '64', '--repeat', String(repeat)]);
      const row = r.stdout.split('\n').find((l) => /^\|\s*1\s*\|/.test(l));
      if (r.code !== 0 || !row) throw new Error(`agora bench engine --threads ${t} failed:\n${r.stderr.slice(-2000)}`);
      const tok = Number(row.split('|')[3]);
      const gbps = bw.results.find((x) => x.threads === t)?.best_gbps;
      scaling.push({ threads: t, tok_s: tok, gbps, bound: (gbps * 1e9) / bytes });
      log(`decode with ${t} thread(s): ${tok} tok/s`);
    }
  }
  // llama.cpp's own kernels on each weight type, weights in cache vs
  // streamed from memory: the rate any node using them can reach.
  const kargs = smoke ? ['--types', 'q4_K', '--threads', '1', '--cache-bytes', '256K', '--dram-bytes', '8M', '--repeat', '1', '--json']
    : ['--types', 'q4_K,q6_K,q8_0', '--repack', 'q4_K', '--threads', `1,${m.cores}`, '--repeat', '5', '--json'];
  const kr = await run(bin.kernel, kargs);
  if (kr.code !== 0) throw new Error(`agora_kernel_roof failed (${kr.code}):\n${kr.stderr.slice(-2000)}`);
  const kernel = JSON.parse(kr.stdout);
  const kdram = kernel.results.filter((x) => x.where === 'dram' && x.threads === m.cores);
  const kernelBest = kdram.length ? Math.max(...kdram.map((x) => x.gbps)) : undefined;
  // This run's node figures, else the last stored ones (--only roofline).
  const storedFile = path.join(plots, 'results.json');
  const node = results.node ?? (fs.existsSync(storedFile) ? JSON.parse(fs.readFileSync(storedFile, 'utf8')).node : undefined);
  const single = node?.agora?.find((x) => x.streams === 1)?.per_stream_tok_s;
  const singleL = node?.llama_server?.find((x) => x.streams === 1)?.per_stream_tok_s;
  results.roofline = { bw, bytes, bound, single, singleL, scaling, kernel, kernel_best_gbps: kernelBest };
  expect(bw.results.length === 2 && bw.results.every((x) => x.best_gbps > 0), 'bandwidth measured');
  expect(kernel.results.length > 0 && kernel.results.every((x) => x.gbps > 0), 'kernel rates measured');
  const kname = (x) => `${x.type}${x.repacked ? ' (repacked, as llama.cpp loads it)' : ''}`;
  const kernelRows = [];
  for (const t of [...new Set(kernel.results.map((x) => `${x.type}/${x.repacked}`))]) {
    for (const th of [...new Set(kernel.results.map((x) => x.threads))]) {
      const c = kernel.results.find((x) => `${x.type}/${x.repacked}` === t && x.threads === th && x.where === 'cache');
      const d = kernel.results.find((x) => `${x.type}/${x.repacked}` === t && x.threads === th && x.where === 'dram');
      const readBw = bw.results.find((x) => x.threads === th)?.best_gbps;
      if (c && d) kernelRows.push([kname(c), th, num(c.gbps, 1), num(d.gbps, 1), readBw ? num((100 * d.gbps) / readBw, 0) : '—']);
    }
  }
  const text = [
    `Machine: ${machineLine}.`,
    '',
    table(['threads', 'read GB/s (10⁹ B/s)'], bw.results.map((x) => [x.threads, num(x.best_gbps, 1)])),
    '',
    bytes ? `bench-1b reads ${num(bytes / 1e6)} MB of weights per decode step (\`agora model info\`: every tensor; the tied embedding is the output layer).` : '',
    bound ? `Roofline: ${num(best, 1)} GB/s ÷ ${num(bytes / 1e9, 3)} GB = **${num(bound, 1)} tok/s** single-stream upper bound.` : '',
    single ? `Measured single-stream decode: agora ${num(single, 2)} tok/s = **${num((100 * single) / bound, 1)} %** of the roofline` +
      (singleL ? `; llama-server ${num(singleL, 2)} tok/s = ${num((100 * singleL) / bound, 1)} %.` : '.') : '',
    '',
    scaling.length ? 'Decode against each thread count\'s own bandwidth (engine only, `agora bench engine --streams 1 --threads T --prompt-tokens 16 --max-tokens 64`):' : '',
    '',
    scaling.length ? table(['threads', 'read GB/s', 'roofline tok/s', 'decode tok/s', '% of roofline'],
                           scaling.map((x) => [x.threads, num(x.gbps, 1), num(x.bound, 1), num(x.tok_s, 2), num((100 * x.tok_s) / x.bound, 1)])) : '',
    '',
    scaling.length > 1 ? `From 1 to ${m.cores} threads decode grows ${num(scaling[1].tok_s / scaling[0].tok_s, 2)}× while bandwidth grows ` +
      `${num(scaling[1].gbps / scaling[0].gbps, 2)}×.` : '',
    '',
    'llama.cpp\'s CPU kernels on their own (`agora_kernel_roof`: a decode-shaped matrix × vector through ggml, 2,048-wide',
    'rows; *cache*: a ~1 MiB matrix that stays in L2, *memory*: 768 MiB streamed from DRAM; GB/s of weights consumed):',
    '',
    table(['weights', 'threads', 'in cache GB/s', 'from memory GB/s', 'from memory, % of read bandwidth'], kernelRows),
    '',
    kernelBest && bytes ? `The fastest kernel streams at most ${num(kernelBest, 1)} GB/s from memory with ${m.cores} threads: ` +
      `a ceiling of ${num((kernelBest * 1e9) / bytes, 1)} tok/s for bench-1b = ${num((100 * kernelBest) / best, 1)} % of the roofline, ` +
      `for any server built on these kernels.` : '',
    '',
    'Reproduce: `build/bench/agora_bandwidth --bytes 1G --threads 1,N --repeat 5`, `build/agora model info models/bench-1b.gguf`,',
    '`build/bench/agora_kernel_roof --types q4_K,q6_K,q8_0 --repack q4_K --threads 1,N`.',
  ].join('\n');
  save('roofline', text);
}

// ---------------------------------------------------------------- scale

async function benchScale() {
  const counts = smoke ? [100] : [1000, 10000, 'max'];
  const idle = [];
  for (const n of counts) {
    const args = [path.join(root, 'bench/idle/measure.sh'), '--agora', bin.agora, '--tool', bin.idle, '--count', String(n), '--json'];
    log(`idle node connections: ${n}`);
    const r = await run('bash', args);
    const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
    if (r.code !== 0 || !line) throw new Error(`measure.sh --count ${n} failed (${r.code}):\n${r.stderr.slice(-3000)}`);
    idle.push(JSON.parse(line));
  }
  const rb = JSON.parse((await run(bin.router, ['--benchmark_filter=BM_RouterPickLatency', '--benchmark_format=json',
                                                ...(smoke ? ['--benchmark_filter=BM_RouterPickLatency/nodes:1000/', '--benchmark_min_time=0.01'] : [])])).stdout);
  results.scale = { idle, router: rb.benchmarks };
  expect(idle.every((x) => x.welcomed === (x.requested ?? x.count)), 'every idle connection welcomed');
  expect(rb.benchmarks.length > 0 && rb.benchmarks.every((b) => b.samples > 0), 'router samples');
  const text = [
    `Machine: ${machineLine}.`,
    '',
    '**Idle node connections** (`bench/idle/measure.sh`: a real gateway; `agora-idle-nodes` opens N WSS node sessions',
    'that complete the hello/welcome exchange and then stay idle, answering heartbeats; gateway RSS before and after):',
    '',
    table(['connections', 'welcomed', 'gateway RSS before MiB', 'after MiB', 'bytes per connection', 'note'],
          idle.map((x) => [num(x.requested ?? x.count), num(x.welcomed), num(x.rss_before_kb / 1024, 1), num(x.rss_after_kb / 1024, 1),
                           num(x.bytes_per_connection), x.note || ''])),
    '',
    '**Router decision** (`build/bench/agora_router_bench --benchmark_filter=BM_RouterPickLatency`, Google Benchmark):',
    '',
    table(['benchmark', 'p50 ns', 'p99 ns', 'p99.9 ns', 'max ns'],
          rb.benchmarks.map((b) => [b.name, num(b.p50_ns), num(b.p99_ns), num(b['p99.9_ns']), num(b.max_ns)])),
  ].join('\n');
  save('scale', text);
}

// ---------------------------------------------------------------- engine

async function benchEngine() {
  if (smoke) return;  // the engine benchmark has its own smoke test (ctest -R bench)
  const r = await run(path.join(root, 'scripts/bench-engine'), []);
  if (r.code !== 0) throw new Error(`scripts/bench-engine failed:\n${r.stderr.slice(-3000)}`);
  // JSON to a file: the benchmarks' own output shares stdout.
  const microFile = path.join(os.tmpdir(), `agora-micro-${process.pid}.json`);
  await run(bin.micro, [`--benchmark_out=${microFile}`, '--benchmark_out_format=json']);
  const micro = JSON.parse(fs.readFileSync(microFile, 'utf8'));
  fs.rmSync(microFile, { force: true });
  const text = [
    `Machine: ${machineLine}.`,
    '',
    'Reproduce: `scripts/bench-engine` (per model: `build/agora bench engine --model models/<m>.gguf --streams 1,4,8 --prompt-tokens 128 --max-tokens 128 --repeat 2`).',
    '',
    r.stdout.split('\n').filter((l) => !l.startsWith('machine:')).join('\n').replace(/^## /gm, '#### '),
    '',
    '**Micro-benchmarks** (`build/bench/agora_microbench`):',
    '',
    table(['benchmark', 'ns per iteration'], micro.benchmarks.map((b) => [b.name, num(b.real_time, 1)])),
  ].join('\n');
  save('engine', text);
}

// ---------------------------------------------------------------- summary

function summary(all) {
  const rows = [];
  const when = (sec) => (sec ? `\`${sec.machine.commit}\`, ${sec.machine.date.slice(0, 10)}` : 'not run');
  const verdict = (ok) => (ok === undefined ? '—' : ok ? 'met' : '**missed**');
  const g = all.gateway;
  const a5 = g?.runs.find((x) => x.system === 'agora' && !x.stream && x.rate === 5000 && !x.skipped)?.r;
  if (a5) {
    const success = (100 * a5.ok) / Math.max(a5.sent, 1);
    rows.push(['Gateway added latency p99 < 1 ms at 5,000 req/s, 100 % success',
               `p99 ${num(a5.overhead_us?.p99)} µs, ${num(success, 2)} % success`, verdict(a5.overhead_us?.p99 < 1000 && success === 100), when(g)]);
  } else rows.push(['Gateway added latency p99 < 1 ms at 5,000 req/s', '—', '—', when(g)]);
  const sa = g?.saturation?.['agora/unary']; const sp = g?.saturation?.['portkey/unary'];
  if (sa && sp?.sustained_rate) {
    const ratio = sa.sustained_rate / sp.sustained_rate;
    rows.push(['Saturation ≥ 5× Portkey\'s (unary)', `${num(sa.sustained_rate)} vs ${num(sp.sustained_rate)} req/s = ${num(ratio, 1)}×` +
               `${sa.generator_bound ? ' (agora generator-bound)' : ''}`, verdict(ratio >= 5), when(g)]);
  } else rows.push(['Saturation ≥ 5× Portkey\'s', g?.peerError ? `peer not run: ${g.peerError}` : '—', '—', when(g)]);
  const n = all.node;
  const bt = (x) => x.batch_tok_s ?? (x.streams * 64) / x.wall_s;
  for (const [streams, target] of [[1, 0.97], [8, 1.0]]) {
    const a = n?.agora?.find((x) => x.streams === streams); const l = n?.llama_server?.find((x) => x.streams === streams);
    const ratio = a && l ? a.aggregate_tok_s / l.aggregate_tok_s : undefined;
    rows.push([`Node via gateway ≥ ${target}× llama-server decode, ${streams} stream${streams > 1 ? 's' : ''}`,
               ratio ? `${num(a.aggregate_tok_s, 2)} vs ${num(l.aggregate_tok_s, 2)} tok/s = ${num(ratio, 3)}× (${streams > 1 ? 'all decoding at once' : 'decode'}); ` +
                 `batch ${num(bt(a) / bt(l), 3)}×` : '—',
               verdict(ratio === undefined ? undefined : ratio >= target), when(n)]);
  }
  const r = all.roofline;
  const frac = r?.single && r?.bound ? r.single / r.bound : undefined;
  const kcap = r?.kernel_best_gbps && r?.bytes ? (r.kernel_best_gbps * 1e9) / r.bytes : undefined;
  rows.push(['Decode ≥ 70 % of the memory-bandwidth roofline (bench-1b)',
             frac ? `${num(r.single, 2)} of ${num(r.bound, 1)} tok/s = ${num(100 * frac, 1)} %` +
               (kcap ? `; llama.cpp's kernels cap any server at ${num(kcap, 1)} tok/s = ${num((100 * kcap) / r.bound, 1)} % here` : '') : '—',
             verdict(frac === undefined ? undefined : frac >= 0.7), when(r)]);
  const sc = all.scale;
  const rt = sc?.router?.find((b) => /nodes:100000/.test(b.name) && /mode:0/.test(b.name));
  rows.push(['Router decision p99 < 5 µs at 100,000 nodes', rt ? `${num(rt.p99_ns)} ns` : '—', verdict(rt ? rt.p99_ns < 5000 : undefined), when(sc)]);
  const idle = sc?.idle?.find((x) => (x.requested ?? x.count) === 10000);
  rows.push(['< 20 KB of gateway memory per idle node connection (10,000)', idle ? `${num(idle.bytes_per_connection)} bytes` : '—',
             verdict(idle ? idle.bytes_per_connection < 20000 : undefined), when(sc)]);
  return table(['target', 'measured', 'verdict', 'run'], rows);
}

// ---------------------------------------------------------------- main

const steps = { gateway: () => harnessOn(OTHER_CPUS, benchGateway), ab: () => harnessOn(OTHER_CPUS, benchAb),
                e2e: () => harnessOn(OTHER_CPUS, benchE2e), streaming: benchStreaming, node: benchNode, roofline: benchRoofline, scale: benchScale, engine: benchEngine };
for (const s of sections) if (!steps[s]) { console.error(`unknown section '${s}' (have: ${Object.keys(steps).join(', ')})`); process.exit(2); }
for (const [name] of Object.entries(bin)) if (!fs.existsSync(bin[name])) log(`note: ${rel(bin[name])} is not built`);
let failed = 0;
for (const s of sections) {
  log(`== ${s}`);
  try {
    await steps[s]();
  } catch (e) {
    failed++;
    console.error(`[bench] ${s} FAILED: ${e.stack || e.message}`);
  }
}
// Results accumulate per section in docs/bench/results.json (so a partial
// run keeps the others'), and the summary against the targets is rebuilt
// from all of them.
const store = path.join(plots, 'results.json');
const all = fs.existsSync(store) ? JSON.parse(fs.readFileSync(store, 'utf8')) : {};
for (const [k, v] of Object.entries(results)) if (k !== 'machine') all[k] = { ...v, machine: m };
writeFileAtomic(store, JSON.stringify(all, null, 1));
save('summary', summary(all));
if (flag('json')) fs.writeFileSync(opt('json'), JSON.stringify(results, null, 2));
process.exit(failed ? 1 : 0);
