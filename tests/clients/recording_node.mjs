// A minimal provider node that records everything the gateway sends it: the
// raw bytes after TLS (the HTTP 101 response and every WebSocket frame,
// headers included) and every text message, parsed. It exists so that tests
// can check what a node learns, which `agora node` cannot show: the real
// node decodes frames into its own structs and drops what it does not know.
//
// Written from the wire up (node:tls, RFC 6455 client framing by hand)
// because Node 20 has no WebSocket client and the tests add no packages.
// It speaks just enough of docs/PROTOCOL.md to be served jobs: hello, and an
// instant answer to each job (one delta, then done); cancel of a job still
// open gets done(cancelled). It checks what a client must check (the 101 and
// its Sec-WebSocket-Accept, unmasked server frames, no reserved bits, bounded
// sizes) so that a gateway that broke framing fails the test, not the parse.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';

const kGuid = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const kMaxMessage = 8 << 20;  // the protocol's frame limit (kMaxFrameBytes)
const kMaxHead = 16 << 10;  // the 101 response's status line and headers

// The lower-case hex SHA-256 of the provider agreement's bytes: what a node
// sends in its hello to say which versions it accepts.
export const AGREEMENT_SHA256 = createHash('sha256')
  .update(fs.readFileSync(new URL('../../docs/PROVIDER_AGREEMENT.md', import.meta.url)))
  .digest('hex');

export class RecordingNode {
  // `port`, `ca`: the gateway's; `token`: a provider token (pt_…);
  // `model`: the one model name it serves; `accepted`: the agreement hashes
  // it answers an agreement frame for; `ctx`: the context per slot it
  // advertises; `answer`: the text of every answer; `identityKey` (hex)
  // and `attestation` (a kind) go in the hello when given (the test then
  // answers challenges itself, with send()); with `holdJobs` it answers no
  // job (each stays open, taking its slot, until cancelled).
  constructor({ port, ca, token, nodeId = 'node-recording', model = 'recorded', slots = 4,
                accepted = [AGREEMENT_SHA256], host = '127.0.0.1', timeoutMs = 10000, ctx = 4096, answer = 'hello',
                identityKey, attestation, holdJobs = false }) {
    Object.assign(this, { port, ca, token, nodeId, model, slots, accepted, host, timeoutMs, ctx, answer,
                          identityKey, attestation, holdJobs });
    this.chunks = [];  // every byte received, in order
    this.frames = [];  // every text message, parsed
    this.welcome = undefined;
    this.error = undefined;  // the first failure; the socket is then destroyed
    this.closed = false;  // the socket is gone
    this.closeCode = undefined;  // the gateway's close frame, when it sent one
    this.open = new Set();  // jobs answered with neither done nor cancel yet
    this.sentClose = false;
    this.head = Buffer.alloc(0);  // until the 101 is complete
    this.upgraded = false;
    this.buf = Buffer.alloc(0);  // unparsed frame bytes
    this.message = null;  // {opcode, parts, size} of a fragmented message
  }

  get raw() {
    return Buffer.concat(this.chunks);
  }

  get jobs() {
    return this.frames.filter((f) => f.type === 'job');
  }

