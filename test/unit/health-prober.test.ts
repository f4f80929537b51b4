import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import type { HealthRecord } from '../../src/domain/health.ts';
import { DEFAULT_HEALTH_CHECK, type HealthCheckSpec } from '../../src/domain/session.ts';
import type { HealthStore } from '../../src/health/health-store.ts';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';
import { createProber, type ProbeTarget, probeTarget } from '../../src/health/prober.ts';
import { rendezvousOwner } from '../../src/health/rendezvous.ts';
import { startTestReplica, type TestReplica, waitFor } from '../integration/health/test-replica.ts';

const quiet = { info() {}, warn() {}, error() {} };
const health: HealthCheckSpec = { ...DEFAULT_HEALTH_CHECK, interval_s: 1, timeout_s: 0.3 };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function replicas(n: number): Promise<TestReplica[]> {
  const out = await Promise.all(Array.from({ length: n }, () => startTestReplica()));
  cleanups.push(async () => {
    await Promise.all(out.map((r) => r.close()));
  });
  return out;
}

function targetsOf(rs: TestReplica[], spec = health): ProbeTarget[] {
  return rs.map((r, i) => ({
    routeId: `route-${i}`,
    replicaId: `replica-${i}`,
    url: r.url,
    health: spec,
  }));
}

function prober(store: HealthStore, proberId: string, targets: ProbeTarget[], now?: () => number) {
  const p = createProber({ store, proberId, targets: () => targets, ttlS: 30, logger: quiet, now });
  cleanups.push(() => p.stop());
  return p;
}

/** Lets pending promise callbacks (store calls) run. */
async function settle(times = 3): Promise<void> {
  for (let i = 0; i < times; i++) await new Promise((r) => setImmediate(r));
}

async function read(store: HealthStore, id: string): Promise<HealthRecord | undefined> {
  return (await store.readMany([id])).get(id);
}

describe('prober', () => {
  it('writes a ready record with status, latency, checked_at and streak counters', async () => {
    const [r] = await replicas(1);
    let t = 1_000_000;
    const store = createMemoryHealthStore({ now: () => t });
    const p = prober(store, 'p1', targetsOf([r!]), () => t);
    await p.probeOnce();
    t += 10;
    await p.probeOnce();
    expect(await read(store, 'route-0')).toMatchObject({
      routeId: 'route-0',
      ready: true,
      status: 200,
      checked_at: 1_000_010,
      consecutive_successes: 2,
      consecutive_failures: 0,
      error: null,
    });
    expect(r!.hits.map((h) => h.path)).toEqual(['/health', '/health']);
    // Written with the prober's TTL (30 s).
    t += 30_000;
    expect(await read(store, 'route-0')).toBeUndefined();
  });

  it('names the cause of a failed check: HTTP status, timeout, refused connection', async () => {
    const [bad, slow, gone] = await replicas(3);
    bad!.mode = 'fail';
    slow!.mode = 'hang';
    await gone!.close();
    const store = createMemoryHealthStore();
    const p = prober(store, 'p1', targetsOf([bad!, slow!, gone!]));
    await p.probeOnce();
    const got = await store.readMany(['route-0', 'route-1', 'route-2']);
    expect(got.get('route-0')).toMatchObject({
      ready: false,
      status: 500,
      error: 'HTTP 500 from /health',
    });
    expect(got.get('route-1')).toMatchObject({
      ready: false,
      status: null,
      error: 'timeout after 0.3 s',
    });
    expect(got.get('route-2')).toMatchObject({ ready: false, status: null });
    expect(got.get('route-2')?.error).toMatch(
      /^connection refused \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)$/,
    );
    expect(got.get('route-1')?.latency_ms).toBeGreaterThanOrEqual(250);
  });

  it('publishes the first result and every flip of ready, and nothing else', async () => {
    const [r] = await replicas(1);
    const store = createMemoryHealthStore();
    const seen: HealthRecord[] = [];
    await store.subscribe((rec) => seen.push(rec));
    const p = prober(store, 'p1', targetsOf([r!]));
    await p.probeOnce();
    await p.probeOnce();
    r!.mode = 'fail';
    await p.probeOnce();
    await p.probeOnce();
    r!.mode = 'ok';
    await p.probeOnce();
    await waitFor('three changes', () => seen.length >= 3);
    await p.probeOnce();
    await new Promise((res) => setImmediate(res));
    expect(seen.map((s) => [s.ready, s.consecutive_successes, s.consecutive_failures])).toEqual([
      [true, 1, 0],
      [false, 0, 1],
      [true, 1, 0],
    ]);
  });

  it('splits targets between two probers so that each route is probed by exactly one', async () => {
    const rs = await replicas(12);
    const store = createMemoryHealthStore();
    const targets = targetsOf(rs);
    const a = prober(store, 'prober-a', targets);
    const b = prober(store, 'prober-b', targets);
    await a.probeOnce();
    await b.probeOnce();
    for (const r of rs) r.hits.length = 0;
    await a.probeOnce();
    await b.probeOnce();
    const byProber = new Map<string, number>();
    for (const r of rs) {
      expect(r.hits).toHaveLength(1);
      const who = r.hits[0]!.prober;
      byProber.set(who, (byProber.get(who) ?? 0) + 1);
    }
    expect([...byProber.keys()].sort()).toEqual(['prober-a', 'prober-b']);
    expect(a.stats().owned + b.stats().owned).toBe(12);
  });

  it('continues the streak counters of a route it takes over from another prober', async () => {
    const [r] = await replicas(1);
    r!.mode = 'fail';
    // One manual clock for the store and both probers: the takeover is judged on it, not on
    // how long the test happens to take.
    const t = 1_000_000;
    const store = createMemoryHealthStore({ now: () => t });
    const a = prober(store, 'prober-a', targetsOf([r!]), () => t);
    await a.probeOnce();
    await a.probeOnce();
    await a.stop();
    expect(await store.members()).toEqual([]);
    const b = prober(store, 'prober-b', targetsOf([r!]), () => t);
    await b.probeOnce();
    expect(await read(store, 'route-0')).toMatchObject({ consecutive_failures: 3, ready: false });
  });

  it('starts the streak afresh when the previous prober last checked more than three intervals ago', async () => {
    const [r] = await replicas(1);
    r!.mode = 'fail';
    let t = 1_000_000;
    const store = createMemoryHealthStore({ now: () => t });
    const a = prober(store, 'prober-a', targetsOf([r!]), () => t);
    await a.probeOnce();
    await a.probeOnce();
    await a.stop();
    t += 3 * health.interval_s * 1000 + 1; // history now, not a streak (the record lives 30 s)
    const b = prober(store, 'prober-b', targetsOf([r!]), () => t);
    await b.probeOnce();
    expect(await read(store, 'route-0')).toMatchObject({ consecutive_failures: 1, ready: false });
  });

  it('a prober joining a running cluster owns no route until a quarter of the membership TTL has passed on its scheduling clock', async () => {
    const rs = await replicas(8);
    const targets = targetsOf(rs);
    const wall = 1_000_000; // memberships never expire on their own in this test
    const store = createMemoryHealthStore({ now: () => wall });
    const a = prober(store, 'prober-a', targets, () => wall);
    await a.probeOnce();
    const share = targets.filter(
      (t) => rendezvousOwner(t.routeId, ['prober-a', 'prober-b']) === 'prober-b',
    ).length;
    expect(share).toBeGreaterThan(0);

    const clock = new SimulatedClock();
    const b = createProber({
      store,
      proberId: 'prober-b',
      targets: () => targets,
      ttlS: 30,
      logger: quiet,
      now: () => wall,
      monotonic: () => clock.now(),
      timers: clock,
      membershipTtlS: 4, // join delay: 4 s / 4 = 1 s
    });
    cleanups.push(() => b.stop());
    b.start();
    clock.increment(0); // the first membership refresh: it sees prober-a and waits
    await settle();
    clock.increment(999);
    await settle();
    expect(b.stats().members).toEqual(['prober-a', 'prober-b']);
    expect(b.stats().owned).toBe(0);
    clock.increment(1);
    await settle();
    expect(b.stats().owned).toBe(share);
  });

  it('keeps going when the store and the target list fail', async () => {
    const [r] = await replicas(1);
    const inner = createMemoryHealthStore();
    const broken: HealthStore = {
      ...inner,
      write: async () => {
        throw new Error('store down');
      },
      publishChange: async () => {
        throw new Error('store down');
      },
    };
    let calls = 0;
    const p = createProber({
      store: broken,
      proberId: 'p1',
      logger: quiet,
      targets: () => {
        if (++calls === 2) throw new Error('target listing failed');
        return targetsOf([r!]);
      },
    });
    cleanups.push(() => p.stop());
    await p.probeOnce();
    await p.probeOnce();
    await p.probeOnce();
    expect(p.stats().storeErrors).toBeGreaterThanOrEqual(6);
    expect(r!.hits.length).toBe(3);
  });
});

