/**
 * The data-plane contract: what a client sees through a data plane, whichever it is. One suite,
 * run by own.test.ts (Flotilla's proxy) and haproxy.test.ts (the managed HAProxy). Where a plane
 * cannot do what the contract's first choice is, its `capabilities` say so and the test asserts
 * the documented alternative (README "HAProxy data plane"), never a skip.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { BalancingStrategy, RoutingTable } from '../../../src/domain/routing.ts';
import type { FlotillaProxy } from '../../../src/proxy/proxy-server.ts';
import {
  createStaticTableSource,
  type StaticTableSource,
} from '../../../src/proxy/routing-table-source.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  type Replica,
  runConcurrent,
  startEchoReplica,
  startReplica,
  table,
  waitFor,
} from '../proxy/helpers.ts';

/** What differs between planes; each flag names the alternative the suite then asserts. */
export interface DataPlaneCapabilities {
  /**
   * Resolves `.`/`..` inside the deployment's prefix (`/m/x/../whoami` -> `/whoami`). Without
   * it, every path holding a dot-dot segment is refused with 400: never routed elsewhere.
   */
  resolvesDotSegments: boolean;
  /** Prefixes the path of a route URL that has one (`http://h:p/base/`); else it is ignored. */
  routeUrlBasePath: boolean;
  /**
   * Removes headers named in a `Connection` header. Without it only the fixed hop-by-hop list
   * is removed (`proxy-authorization`, `te`, `keep-alive`, `upgrade`, `proxy-authenticate`, ...).
   */
  stripsConnectionNamedHeaders: boolean;
  /**
   * Takes a dead replica out of rotation from live-traffic failures (outlier ejection). Without
   * it, retries still hide the failures from clients until the table drops the route.
   */
  outlierEjection: boolean;
  /** `inflight(routeId)` is exact at once; else it is read from the plane every few 100 ms. */
  inflightExact: boolean;
}

export interface DataPlaneUnderTest {
  name: string;
  capabilities: DataPlaneCapabilities;
  start(source: StaticTableSource): Promise<FlotillaProxy>;
  /** Resolves once the plane applied every table set so far. */
  settled(proxy: FlotillaProxy): Promise<void>;
}

/** Sends the path and headers exactly as given (node:http normalises neither). */
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