  // Connects, upgrades, sends the hello; resolves with the welcome. Rejects
  // on anything else (a 401, a reject frame, a protocol error, a timeout).
  connect() {
    this.wsKey = randomBytes(16).toString('base64');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`no welcome within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.settle = (err) => {
        clearTimeout(timer);
        this.settle = null;
        if (err) reject(err);
        else resolve(this.welcome);
      };
      this.socket = tls.connect({ host: this.host, port: this.port, ca: this.ca });
      this.socket.on('secureConnect', () => {
        this.socket.write(`GET /v1/node HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\nUpgrade: websocket\r\n` +
                          `Connection: Upgrade\r\nSec-WebSocket-Key: ${this.wsKey}\r\n` +
                          `Sec-WebSocket-Version: 13\r\nAuthorization: Bearer ${this.token}\r\n\r\n`);
      });
      this.socket.on('data', (chunk) => {
        this.chunks.push(chunk);
        try {
          this.onData(chunk);
        } catch (e) {
          this.fail(e);
        }
      });
      this.socket.on('error', (e) => this.fail(e));
      this.socket.on('close', () => {
        this.closed = true;
        if (this.settle) this.settle(this.error || new Error('the gateway closed the connection before a welcome'));
      });
    });
  }

  fail(err) {
    if (!this.error) this.error = err;
    if (this.settle) this.settle(err);
    this.socket?.destroy();
  }

  onData(chunk) {
    if (!this.upgraded) {
      this.head = Buffer.concat([this.head, chunk]);
      const end = this.head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.head.length > kMaxHead) throw new Error('the upgrade response has no end of headers');
        return;
      }
      this.checkUpgrade(this.head.subarray(0, end).toString('latin1'));
      this.upgraded = true;
      chunk = this.head.subarray(end + 4);
      this.head = Buffer.alloc(0);
      this.send({
        type: 'hello', protocol: 1, node_id: this.nodeId, agent: 'recording/1', region: '',
        models: [{ name: this.model, sha256: createHash('sha256').update(`recording:${this.model}`).digest('hex'),
                   quantization: 'F16', architecture: 'llama', parameters: 1000, context_length: 4096,
                   ctx_per_slot: this.ctx, slots: this.slots }],
        hardware: { cpu: 'test', cores: 1, memory_bytes: 0, gpus: [] },
        agreements: this.accepted,
        ...(this.identityKey ? { identity_key: this.identityKey } : {}),
        ...(this.attestation ? { attestation: this.attestation } : {}),
      });
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (!this.closed && this.readFrame());
  }

  checkUpgrade(head) {
    const [status, ...lines] = head.split('\r\n');
    if (!/^HTTP\/1\.1 101 /.test(status)) throw new Error(`the upgrade was refused: ${head}`);
    const h = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i > 0) h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const want = createHash('sha1').update(this.wsKey + kGuid).digest('base64');
    if (h['sec-websocket-accept'] !== want) throw new Error(`bad Sec-WebSocket-Accept in ${head}`);
    if (h.upgrade?.toLowerCase() !== 'websocket') throw new Error(`no Upgrade: websocket in ${head}`);
    if (!/\bupgrade\b/i.test(h.connection || '')) throw new Error(`no Connection: Upgrade in ${head}`);
    if (h['sec-websocket-extensions']) throw new Error(`an extension nobody asked for: ${head}`);
  }

  // Parses one frame from `buf`; false when more bytes are needed.
  readFrame() {
    const b = this.buf;
    if (b.length < 2) return false;
    const fin = (b[0] & 0x80) !== 0;
    const opcode = b[0] & 0x0f;
    if (b[0] & 0x70) throw new Error('a frame with reserved bits set');
    if (b[1] & 0x80) throw new Error('a masked frame from the server');
    let len = b[1] & 0x7f;
    let at = 2;
    if (len === 126) {
      if (b.length < 4) return false;
      len = b.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (b.length < 10) return false;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(kMaxMessage)) throw new Error(`a frame of ${big} bytes`);
      len = Number(big);
      at = 10;
    }
    const control = (opcode & 0x08) !== 0;
    if (control) {
      if (![8, 9, 10].includes(opcode)) throw new Error(`unknown control opcode ${opcode}`);
      if (!fin || len > 125) throw new Error('a fragmented or oversized control frame');
    } else {
      if (opcode > 2) throw new Error(`unknown data opcode ${opcode}`);
      if ((opcode === 0) !== (this.message !== null)) throw new Error('bad fragmentation');
      if (len > kMaxMessage || (this.message?.size ?? 0) + len > kMaxMessage) {
        throw new Error(`a message over ${kMaxMessage} bytes`);
      }
    }
    if (b.length < at + len) return false;
    const payload = b.subarray(at, at + len);
    this.buf = b.subarray(at + len);

    if (opcode === 9) {
      this.sendFrame(10, payload);
    } else if (opcode === 8) {
      this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      if (!this.sentClose) this.sendFrame(8, payload.subarray(0, 2));
      this.sentClose = true;
      this.socket.end();
      if (this.settle) this.settle(new Error(`the gateway closed the WebSocket (${this.closeCode})`));
    } else if (opcode !== 10) {
      if (opcode !== 0) this.message = { opcode, parts: [], size: 0 };
      this.message.parts.push(payload);
      this.message.size += len;
      if (fin) {
        const { opcode: op, parts } = this.message;
        this.message = null;
        if (op !== 1) throw new Error('a binary message');
        const text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(parts));
        this.onMessage(JSON.parse(text));
      }
    }
    return true;
  }

  onMessage(m) {
    this.frames.push(m);
    if (m.type === 'welcome') {
      this.welcome = m;
      if (this.settle) this.settle();
    } else if (m.type === 'reject') {
      throw new Error(`rejected: ${m.code}: ${m.message}`);
    } else if (m.type === 'agreement') {
      if (this.accepted.includes(m.sha256)) this.send({ type: 'accept', sha256: m.sha256 });
    } else if (m.type === 'job') {
      this.open.add(m.job);
      if (this.holdJobs) return;
      this.send({ type: 'delta', job: m.job, text: this.answer, logprobs: [] });
      this.finish(m.job, 'stop');
    } else if (m.type === 'cancel') {
      if (this.open.has(m.job)) this.finish(m.job, 'cancelled');
    }
  }

  finish(job, reason) {
    this.open.delete(job);
    this.send({ type: 'done', job, finish_reason: reason,
                usage: { prompt_tokens: 3, completion_tokens: reason === 'stop' ? 1 : 0, cached_prompt_tokens: 0 },
                timings: { queued_ms: 0, prompt_ms: 0, decode_ms: 0 } });
  }

  send(obj) {
    this.sendFrame(1, Buffer.from(JSON.stringify(obj), 'utf8'));
  }

  // One masked frame (a client must mask every frame, RFC 6455 5.3).
  sendFrame(opcode, payload) {
    if (this.closed || this.sentClose || !this.socket?.writable) return;
    if (payload.length > kMaxMessage) throw new Error(`refusing to send ${payload.length} bytes`);
    const n = payload.length;
    const head = Buffer.alloc(n < 126 ? 2 : n <= 0xffff ? 4 : 10);
    head[0] = 0x80 | opcode;
    if (n < 126) {
      head[1] = 0x80 | n;
    } else if (n <= 0xffff) {
      head[1] = 0x80 | 126;
      head.writeUInt16BE(n, 2);
    } else {
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(n), 2);
    }
    const mask = randomBytes(4);
    const masked = Buffer.alloc(n);
    for (let i = 0; i < n; i++) masked[i] = payload[i] ^ mask[i & 3];
    this.socket.write(Buffer.concat([head, mask, masked]));
  }

  // Sends a close frame (1000) and ends the socket; resolves once it is gone.
  close() {
    if (!this.socket || this.closed) return Promise.resolve();
    const gone = new Promise((resolve) => this.socket.once('close', resolve));
    this.sendFrame(8, Buffer.from([0x03, 0xe8]));
    this.sentClose = true;
    this.socket.end();
    // The gateway answers the close and shuts its side; if it does not, do
    // not hang the test on it.
    const timer = setTimeout(() => this.socket.destroy(), 2000);
    return gone.finally(() => clearTimeout(timer));
  }
}