describe('probe method', () => {
  /** A readiness endpoint that answers 200 to one method only and 405 to every other. */
  async function onlyMethod(allowed: string) {
    const seen: Array<{ method: string; body: string }> = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += String(c);
      });
      req.on('end', () => {
        seen.push({ method: req.method ?? '', body });
        res.statusCode = req.method === allowed ? 200 : 405;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const agent = new Agent();
    cleanups.push(async () => {
      await agent.close();
      await new Promise<void>((r) => server.close(() => r()));
    });
    const probe = (method?: HealthCheckSpec['method']) =>
      probeTarget(agent, {
        routeId: 'route-0',
        replicaId: 'replica-0',
        url: `http://127.0.0.1:${port}`,
        health: method ? { ...health, method } : { ...health, method: undefined },
      });
    return { seen, probe, url: `http://127.0.0.1:${port}` };
  }

  it('a HEAD-only readiness endpoint is ready when probed with HEAD and not with GET (the default)', async () => {
    const { seen, probe } = await onlyMethod('HEAD');
    expect(await probe('HEAD')).toMatchObject({ ready: true, status: 200 });
    expect(await probe()).toMatchObject({ ready: false, status: 405 });
    expect(await probe('GET')).toMatchObject({ ready: false, status: 405 });
    expect(seen.map((s) => s.method)).toEqual(['HEAD', 'GET', 'GET']);
  });

  it('a POST-only readiness endpoint is ready when probed with POST (empty body) and not with GET', async () => {
    const { seen, probe } = await onlyMethod('POST');
    expect(await probe('POST')).toMatchObject({ ready: true, status: 200, error: null });
    expect(await probe('GET')).toMatchObject({ ready: false, status: 405 });
    expect(seen).toEqual([
      { method: 'POST', body: '' },
      { method: 'GET', body: '' },
    ]);
  });

  it('the prober records a HEAD-only route ready when its health spec says HEAD', async () => {
    const { seen, url } = await onlyMethod('HEAD');
    const store = createMemoryHealthStore();
    const target = { routeId: 'route-0', replicaId: 'replica-0', url };
    const p = prober(store, 'p1', [{ ...target, health: { ...health, method: 'HEAD' } }]);
    await p.probeOnce();
    expect(await read(store, 'route-0')).toMatchObject({ ready: true, status: 200 });
    expect(seen.map((s) => s.method)).toEqual(['HEAD']);
  });
});
