// Starts the pinned Portkey gateway for bench/run.mjs (the same command as
// run.sh): one Node process on 127.0.0.1, an ephemeral port, headless.
import fs from 'node:fs';
import path from 'node:path';

export async function startPortkey({ start, until, dir }) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules/@portkey-ai/gateway/package.json'), 'utf8'));
  const child = start(process.execPath, ['--import', path.join(dir, 'listen_loopback.mjs'),
                                         path.join(dir, 'node_modules/@portkey-ai/gateway/build/start-server.js'),
                                         '--port=0', '--headless'], 'portkey', { cwd: dir });
  const port = await until('Portkey to listen', () => (child.logs.match(/portkey listening on http:\/\/127\.0\.0\.1:(\d+)/) || [])[1],
                           { watch: [child] });
  return { child, url: `http://127.0.0.1:${port}`, version: pkg.version };
}

// Per-request routing headers: Portkey's OpenAI provider, pointed at the
// mock upstream.
export function headers(upstream) {
  return ['x-portkey-provider: openai', `x-portkey-custom-host: ${upstream}`];
}
