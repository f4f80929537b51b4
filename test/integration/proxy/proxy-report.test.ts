/**
 * Proxy reports through real Redis: proxies publish per-route counts, last requests and load
 * counters (src/proxy/proxy-report.ts) and the coordinator's reader
 * (src/runtime/cluster-proxies.ts) waits for every live proxy to report zero and reads their
 * load; a proxy whose report expired is not live.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { RoutingTable } from '../../../src/domain/routing.ts';
import {
  proxyReportKey,
  SEQ_FIELD,
  startProxyReportPublisher,
} from '../../../src/proxy/proxy-report.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import { createClusterProxies } from '../../../src/runtime/cluster-proxies.ts';
import type { LoadCounters } from '../../../src/scaling/load-counters.ts';
import { LATENCY_BUCKETS_S, type LoadReport } from '../../../src/scaling/load-report.ts';
import { isolatedPrefix, services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const log = pino({ level: 'silent' });

function redis(): Redis {
  const r = new Redis(services().redisUrl);
  closers.push(() => r.quit());
  return r;
}

function tableWith(version: number, routeIds: string[]): RoutingTable {
  return {
    version,
    endpoints: [],
    deployments: [
      {
        deploymentId: 'dep-1',
        name: 'd1',
        routing: { strategy: 'round_robin', request_timeout_s: 30, retries: 0 },
        routes: routeIds.map((routeId) => ({
          routeId,
          replicaId: `rep-${routeId}`,
          url: 'http://127.0.0.1:1',
          state: 'HEALTHY' as const,
          weight: 1,
        })),
      },
    ],
  };
}

/** A publisher over a static table and a settable count per route. */
function fakeProxy(
  prefix: string,
  proxyId: string,
  routeIds: string[],
  ttlMs = 3_000,
  load?: LoadCounters,
) {
  const counts = new Map<string, number>();
  const last = new Map<string, number>();
  const source = createStaticTableSource(tableWith(1, routeIds));
  const publisher = startProxyReportPublisher({
    redis: redis(),
    keyPrefix: prefix,
    proxyId,
    source,
    inflight: (id) => counts.get(id) ?? 0,
    lastRequests: () => last,
    ...(load ? { load } : {}),
    logger: log,
    intervalMs: 100,
    ttlMs,
  });
  closers.push(() => publisher.close());
  return { counts, last, source, publisher };
}

function reader(prefix: string) {
  const r = createClusterProxies({ url: services().redisUrl, keyPrefix: prefix, pollMs: 20 });
  closers.push(() => r.close());
  return r;
}

