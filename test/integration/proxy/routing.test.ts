/**
 * Request routing through a real proxy to real replica processes: paths, headers, health
 * states, fail static, errors, timeouts, retries, client aborts and draining.
 */

import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  startReplica,
  table,
  waitFor,
} from './helpers.ts';

const { proxies, closers: cleanups } = proxyTestFixture();

async function proxyFor(...args: Parameters<typeof table>) {
  const source = createStaticTableSource(table(...args));
  const proxy = await createProxy({ source });
  proxies.push(proxy);
  const c = client();
  cleanups.push(() => c.close());
  return { source, proxy, c };
}

/**
 * Sends a request with the path and headers exactly as given: node:http neither normalises
 * the path nor refuses hop-by-hop headers (undici does both).
 */
function raw(proxyUrl: string, path: string, headers: Record<string, string> = {}) {
  const u = new URL(proxyUrl);
  return new Promise<{ status: number; headers: IncomingHttpHeaders; text: string }>(
    (resolve, reject) => {
      const req = httpRequest(
        { host: u.hostname, port: u.port, path, headers, agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
        },
      );
      req.on('error', reject);
      req.end();
    },
  );
}

describe('proxy routing', () => {
  it('forwards /{deployment}/{rest}?query to the replica’s /{rest}?query and names the replica', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    const r = await c.get(`${proxy.url}/m/v1/models?limit=2&x=%20y`);
    expect(r.status).toBe(200);
    expect(r.headers['x-flotilla-replica']).toBe('a');
    const body = JSON.parse(r.text);
    expect(body.url).toBe('/v1/models?limit=2&x=%20y');
    expect(body.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(body.headers['x-forwarded-proto']).toBe('http');
    expect(body.headers['x-forwarded-host']).toBe(new URL(proxy.url).host);
  });

  it('prefixes the path of a route URL that has one', async () => {
    const a = await startReplica('a');
    const based = { ...a, url: `${a.url}/base/` };
    const { proxy, c } = await proxyFor([
      deployment({ name: 'm', replicas: [{ replica: based }] }),
    ]);
    const r = await c.get(`${proxy.url}/m/v1/models?x=1`);
    expect(JSON.parse(r.text).url).toBe('/base/v1/models?x=1');
  });

  it('forwards request bodies and methods', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    const payload = JSON.stringify({ prompt: 'héllo', n: 1 });
    const r = await c.get(`${proxy.url}/m/v1/completions`, {
      method: 'POST',
      body: payload,
      headers: { 'content-type': 'application/json' },
    });
    const body = JSON.parse(r.text);
    expect(body.method).toBe('POST');
    expect(body.body).toBe(payload);
  });

  it('streams a large request body and a chunked upload to the replica', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    const big = 'x'.repeat(3 * 1024 * 1024);
    const r = await c.get(`${proxy.url}/m/upload`, { method: 'POST', body: big });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).body.length).toBe(big.length);

    const u = new URL(proxy.url);
    const chunked = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: u.hostname, port: u.port, path: '/m/upload', method: 'POST', agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('error', reject);
      req.write('part one, ');
      setTimeout(() => req.end('part two'), 20);
    });
    expect(chunked.status).toBe(200);
    const seen = JSON.parse(chunked.text);
    expect(seen.body).toBe('part one, part two');
    expect(seen.headers['transfer-encoding']).toBe('chunked');
  });

  it('answers HEAD with the replica’s headers and no body', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    const r = await c.get(`${proxy.url}/m/x`, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(Number(r.headers['content-length'])).toBeGreaterThan(0);
    expect(r.text).toBe('');
    expect(r.headers['x-flotilla-replica']).toBe('a');
    expect((await c.get(`${proxy.url}/m/x`)).status).toBe(200);
  });

  it('answers 404 not_found for an unknown name', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    const r = await c.get(`${proxy.url}/nope/x`);
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text)).toEqual({
      error: {
        code: 'not_found',
        message: expect.any(String),
        details: [{ path: '(url)', message: expect.any(String) }],
      },
    });
  });

  it('never lets a path escape its deployment prefix', async () => {
    const a = await startReplica('a');
    const b = await startReplica('b');
    const { proxy } = await proxyFor([
      deployment({ name: 'm', replicas: [{ replica: a }] }),
      deployment({ name: 'other', replicas: [{ replica: b }] }),
    ]);
    for (const path of [
      '/m/../other/whoami',
      '/m/%2e%2e/other/whoami',
      '/m/x/../../other/whoami',
      '/m/.%2E/other',
    ]) {
      const r = await raw(proxy.url, path);
      expect(r.status, path).toBe(400);
      expect(r.headers['x-flotilla-replica'], path).toBeUndefined();
    }
    const inside = await raw(proxy.url, '/m/x/../whoami');
    expect(inside.headers['x-flotilla-replica']).toBe('a');
    expect(JSON.parse(inside.text).url).toBe('/whoami');
    expect((await raw(proxy.url, '/../other/whoami')).status).toBe(404);
    expect((await b.stats()).requests).toBe(0);
  });

  it('strips hop-by-hop headers both ways', async () => {
    const a = await startReplica('a');
    const { proxy } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    const r = await raw(proxy.url, '/m/hop', {
      connection: 'x-drop-me',
      'x-drop-me': '1',
      'proxy-authorization': 'Basic abc',
      te: 'trailers',
      'x-keep': 'yes',
    });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.text).headers;
    expect(seen['x-drop-me']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(seen['x-keep']).toBe('yes');
    expect(r.headers['x-secret-hop']).toBeUndefined();
    expect(r.headers['proxy-authenticate']).toBeUndefined();
    expect(r.headers['x-end-to-end']).toBe('kept');
    expect(r.headers['x-flotilla-replica']).toBe('a');
  });

  it('sends traffic only to HEALTHY routes', async () => {
    const [a, b, c3, d] = await Promise.all(['a', 'b', 'c', 'd'].map((id) => startReplica(id)));
    const { proxy, c } = await proxyFor([
      deployment({
        name: 'm',
        replicas: [
          { replica: a! },
          { replica: b!, state: 'UNHEALTHY' },
          { replica: c3!, state: 'DEGRADED' },
          { replica: d!, state: 'PROVISIONING' },
        ],
      }),
    ]);
    const seen = [];
    for (let i = 0; i < 20; i++)
      seen.push((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']);
    expect(countBy(seen as string[])).toEqual({ a: 20 });
  });

  it('fails static to DEGRADED routes when none is HEALTHY, and says so', async () => {
    const a = await startReplica('a');
    const b = await startReplica('b');
    const { proxy, c } = await proxyFor([
      deployment({
        name: 'm',
        replicas: [
          { replica: a, state: 'UNHEALTHY' },
          { replica: b, state: 'DEGRADED' },
        ],
      }),
    ]);
    const r = await c.get(`${proxy.url}/m/x`);
    expect(r.status).toBe(200);
    expect(r.headers['x-flotilla-replica']).toBe('b');
    expect(r.headers['x-flotilla-fail-static']).toBe('1');
  });

  it('answers 503 no_healthy_replicas with Retry-After within 50 ms when nothing can serve', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([
      deployment({
        name: 'm',
        replicas: [
          { replica: a, state: 'UNHEALTHY' },
          { replica: a, routeId: 'r2', state: 'TERMINATING' },
        ],
      }),
    ]);
    await c.get(`${proxy.url}/health`); // warm the client connection
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const r = await c.get(`${proxy.url}/m/x`);
      times.push(performance.now() - t0);
      expect(r.status).toBe(503);
      expect(r.headers['retry-after']).toBeDefined();
      expect(JSON.parse(r.text).error.code).toBe('no_healthy_replicas');
    }
    times.sort((x, y) => x - y);
    console.log(`503 no_healthy_replicas latency ms: ${times.map((t) => t.toFixed(2)).join(' ')}`);
    expect(times[5]!).toBeLessThan(50);
    expect((await a.stats()).requests).toBe(0);
  });

  it('gives a TERMINATING route no new request and counts its in-flight ones until they finish', async () => {
    const a = await startReplica('a');
    const b = await startReplica('b');
    const d = (aState: 'HEALTHY' | 'TERMINATING') =>
      deployment({ name: 'm', replicas: [{ replica: a, state: aState }, { replica: b }] });
    const { source, proxy, c } = await proxyFor([d('HEALTHY')]);
    // Start two slow requests: round robin puts one on each replica.
    const slow = [c.get(`${proxy.url}/m/x?delay=600`), c.get(`${proxy.url}/m/x?delay=600`)];
    await waitFor(() => proxy.inflight('route-a') === 1, 'in-flight request on a');
    source.set(table([d('TERMINATING')]));
    expect(proxy.inflight('route-a')).toBe(1);
    const during = [];
    for (let i = 0; i < 10; i++)
      during.push((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']);
    expect(countBy(during as string[])).toEqual({ b: 10 });
    const results = await Promise.all(slow);
    expect(results.map((r) => r.status)).toEqual([200, 200]);
    await waitFor(() => proxy.inflight('route-a') === 0, 'drained');
  });

  it('answers 504 upstream_timeout when a replica is slower than request_timeout_s', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([
      deployment({ name: 'm', request_timeout_s: 0.5, replicas: [{ replica: a }] }),
    ]);
    const t0 = performance.now();
    const r = await c.get(`${proxy.url}/m/x?delay=5000`);
    const ms = performance.now() - t0;
    console.log(`504 after ${ms.toFixed(0)} ms (timeout 500 ms)`);
    expect(r.status).toBe(504);
    expect(JSON.parse(r.text).error.code).toBe('upstream_timeout');
    expect(ms).toBeLessThan(4000);
  });

  it('retries a 503 on another replica, replaying the request body', async () => {
    const bad = await startReplica('bad', { STATUS: 503 });
    const good = await startReplica('good');
    const { proxy, c } = await proxyFor([
      deployment({ name: 'm', retries: 1, replicas: [{ replica: bad }, { replica: good }] }),
    ]);
    for (let i = 0; i < 10; i++) {
      const r = await c.get(`${proxy.url}/m/x`, { method: 'POST', body: `{"i":${i}}` });
      expect(r.status).toBe(200);
      expect(r.headers['x-flotilla-replica']).toBe('good');
      expect(JSON.parse(r.text).body).toBe(`{"i":${i}}`);
    }
    expect((await bad.stats()).requests).toBeGreaterThan(0);
  });

  it('passes a replica’s 503 through when retries are off', async () => {
    const bad = await startReplica('bad', { STATUS: 503 });
    const good = await startReplica('good');
    const { proxy, c } = await proxyFor([
      deployment({ name: 'm', retries: 0, replicas: [{ replica: bad }, { replica: good }] }),
    ]);
    const r = await c.get(`${proxy.url}/m/x`);
    expect(r.status).toBe(503);
    expect(r.headers['x-flotilla-replica']).toBe('bad');
    expect(JSON.parse(r.text)).toEqual({ id: 'bad', forced: 503 });
  });

  it('aborts the upstream request when the client disconnects', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    const ac = new AbortController();
    const pending = c.get(`${proxy.url}/m/hang`, { signal: ac.signal }).catch((e: Error) => e);
    await waitFor(async () => (await a.stats()).inflight === 1, 'request at the replica');
    expect(proxy.inflight('route-a')).toBe(1);
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(async () => (await a.stats()).aborted === 1, 'replica saw the abort');
    await waitFor(
      () => proxy.inflight('route-a') === 0 && proxy.status('m').inflight === 0,
      'proxy released it',
    );
  });

  it('answers /health and /ready itself, and serves its metrics', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    await c.get(`${proxy.url}/m/x`);
    expect((await c.get(`${proxy.url}/health`)).status).toBe(200);
    const ready = await c.get(`${proxy.url}/ready`);
    expect(ready.status).toBe(200);
    const m = await c.get(`${proxy.url}/metrics`);
    expect(m.text).toContain('flotilla_proxy_requests_total{deployment="m",code="2xx"} 1');
    expect(m.text).toContain('flotilla_proxy_request_duration_seconds_bucket');
    expect(m.text).toContain('flotilla_proxy_capacity{deployment="m"} 3');
  });
});
