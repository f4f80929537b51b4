/**
 * `/health` of the processes `serve` starts (issue 12 item 5): a proxy reports its load level,
 * queue depth and in-flight counts, and /health answers 500 when the process cannot serve its
 * role (the actor tree died, the proxy closed, the prober stopped), 200 otherwise.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/build-app.ts';
import { createMetrics } from '../../src/api/metrics.ts';
import { healthReport } from '../../src/cli/commands/serve-health.ts';
import type { ProberStats } from '../../src/health/prober.ts';
import type { Flotilla } from '../../src/index.ts';
import { createProxy, type FlotillaProxy } from '../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../src/proxy/routing-table-source.ts';
import { buildNodeApp } from '../../src/roles/node-app.ts';
import { waitFor } from '../harness/wait.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An upstream that holds every request until `release()`. */
async function holdingUpstream() {
  const held: ServerResponse[] = [];
  const server: Server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    held.push(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const release = () => {
    for (const res of held.splice(0)) res.end('ok');
  };
  cleanups.push(async () => {
    release();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${port}`, held, release };
}

const prober = (running: boolean) => ({
  stats: (): ProberStats => ({
    proberId: 'p',
    running,
    members: [],
    owned: 3,
    inFlight: 0,
    probes: 9,
    storeErrors: 0,
    lastHeartbeatAt: null,
  }),
});

describe('/health', () => {
  it('a proxy reports its load level, queue depth and in-flight counts', async () => {
    const upstream = await holdingUpstream();
    const source = createStaticTableSource({
      version: 1,
      endpoints: [],
      deployments: [
        {
          deploymentId: 'd1',
          name: 'slow',
          routing: { strategy: 'round_robin', request_timeout_s: 30, retries: 0 },
          routes: [
            { routeId: 'r1', replicaId: 'x1', url: upstream.url, state: 'HEALTHY', weight: 1 },
          ],
          admission: { max_concurrent_requests: 1, max_queue_size: 10 },
        },
      ],
    });
    const proxy: FlotillaProxy = await createProxy({ source });
    cleanups.push(() => proxy.close());
    // Settled by the end of the test; a failed assertion cuts them, which is not a second error.
    const requests = [1, 2].map(() =>
      fetch(`${proxy.url}/slow/x`)
        .then((r) => r.text())
        .catch(() => ''),
    );
    await waitFor(() => (upstream.held.length === 1 ? true : null), { timeoutMs: 10_000 });
    const own = await waitFor(
      async () => {
        const body = (await (await fetch(`${proxy.url}/health`)).json()) as {
          load: { inflight: number; queued: number };
        };
        return body.load.queued === 1 ? body : null;
      },
      { timeoutMs: 10_000 },
    );
    expect(['stressed', 'degraded', 'critical']).toContain(proxy.status('slow').level);
    expect(own.load).toMatchObject({
      inflight: 1,
      queued: 1,
      capacity: 1,
      level: proxy.status('slow').level,
      serving: true,
      busiest: [{ deployment: 'slow', inflight: 1, queued: 1 }],
    });

    const app = buildNodeApp({
      role: 'proxy',
      registries: [],
      ready: async () => ({ ready: true, missing: [] }),
      health: () => healthReport({ role: 'proxy', proxy }),
    });
    const res = await app.inject({ url: '/health' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      status: 'ok',
      role: 'proxy',
      problems: [],
      load: { inflight: 1, queued: 1, level: proxy.status('slow').level },
    });
    upstream.release();
    // The queued request reaches the upstream once the first slot frees; answer it too.
    await waitFor(
      () => {
        if (upstream.held.length !== 1) return null;
        upstream.release();
        return true;
      },
      { timeoutMs: 10_000 },
    );
    expect(await Promise.all(requests)).toEqual(['ok', 'ok']);
    await app.close();
  });

  it('a proxy that closed answers 500 naming why', async () => {
    const proxy = await createProxy({ source: createStaticTableSource() });
    await proxy.close();
    const app = buildNodeApp({
      role: 'proxy',
      registries: [],
      ready: async () => ({ ready: true, missing: [] }),
      health: () => healthReport({ role: 'proxy', proxy }),
    });
    const res = await app.inject({ url: '/health' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toMatchObject({
      status: 'failing',
      problems: ['proxy: closed, takes no requests'],
    });
  });

  it('a prober node answers 200 while its prober runs and 500 once it stopped', () => {
    expect(healthReport({ role: 'prober', prober: prober(true) })).toMatchObject({
      ok: true,
      prober: { running: true, owned: 3 },
    });
    expect(healthReport({ role: 'prober', prober: prober(false) })).toMatchObject({
      ok: false,
      status: 'failing',
      problems: ['prober: stopped'],
    });
  });

  it('the API answers 500 with the error body when the actor tree died, 200 before', async () => {
    let failure: string | null = null;
    const flotilla = {
      proxy: null,
      subscribe: () => () => {},
      runtime: { onScaling: () => () => {} },
    } as unknown as Flotilla;
    const app = buildApp({
      flotilla,
      metrics: createMetrics({ defaultMetrics: false }),
      health: () => healthReport({ role: 'all', runtimeFailure: () => failure, proxy: null }),
    });
    cleanups.push(() => app.close());
    const ok = await app.inject({ url: '/health' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ status: 'ok', role: 'all', problems: [] });
    failure = 'actor tree failed: boom';
    const bad = await app.inject({ url: '/health' });
    expect(bad.statusCode).toBe(500);
    expect(bad.json()).toMatchObject({
      status: 'failing',
      role: 'all',
      problems: ['actor tree failed: boom'],
      error: {
        code: 'internal',
        message: 'cannot serve: actor tree failed: boom',
        details: [{ path: 'health', message: 'actor tree failed: boom' }],
      },
    });
  });
});