export function dataPlaneContract(plane: DataPlaneUnderTest): void {
  const { proxies, closers } = proxyTestFixture();
  const caps = plane.capabilities;

  async function proxyFor(...args: Parameters<typeof table>) {
    const source = createStaticTableSource(table(...args));
    const proxy = await plane.start(source);
    proxies.push(proxy);
    const c = client();
    closers.push(() => c.close());
    const update = async (t: RoutingTable) => {
      source.set(t);
      await plane.settled(proxy);
    };
    return { source, proxy, c, update };
  }

  describe(`data plane contract: ${plane.name}`, () => {
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
      // The bare prefix is the replica's root.
      expect(JSON.parse((await c.get(`${proxy.url}/m`)).text).url).toBe('/');
    });

    it(`route URL with a path: ${caps.routeUrlBasePath ? 'prefixes it' : 'its path is not applied'}`, async () => {
      const a = await startReplica('a');
      const based = { ...a, url: `${a.url}/base/` };
      const { proxy, c } = await proxyFor([
        deployment({ name: 'm', replicas: [{ replica: based }] }),
      ]);
      const r = await c.get(`${proxy.url}/m/v1/models?x=1`);
      expect(JSON.parse(r.text).url).toBe(
        caps.routeUrlBasePath ? '/base/v1/models?x=1' : '/v1/models?x=1',
      );
    });

    it('forwards request bodies and methods, a large body and a chunked upload', async () => {
      const a = await startReplica('a');
      const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
      const payload = JSON.stringify({ prompt: 'héllo', n: 1 });
      const r = await c.get(`${proxy.url}/m/v1/completions`, {
        method: 'POST',
        body: payload,
        headers: { 'content-type': 'application/json' },
      });
      expect(JSON.parse(r.text)).toMatchObject({ method: 'POST', body: payload });
      const big = 'x'.repeat(3 * 1024 * 1024);
      const rb = await c.get(`${proxy.url}/m/upload`, { method: 'POST', body: big });
      expect(rb.status).toBe(200);
      expect(JSON.parse(rb.text).body.length).toBe(big.length);

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
      expect(JSON.parse(chunked.text).body).toBe('part one, part two');
    });

    it('answers HEAD with the replica’s headers and no body', async () => {
      const a = await startReplica('a');
      const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
      const r = await c.get(`${proxy.url}/m/x`, { method: 'HEAD' });
      expect(r.status).toBe(200);
      expect(Number(r.headers['content-length'])).toBeGreaterThan(0);
      expect(r.text).toBe('');
      expect(r.headers['x-flotilla-replica']).toBe('a');
    });

    it('answers 404 not_found in the error shape for an unknown name', async () => {
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

    it(`never lets a path escape its deployment prefix (${caps.resolvesDotSegments ? 'dot segments inside it resolved' : 'any dot-dot segment refused'})`, async () => {
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
      if (caps.resolvesDotSegments) {
        expect(inside.headers['x-flotilla-replica']).toBe('a');
        expect(JSON.parse(inside.text).url).toBe('/whoami');
      } else {
        expect(inside.status).toBe(400);
        expect(JSON.parse(inside.text).error.code).toBe('bad_request');
      }
      expect((await raw(proxy.url, '/../other/whoami')).status).not.toBe(200);
      expect((await b.stats()).requests).toBe(0);
    });

    it(`strips hop-by-hop headers both ways${caps.stripsConnectionNamedHeaders ? '' : ' (the fixed list; not those named in Connection)'}`, async () => {
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
      expect(seen['proxy-authorization']).toBeUndefined();
      expect(seen.te).toBeUndefined();
      expect(seen['x-keep']).toBe('yes');
      expect(r.headers['proxy-authenticate']).toBeUndefined();
      expect(r.headers['x-end-to-end']).toBe('kept');
      if (caps.stripsConnectionNamedHeaders) {
        expect(seen['x-drop-me']).toBeUndefined();
        expect(r.headers['x-secret-hop']).toBeUndefined();
      } else {
        expect(seen['x-drop-me']).toBe('1');
        expect(r.headers['x-secret-hop']).toBe('leak');
      }
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

    it('fails static to DEGRADED routes when none is HEALTHY, says so, and stops when one is HEALTHY again', async () => {
      const a = await startReplica('a');
      const b = await startReplica('b');
      const d = (aState: 'UNHEALTHY' | 'HEALTHY') =>
        deployment({
          name: 'm',
          replicas: [
            { replica: a, state: aState },
            { replica: b, state: 'DEGRADED' },
          ],
        });
      const { proxy, c, update } = await proxyFor([d('UNHEALTHY')]);
      const r = await c.get(`${proxy.url}/m/x`);
      expect(r.status).toBe(200);
      expect(r.headers['x-flotilla-replica']).toBe('b');
      expect(r.headers['x-flotilla-fail-static']).toBe('1');
      await update(table([d('HEALTHY')]));
      const back = await c.get(`${proxy.url}/m/x`);
      expect(back.headers['x-flotilla-replica']).toBe('a');
      expect(back.headers['x-flotilla-fail-static']).toBeUndefined();
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
      await c.get(`${proxy.url}/nope`); // warm the client connection
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
      expect(times[5]!).toBeLessThan(50);
      expect((await a.stats()).requests).toBe(0);
    });

    it('follows table changes: a route added, one removed, a new deployment', async () => {
      const [a, b, n] = await Promise.all(['a', 'b', 'n'].map((id) => startReplica(id)));
      const { proxy, c, update } = await proxyFor([
        deployment({ name: 'm', replicas: [{ replica: a! }] }),
      ]);
      expect((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']).toBe('a');
      await update(
        table([deployment({ name: 'm', replicas: [{ replica: a! }, { replica: b! }] })]),
      );
      const both = [];
      for (let i = 0; i < 6; i++)
        both.push((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']);
      expect(countBy(both as string[])).toEqual({ a: 3, b: 3 });
      await update(
        table([
          deployment({ name: 'm', replicas: [{ replica: b! }] }),
          deployment({ name: 'n', replicas: [{ replica: n! }] }),
        ]),
      );
      for (let i = 0; i < 4; i++)
        expect((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']).toBe('b');
      expect((await c.get(`${proxy.url}/n/x`)).headers['x-flotilla-replica']).toBe('n');
      await update(table([deployment({ name: 'n', replicas: [{ replica: n! }] })]));
      expect((await c.get(`${proxy.url}/m/x`)).status).toBe(404);
    });

    it('gives a TERMINATING route no new request and counts its in-flight ones until they finish', async () => {
      const a = await startReplica('a');
      const b = await startReplica('b');
      const d = (aState: 'HEALTHY' | 'TERMINATING') =>
        deployment({ name: 'm', replicas: [{ replica: a, state: aState }, { replica: b }] });
      const { proxy, c, update } = await proxyFor([d('HEALTHY')]);
      const slow = [c.get(`${proxy.url}/m/x?delay=1500`), c.get(`${proxy.url}/m/x?delay=1500`)];
      await waitFor(() => proxy.inflight('route-a') === 1, 'in-flight request on a');
      await update(table([d('TERMINATING')]));
      if (caps.inflightExact) expect(proxy.inflight('route-a')).toBe(1);
      const during = [];
      for (let i = 0; i < 10; i++)
        during.push((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']);
      expect(countBy(during as string[])).toEqual({ b: 10 });
      expect(proxy.inflight('route-a')).toBe(1);
      const results = await Promise.all(slow);
      expect(results.map((r) => r.status)).toEqual([200, 200]);
      await waitFor(() => proxy.inflight('route-a') === 0, 'drained');
    });

    it('answers 504 upstream_timeout when a replica is slower than request_timeout_s', async () => {
      const a = await startReplica('a');
      const { proxy, c } = await proxyFor([
        deployment({ name: 'm', request_timeout_s: 0.5, retries: 0, replicas: [{ replica: a }] }),
      ]);
      const t0 = performance.now();
      const r = await c.get(`${proxy.url}/m/x?delay=5000`);
      const ms = performance.now() - t0;
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

    it('retries a refused connection on another replica', async () => {
      const dead = await startReplica('dead');
      const good = await startReplica('good');
      await dead.kill('SIGKILL');
      const { proxy, c } = await proxyFor([
        deployment({ name: 'm', retries: 1, replicas: [{ replica: dead }, { replica: good }] }),
      ]);
      for (let i = 0; i < 6; i++) {
        const r = await c.get(`${proxy.url}/m/x`);
        expect(r.status).toBe(200);
        expect(r.headers['x-flotilla-replica']).toBe('good');
      }
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
      await waitFor(() => proxy.inflight('route-a') === 1, 'counted in flight');
      ac.abort();
      expect(await pending).toBeInstanceOf(Error);
      await waitFor(async () => (await a.stats()).aborted === 1, 'replica saw the abort');
      await waitFor(
        () => proxy.inflight('route-a') === 0 && proxy.status('m').inflight === 0,
        'proxy released it',
      );
    });

    it('never has more than max_concurrent_requests in flight at one replica', async () => {
      const a = await startReplica('a', { DELAY_MS: 50 });
      const { proxy, c } = await proxyFor([
        deployment({
          name: 'm',
          admission: { max_concurrent_requests: 2, max_queue_size: 100, queue_timeout_s: 30 },
          replicas: [{ replica: a }],
        }),
      ]);
      const statuses = await runConcurrent(
        24,
        12,
        async () => (await c.get(`${proxy.url}/m/x`)).status,
      );
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
      expect((await a.stats()).maxInflight).toBeLessThanOrEqual(2);
    });

    describe('balancing', () => {
      const ADMISSION = { max_concurrent_requests: 64 };
      async function distribute(
        strategy: BalancingStrategy,
        replicas: { replica: Replica; weight?: number }[],
        total: number,
        concurrency: number,
      ): Promise<Record<string, number>> {
        const { proxy, c } = await proxyFor([
          deployment({ name: 'm', strategy, admission: ADMISSION, replicas }),
        ]);
        const seen = await runConcurrent(total, concurrency, async () => {
          const r = await c.get(`${proxy.url}/m/x`);
          expect(r.status).toBe(200);
          return r.headers['x-flotilla-replica'] as string;
        });
        return countBy(seen);
      }

      it('round robin gives each replica its share within ±1', async () => {
        const rs = await Promise.all(['a', 'b', 'c'].map((id) => startReplica(id)));
        const counts = await distribute(
          'round_robin',
          rs.map((replica) => ({ replica })),
          600,
          8,
        );
        for (const id of ['a', 'b', 'c'])
          expect(Math.abs(counts[id]! - 200)).toBeLessThanOrEqual(1);
      });

      it('weighted follows the route weights within ±5%', async () => {
        const rs = await Promise.all(['a', 'b', 'c'].map((id) => startReplica(id)));
        const weights = { a: 1, b: 3, c: 6 };
        const counts = await distribute(
          'weighted',
          rs.map((replica) => ({ replica, weight: weights[replica.id as keyof typeof weights] })),
          1000,
          8,
        );
        for (const [id, w] of Object.entries(weights)) {
          const expected = (1000 * w) / 10;
          expect(Math.abs(counts[id]! - expected)).toBeLessThanOrEqual(expected * 0.05);
        }
      });

      it('least connections sends most traffic to the faster replica under uneven latency', async () => {
        const fast = await startReplica('fast', { DELAY_MS: 2 });
        const slow = await startReplica('slow', { DELAY_MS: 40 });
        const counts = await distribute(
          'least_connections',
          [{ replica: fast }, { replica: slow }],
          1000,
          16,
        );
        expect(counts.fast! + counts.slow!).toBe(1000);
        expect(counts.fast!).toBeGreaterThan(2 * counts.slow!);
      });
    });

    describe('streaming', () => {
      it('passes a server-sent-event stream byte-identical to the direct one, event by event', async () => {
        const a = await startReplica('a');
        const { proxy, c } = await proxyFor([
          deployment({ name: 'm', replicas: [{ replica: a }] }),
        ]);
        const direct = await c.get(`${a.url}/sse?n=30&interval=2`);
        const via = await c.get(`${proxy.url}/m/sse?n=30&interval=2`);
        expect(via.status).toBe(200);
        expect(via.headers['content-type']).toBe('text/event-stream');
        expect(via.text).toBe(direct.text);
        // Unbuffered: the first event arrives while the replica is still producing.
        const u = new URL(proxy.url);
        const first = await new Promise<{ firstAt: number; endAt: number }>((resolve, reject) => {
          const t0 = performance.now();
          let firstAt = -1;
          const req = httpRequest(
            { host: u.hostname, port: u.port, path: '/m/sse?n=5&interval=200', agent: false },
            (res) => {
              res.on('data', () => {
                if (firstAt < 0) firstAt = performance.now() - t0;
              });
              res.on('end', () => resolve({ firstAt, endAt: performance.now() - t0 }));
            },
          );
          req.on('error', reject);
          req.end();
        });
        expect(first.endAt).toBeGreaterThan(900);
        expect(first.firstAt).toBeLessThan(first.endAt - 700);
      });

      it('passes a streamed completion from the echo server intact', async () => {
        const echo = await startEchoReplica('echo');
        const { proxy, c } = await proxyFor([
          deployment({ name: 'm', replicas: [{ replica: echo }] }),
        ]);
        const body = JSON.stringify({
          model: 'echo',
          stream: true,
          messages: [{ role: 'user', content: 'one two three four' }],
        });
        const r = await c.get(`${proxy.url}/m/v1/chat/completions`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json' },
        });
        expect(r.status).toBe(200);
        expect(r.headers['x-flotilla-replica']).toBe('echo');
        const events = r.text.split('\n\n').filter((e) => e.startsWith('data: '));
        expect(events.length).toBeGreaterThan(2);
        expect(events.at(-1)).toBe('data: [DONE]');
      });
    });

    it(`loses no request when a replica is killed under steady load${caps.outlierEjection ? ' and ejects it' : ' (retries; no ejection)'}`, async () => {
      const rs = await Promise.all(['a', 'b', 'c'].map((id) => startReplica(id, { DELAY_MS: 5 })));
      const { proxy, c } = await proxyFor([
        deployment({
          name: 'm',
          retries: 2,
          admission: { max_concurrent_requests: 16 },
          replicas: rs.map((replica) => ({ replica })),
        }),
      ]);
      const results: { status: number; replica: string }[] = [];
      const errors: unknown[] = [];
      let stop = false;
      const loops = Array.from({ length: 8 }, async () => {
        while (!stop) {
          try {
            const r = await c.get(`${proxy.url}/m/x`);
            results.push({ status: r.status, replica: String(r.headers['x-flotilla-replica']) });
          } catch (err) {
            errors.push(err);
          }
        }
      });
      await waitFor(() => results.length >= 300, 'steady load');
      const killedAt = results.length;
      await rs[1]!.kill('SIGKILL');
      await waitFor(() => results.length >= killedAt + 600, 'load after the kill', 30_000);
      stop = true;
      await Promise.all(loops);
      expect(errors).toEqual([]);
      expect(results.filter((r) => r.status !== 200)).toEqual([]);
      const after = countBy(results.slice(killedAt + 50).map((r) => r.replica));
      expect(after.b ?? 0).toBe(0);
    });
  });
}