describe('cluster in-flight reports', () => {
  it('reader sees each live proxy and its non-zero counts per route', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const a = fakeProxy(prefix, 'proxy-a', ['r1', 'r2']);
    fakeProxy(prefix, 'proxy-b', ['r1', 'r2']);
    a.counts.set('r1', 2);
    const r = reader(prefix);
    const reports = await waitFor(
      async () => {
        const m = await r.reports();
        return m.size === 2 && m.get('proxy-a')?.counts.get('r1') === 2 ? m : null;
      },
      { message: 'both proxies reported, proxy-a with 2 on r1' },
    );
    expect(reports.get('proxy-a')!.counts.has('r2')).toBe(false);
    expect(reports.get('proxy-b')!.counts.size).toBe(0);
  });

  it('last request per deployment: each proxy reports its own, the reader takes the latest over live proxies', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const a = fakeProxy(prefix, 'proxy-a', ['r1']);
    const b = fakeProxy(prefix, 'proxy-b', ['r1']);
    a.last.set('dep-1', 1_000);
    a.last.set('dep-2', 5_000);
    b.last.set('dep-1', 3_000);
    a.counts.set('r1', 1);
    const r = reader(prefix);
    const last = await waitFor(
      async () => {
        const m = await r.lastRequests();
        return m.get('dep-1') === 3_000 && m.get('dep-2') === 5_000 ? m : null;
      },
      { message: 'latest request per deployment over both proxies' },
    );
    expect(last.size).toBe(2);
    // The last-request fields are not route counts.
    const reports = await r.reports();
    expect([...reports.get('proxy-a')!.counts]).toEqual([['r1', 1]]);
    expect(reports.get('proxy-b')!.lastRequests.get('dep-1')).toBe(3_000);
  });

  it('waitDrained waits until every live proxy reports zero for the route', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const a = fakeProxy(prefix, 'proxy-a', ['r1']);
    const b = fakeProxy(prefix, 'proxy-b', ['r1']);
    a.counts.set('r1', 1);
    b.counts.set('r1', 1);
    const r = reader(prefix);
    await waitFor(async () => (await r.reports()).get('proxy-b')?.counts.get('r1') === 1);
    let done = false;
    const wait = r.waitDrained('r1', new AbortController().signal).then(() => {
      done = true;
    });
    a.counts.set('r1', 0);
    // proxy-a reports zero, proxy-b still holds a request: the drain goes on.
    await waitFor(async () => (await r.reports()).get('proxy-a')?.counts.has('r1') === false);
    await a.publisher.publish();
    await b.publisher.publish();
    expect(done).toBe(false);
    b.counts.set('r1', 0);
    await wait;
    expect(done).toBe(true);
  });

  it('a proxy whose report expired is not live and does not hold the drain', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    fakeProxy(prefix, 'proxy-live', ['r1']);
    // A proxy that died holding a request: its last report stays until the TTL runs out.
    const raw = redis();
    const deadKey = proxyReportKey(prefix, 'proxy-dead');
    await raw.multi().hset(deadKey, SEQ_FIELD, '7', 'r1', '3').pexpire(deadKey, 600).exec();
    const r = reader(prefix);
    const first = await r.reports();
    expect(first.get('proxy-dead')?.counts.get('r1')).toBe(3);
    let done = false;
    const wait = r.waitDrained('r1', new AbortController().signal).then(() => {
      done = true;
    });
    await waitFor(async () => !(await raw.exists(deadKey)), { message: 'dead report expired' });
    await wait;
    expect(done).toBe(true);
    const after = await r.reports();
    expect([...after.keys()]).toEqual(['proxy-live']);
  });

  it('waitDrained returns when the drain deadline aborts it', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const a = fakeProxy(prefix, 'proxy-a', ['r1']);
    a.counts.set('r1', 1);
    const r = reader(prefix);
    await waitFor(async () => (await r.reports()).get('proxy-a')?.counts.get('r1') === 1);
    const ac = new AbortController();
    const wait = r.waitDrained('r1', ac.signal);
    ac.abort();
    await wait;
    expect((await r.reports()).get('proxy-a')?.counts.get('r1')).toBe(1);
  });

  it('a route that left the table stays reported until its requests end; a closed proxy withdraws its report', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const a = fakeProxy(prefix, 'proxy-a', ['r1', 'r2']);
    a.counts.set('r1', 1);
    a.source.set(tableWith(2, ['r2']));
    const r = reader(prefix);
    await a.publisher.publish();
    await a.publisher.publish();
    expect((await r.reports()).get('proxy-a')?.counts.get('r1')).toBe(1);
    a.counts.set('r1', 0);
    await a.publisher.publish();
    expect((await r.reports()).get('proxy-a')?.counts.has('r1')).toBe(false);
    await a.publisher.close();
    expect((await r.reports()).has('proxy-a')).toBe(false);
  });

  it('the load counters ride in the same report: the reader returns each live proxy load, none for a proxy without counters', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    let requests = 5;
    let stopped = false;
    const load: LoadCounters = {
      async report(): Promise<LoadReport> {
        return {
          proxy: 'proxy-a',
          at: 1_000 + requests,
          deployments: {
            'dep-1': {
              name: 'd1',
              inflight: 1,
              queued: 0,
              requests,
              concurrency_ms: 10,
              latency: new Array(LATENCY_BUCKETS_S.length + 1).fill(0),
            },
          },
        };
      },
      stop() {
        stopped = true;
      },
    };
    const a = fakeProxy(prefix, 'proxy-a', ['r1'], 3_000, load);
    fakeProxy(prefix, 'proxy-b', ['r1']);
    a.counts.set('r1', 2);
    const r = reader(prefix);
    await waitFor(async () => (await r.reports()).size === 2, { message: 'both proxies reported' });
    requests = 9;
    await a.publisher.publish();
    const reports = await r.reports();
    // One key per proxy carries both its in-flight counts and its load.
    expect(reports.get('proxy-a')!.counts.get('r1')).toBe(2);
    expect(reports.get('proxy-a')!.load?.deployments['dep-1']?.requests).toBe(9);
    expect(reports.get('proxy-b')!.load).toBeNull();
    const loads = await r.loadReports();
    expect(loads.map((l) => l.proxy)).toEqual(['proxy-a']);
    await a.publisher.close();
    expect(stopped).toBe(true);
    expect(await r.loadReports()).toEqual([]);
  });
});
