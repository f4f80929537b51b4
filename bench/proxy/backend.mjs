// Fixed-response backend for bench/proxy, one process per replica: `node backend.mjs`.
// GET any path → a small fixed JSON body with Content-Length; GET /sse → an event stream whose
// first event is written at once (for time to first byte), then three more 5 ms apart.
import { createServer } from 'node:http';

const body = Buffer.from(
  JSON.stringify({ ok: true, id: process.env.REPLICA_ID ?? 'r', text: 'x'.repeat(64) }),
);
const headers = { 'content-type': 'application/json', 'content-length': String(body.length) };

const server = createServer((req, res) => {
  if (req.url === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('data: {"token":0}\n\n');
    let i = 1;
    const t = setInterval(() => {
      if (i === 4 || res.destroyed) {
        clearInterval(t);
        res.end('data: [DONE]\n\n');
        return;
      }
      res.write(`data: {"token":${i++}}\n\n`);
    }, 5);
    return;
  }
  res.writeHead(200, headers);
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
