// Preloaded into Portkey's gateway (node --import ./listen_loopback.mjs ...):
// its start-server.js listens on every interface and takes only a port
// (--port=N), so this binds a listen() that names no host to 127.0.0.1
// instead, and prints the port actually bound (so --port=0 works):
//   portkey listening on http://127.0.0.1:PORT
// Portkey's own code is not changed; it runs in the same single process.
import net from 'node:net';

const host = process.env.PORTKEY_LISTEN_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  // @hono/node-server calls listen(port, hostname, callback) with hostname undefined.
  if (typeof args[0] === 'number' && (args[1] === undefined || typeof args[1] === 'function')) {
    if (args[1] === undefined) args[1] = host;
    else args.splice(1, 0, host);
    this.once('listening', () => {
      const { port } = this.address();
      process.stdout.write(`\nportkey listening on http://${host}:${port}\n`);
    });
  }
  return listen.apply(this, args);
};
