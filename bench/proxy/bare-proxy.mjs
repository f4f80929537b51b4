// The contracted stack with nothing on top, for bench/proxy: a node:http server forwarding
// /m/{rest} round robin to two replicas over undici Pools (keep-alive), stripping only the
// hop-by-hop headers. No admission, health, retries, metrics or safety. It measures the
// ceiling of node:http + undici on this machine, so the report can tell what Flotilla's own
// logic costs (flotilla/bare) apart from what the stack costs (bare/nginx).
import { createServer } from 'node:http';
import { Pool } from 'undici';

const pools = (process.env.UPSTREAMS ?? '')
  .split(',')
  .map((u) => new Pool(u, { connections: 1024, pipelining: 1, keepAliveTimeout: 30_000 }));
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'te', 'upgrade']);
let next = 0;

const server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  const headers = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2)
    if (!HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1]);
  const pool = pools[next++ % pools.length];
  pool.dispatch(
    { path: req.url.slice(2) || '/', method: req.method, headers, body: null },
    {
      onConnect() {},
      onHeaders(status, h) {
        const out = [];
        for (let i = 0; i < h.length; i += 2) {
          const n = h[i].toString('latin1');
          if (!HOP.has(n.toLowerCase())) out.push(n, h[i + 1].toString('latin1'));
        }
        res.writeHead(status, out);
        return true;
      },
      onData(chunk) {
        res.write(chunk);
        return true;
      },
      onComplete() {
        res.end();
      },
      onError() {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      },
    },
  );
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${server.address().port}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
