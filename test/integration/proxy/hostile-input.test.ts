/**
 * Hostile clients against the proxy: request smuggling over raw TCP (Content-Length with
 * Transfer-Encoding, two different Content-Lengths, obfuscated Transfer-Encoding), oversized
 * headers, prefix escapes from deployment `a` to deployment `b`, hop-by-hop headers, and
 * X-Forwarded-* sent by the client. The upstreams are real HTTP servers in this process that
 * record every request they receive, so "never reached b" is checked at b itself.
 *
 * Not here: slowloris (a headers timeout that closes a trickling client). The proxy has no
 * headers-timeout option on this branch yet (branch `defects` adds the proxy's timeouts).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DeploymentRoutes } from '../../../src/domain/routing.ts';
import { createProxy, type FlotillaProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import { table } from './helpers.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Upstream {
  server: Server;
  url: string;
  seen: Seen[];
}

async function startUpstream(id: string): Promise<Upstream> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('latin1'),
      };
      seen.push(rec);
      const text = JSON.stringify({ id, ...rec });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        connection: 'x-upstream-secret',
        'x-upstream-secret': 'leak',
        'keep-alive': 'timeout=5',
        'proxy-authenticate': 'Basic realm="r"',
        'x-end-to-end': 'kept',
      });
      res.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { server, url: `http://127.0.0.1:${port}`, seen };
}

function dep(name: string, up: Upstream): DeploymentRoutes {
  return {
    deploymentId: `dep-${name}`,
    name,
    routing: { strategy: 'round_robin', request_timeout_s: 10, retries: 0 },
    routes: [
      {
        routeId: `route-${name}`,
        replicaId: `replica-${name}`,
        url: up.url,
        state: 'HEALTHY',
        weight: 1,
      },
    ],
  };
}

let a: Upstream;
let b: Upstream;
let proxy: FlotillaProxy;
let port: number;

beforeAll(async () => {
  a = await startUpstream('a');
  b = await startUpstream('b');
  proxy = await createProxy({
    source: createStaticTableSource(table([dep('a', a), dep('b', b)])),
  });
  port = proxy.port;
});

afterAll(async () => {
  await proxy?.close();
  for (const u of [a, b]) u?.server.close();
});

beforeEach(() => {
  a.seen.length = 0;
  b.seen.length = 0;
});

/**
 * Writes `payload` on a fresh TCP connection and returns every byte the proxy
 * sent until it closed the connection (or `doneWhen` holds; deadline 15 s).
 */
function rawExchange(
  payload: string | Buffer,
  doneWhen: (text: string) => boolean = () => false,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `the proxy kept the connection open: ${Buffer.concat(chunks).toString('latin1')}`,
        ),
      );
    }, 15_000);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (doneWhen(Buffer.concat(chunks).toString('latin1'))) socket.destroy();
    });
    socket.on('error', () => {
      // A reset after the proxy refused is an answer too; what was read so far is returned.
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    // No half-close: the proxy (like most) takes a client's FIN as an abort. Every payload
    // ends with `Connection: close` or is refused, so the proxy closes when it is done.
    socket.write(payload);
  });
}

/** One whole response with a Content-Length body has arrived. */
function oneResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const m = /content-length: *(\d+)/i.exec(text.slice(0, end));
  return m !== null && Buffer.byteLength(text.slice(end + 4), 'latin1') >= Number(m[1]);
}

