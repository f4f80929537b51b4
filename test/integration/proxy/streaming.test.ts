/**
 * Streaming through the proxy: server-sent events and chunked bodies pass unbuffered and byte
 * for byte, and the first byte arrives about as soon as it does direct.
 */
import { request as httpRequest } from 'node:http';
import { type AddressInfo, connect, createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import {
  deployment,
  proxyTestFixture,
  type Replica,
  startEchoReplica,
  startReplica,
  table,
} from './helpers.ts';

const { proxies, servers } = proxyTestFixture();

interface Fetched {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** ms from sending to each chunk */
  chunkTimes: number[];
  firstByteMs: number;
}

/** One request over a fresh connection, recording when each body chunk arrived. */
function fetchTimed(url: string, opts: { method?: string; body?: string } = {}): Promise<Fetched> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstByteMs = -1;
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: opts.method ?? 'GET',
        agent: false,
        headers: opts.body ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        firstByteMs = performance.now() - t0;
        const chunks: Buffer[] = [];
        const chunkTimes: number[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          chunkTimes.push(performance.now() - t0);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            chunkTimes,
            firstByteMs,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * A TCP tap in front of a replica: records the raw bytes the replica sends, so the body the
 * client gets through the proxy can be compared with exactly what the replica produced.
 */
async function tap(target: Replica): Promise<{ url: string; responseBytes: () => Buffer }> {
  const recorded: Buffer[] = [];
  const server = createServer((down) => {
    const up = connect(target.port, '127.0.0.1');
    down.pipe(up);
    up.on('data', (d: Buffer) => recorded.push(d));
    up.pipe(down);
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    responseBytes: () => Buffer.concat(recorded),
  };
}

/** The body of one raw HTTP/1.1 response, de-chunked. */
function decodeHttpBody(raw: Buffer): Buffer {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end).toString('latin1').toLowerCase();
  let rest = raw.subarray(end + 4);
  if (!head.includes('transfer-encoding: chunked')) return rest;
  const parts: Buffer[] = [];
  for (;;) {
    const lineEnd = rest.indexOf('\r\n');
    const size = Number.parseInt(rest.subarray(0, lineEnd).toString('latin1'), 16);
    if (size === 0) break;
    parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
    rest = rest.subarray(lineEnd + 2 + size + 2);
  }
  return Buffer.concat(parts);
}

async function proxyTo(replicaUrl: string, id = 'r') {
  const fake = { id, url: replicaUrl } as Replica;
  const source = createStaticTableSource(
    table([deployment({ name: 'm', replicas: [{ replica: fake }] })]),
  );
  const proxy = await createProxy({ source });
  proxies.push(proxy);
  return proxy;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('streaming through the proxy', () => {
  it('passes a streamed completion from the echo server byte for byte, as it is produced', async () => {
    const echo = await startEchoReplica('echo-1', ['--token-latency-ms', '15']);
    const t = await tap(echo);
    const proxy = await proxyTo(t.url, 'echo-1');
    const words = Array.from({ length: 40 }, (_, i) => `wörd${i}`).join(' ');
    const request = JSON.stringify({
      model: 'echo',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: words }],
    });
    const via = await fetchTimed(`${proxy.url}/m/v1/chat/completions`, {
      method: 'POST',
      body: request,
    });
    expect(via.status).toBe(200);
    expect(via.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(via.headers['content-encoding']).toBeUndefined();
    expect(via.headers['x-flotilla-replica']).toBe('echo-1');
    // Exactly the bytes the replica sent.
    const sent = decodeHttpBody(t.responseBytes());
    expect(sent.length).toBeGreaterThan(1000);
    expect(via.body.equals(sent)).toBe(true);
    expect(via.body.toString('utf8').endsWith('data: [DONE]\n\n')).toBe(true);
    // Unbuffered: events arrive spread over the ~600 ms of generation, not all at the end.
    const last = via.chunkTimes.at(-1)!;
    console.log(
      `echo stream: ${via.chunkTimes.length} chunks, first at ${via.chunkTimes[0]!.toFixed(1)} ms, last at ${last.toFixed(1)} ms`,
    );
    expect(via.chunkTimes.length).toBeGreaterThan(20);
    expect(via.chunkTimes[0]!).toBeLessThan(last - 300);

    // And the same as asking the replica directly, apart from the per-request id and time.
    const direct = await fetchTimed(`${echo.url}/v1/chat/completions`, {
      method: 'POST',
      body: request,
    });
    const mask = (b: Buffer) =>
      b
        .toString('utf8')
        .replace(/"id":"[^"]+"/g, '"id":"X"')
        .replace(/"created":\d+/g, '"created":0');
    expect(mask(via.body)).toBe(mask(direct.body));
  });

  it('passes a server-sent-event stream byte-identical to the direct one', async () => {
    const r = await startReplica('sse');
    const proxy = await proxyTo(r.url, 'sse');
    const direct = await fetchTimed(`${r.url}/sse?n=30&interval=2`);
    const via = await fetchTimed(`${proxy.url}/m/sse?n=30&interval=2`);
    expect(via.body.equals(direct.body)).toBe(true);
    expect(via.headers['content-type']).toBe('text/event-stream');
    expect(via.headers['cache-control']).toBe('no-cache');
  });

  it('passes a large chunked body intact under backpressure', async () => {
    const r = await startReplica('big');
    const proxy = await proxyTo(r.url, 'big');
    const direct = await fetchTimed(`${r.url}/sse?n=30000&interval=0`);
    const via = await fetchTimed(`${proxy.url}/m/sse?n=30000&interval=0`);
    expect(direct.body.length).toBeGreaterThan(2_000_000);
    expect(via.body.equals(direct.body)).toBe(true);
  });

  it('adds little to the time to first byte of a stream', async () => {
    const r = await startReplica('ttfb');
    const proxy = await proxyTo(r.url, 'ttfb');
    const direct: number[] = [];
    const via: number[] = [];
    for (let i = 0; i < 30; i++) {
      direct.push((await fetchTimed(`${r.url}/sse?n=1&interval=0`)).chunkTimes[0]!);
      via.push((await fetchTimed(`${proxy.url}/m/sse?n=1&interval=0`)).chunkTimes[0]!);
    }
    const added = median(via) - median(direct);
    console.log(
      `SSE first event: direct median ${median(direct).toFixed(2)} ms, via proxy ${median(via).toFixed(2)} ms (+${added.toFixed(2)} ms; new connections each time)`,
    );
    // The 1 ms aim is measured by bench/proxy on warm connections; here only a sanity bound.
    expect(added).toBeLessThan(20);
  });
});