const statusLines = (text: string) =>
  [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

describe('proxy: request smuggling over raw TCP', () => {
  const smuggled = 'GET /b/smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

  it('Content-Length together with Transfer-Encoding is refused with 400 and nothing reaches b', async () => {
    const text = await rawExchange(
      'POST /a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n' +
        `0\r\n\r\n${smuggled}`,
    );
    expect(statusLines(text)[0], text).toBe(400);
    expect(b.seen).toEqual([]);
    expect(a.seen.filter((s) => s.body.includes('smuggled'))).toEqual([]);
  });

  it('Transfer-Encoding with Content-Length in the other order is refused too', async () => {
    const text = await rawExchange(
      'POST /a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n' +
        `0\r\n\r\n${smuggled}`,
    );
    expect(statusLines(text)[0], text).toBe(400);
    expect(b.seen).toEqual([]);
  });

  it('two different Content-Length values are refused with 400 and nothing is forwarded', async () => {
    const text = await rawExchange(
      `POST /a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: ${5 + smuggled.length}\r\n\r\nhello${smuggled}`,
    );
    expect(statusLines(text)[0], text).toBe(400);
    expect(a.seen).toEqual([]);
    expect(b.seen).toEqual([]);
  });

  it('an obfuscated Transfer-Encoding (chunked not last, or with junk) never lets a second request through', async () => {
    for (const te of [
      'chunked, identity',
      'xchunked',
      'chunked\r\nTransfer-Encoding: x',
      ' chunked',
    ]) {
      b.seen.length = 0;
      const text = await rawExchange(
        `POST /a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: ${te}\r\n\r\n0\r\n\r\n${smuggled}`,
      );
      expect(statusLines(text).length, `${te}: ${text}`).toBeGreaterThan(0);
      expect(
        statusLines(text).every((s) => s === 400),
        `${te}: ${text}`,
      ).toBe(true);
      expect(b.seen, te).toEqual([]);
    }
  });

  it('a well-formed pipelined pair is two requests, each to its own deployment (the control case)', async () => {
    const text = await rawExchange(
      'POST /a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
        'GET /b/y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(statusLines(text), text).toEqual([200, 200]);
    expect(a.seen.map((s) => [s.url, s.body])).toEqual([['/x', 'hello']]);
    expect(b.seen.map((s) => s.url)).toEqual(['/y']);
  });
});

describe('proxy: oversized headers', () => {
  it('a header block over the limit answers 431 and is not forwarded', async () => {
    const text = await rawExchange(
      `GET /a/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(64 * 1024)}\r\nConnection: close\r\n\r\n`,
    );
    expect(statusLines(text)[0], text.slice(0, 200)).toBe(431);
    expect(a.seen).toEqual([]);
  });

  it('many small headers over the limit answer 431 too', async () => {
    const many = Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}\r\n`).join('');
    const text = await rawExchange(
      `GET /a/x HTTP/1.1\r\nHost: x\r\n${many}Connection: close\r\n\r\n`,
    );
    expect(statusLines(text)[0], text.slice(0, 200)).toBe(431);
    expect(a.seen).toEqual([]);
  });
});

describe('proxy: prefix escapes', () => {
  it('no spelling of a path under /a/ reaches deployment b', async () => {
    const targets = [
      '/a/../b/x',
      '/a/%2e%2e/b/x',
      '/a/%2E%2E/b/x',
      '/a/.%2e/b/x',
      '/a/x/../../b/x',
      '/a/..%2Fb/x',
      '/a/%2e%2e%2Fb/x',
      '/a%2F..%2Fb/x',
      '/a%2Fb/x',
      '/a/..\\b/x',
      '/a/%5C..%5Cb/x',
      '/a//../b/x',
      '/a/./../b/x',
      'http://evil/a/../b/x',
    ];
    for (const t of targets) {
      const text = await rawExchange(`GET ${t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const [status] = statusLines(text);
      expect(status, `${t}: ${text.slice(0, 300)}`).toBeDefined();
      expect(status, t).toBeLessThan(500);
      expect(b.seen, `${t} reached b`).toEqual([]);
      // Whatever a received stays inside a's root: no dot segment climbs out.
      for (const s of a.seen) expect(s.url.startsWith('/'), `${t} -> a ${s.url}`).toBe(true);
      a.seen.length = 0;
    }
  });

  it('/a/../b/x is refused as an escape, not routed', async () => {
    const text = await rawExchange(
      'GET /a/../b/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(statusLines(text)[0], text).toBe(400);
    expect(a.seen).toEqual([]);
    expect(b.seen).toEqual([]);
  });
});

describe('proxy: hop-by-hop and forwarding headers', () => {
  it('hop-by-hop headers and those named in Connection do not reach the replica', async () => {
    const text = await rawExchange(
      'GET /a/x HTTP/1.1\r\nHost: client.example\r\n' +
        'Connection: close, X-Hop-Secret, X-Other\r\nX-Hop-Secret: 1\r\nX-Other: 2\r\n' +
        'Keep-Alive: timeout=99\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n' +
        'Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n' +
        'X-End-To-End: kept\r\n\r\n',
    );
    expect(statusLines(text)[0], text).toBe(200);
    expect(a.seen).toHaveLength(1);
    const h = a.seen[0]!.headers;
    for (const name of [
      'x-hop-secret',
      'x-other',
      'keep-alive',
      'te',
      'trailer',
      'upgrade',
      'proxy-authorization',
      'proxy-connection',
    ]) {
      expect(h[name], name).toBeUndefined();
    }
    // The proxy's own connection to the replica may say keep-alive; never the client's tokens.
    expect(String(h.connection ?? '')).not.toMatch(/x-hop-secret|x-other|close/i);
    expect(h['x-end-to-end']).toBe('kept');
  });

  it('an Upgrade request is not passed through as an upgrade', async () => {
    const text = await rawExchange(
      'GET /a/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      oneResponse,
    );
    expect(statusLines(text), text).toEqual([200]);
    expect(a.seen).toHaveLength(1);
    for (const s of a.seen) {
      expect(s.headers.upgrade).toBeUndefined();
      expect(String(s.headers.connection ?? '')).not.toMatch(/upgrade/i);
    }
  });

  it('hop-by-hop headers of the replica’s answer do not reach the client', async () => {
    const text = await rawExchange('GET /a/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const head = text.slice(0, text.indexOf('\r\n\r\n')).toLowerCase();
    expect(statusLines(text)[0], text).toBe(200);
    expect(head).not.toContain('x-upstream-secret');
    expect(head).not.toContain('proxy-authenticate');
    expect(head).not.toMatch(/keep-alive: timeout=5/);
    expect(head).toContain('x-end-to-end: kept');
  });

  it('X-Forwarded-Proto and -Host are set by the proxy, and X-Forwarded-For ends with the real client', async () => {
    const text = await rawExchange(
      'GET /a/x HTTP/1.1\r\nHost: proxy.example\r\n' +
        'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n' +
        'X-Forwarded-Host: evil2.example\r\nConnection: close\r\n\r\n',
    );
    expect(statusLines(text)[0], text).toBe(200);
    const h = a.seen[0]!.headers;
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe('proxy.example');
    const hops = String(h['x-forwarded-for'])
      .split(',')
      .map((s) => s.trim());
    // The client's claim may stay as history, but the hop the proxy saw is last.
    expect(hops.at(-1)).toBe('127.0.0.1');
    expect(h.host).not.toBe('evil.example');
  });

  it('without client X-Forwarded-* headers the replica sees exactly the proxy’s view', async () => {
    const text = await rawExchange(
      'GET /a/x HTTP/1.1\r\nHost: p.example\r\nConnection: close\r\n\r\n',
    );
    expect(statusLines(text)[0], text).toBe(200);
    const h = a.seen[0]!.headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe('p.example');
  });
});
