/**
 * One suite, every HealthStore adapter: the in-memory embedded default and Redis (real server,
 * per-test key prefix). An adapter is correct when it passes all of it.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import type { HealthRecord } from '../../../src/domain/health.ts';
import type { HealthStore } from '../../../src/health/health-store.ts';
import { withLocalResults } from '../../../src/health/local-first-health-store.ts';
import { createMemoryHealthStore } from '../../../src/health/memory-health-store.ts';
import { createRedisHealthStore, healthKeys } from '../../../src/health/redis-health-store.ts';
import { isolatedPrefix, services } from '../../harness/isolation.ts';
import { waitFor } from './test-replica.ts';

const quiet = { info() {}, warn() {}, error() {} };

interface Backend {
  /** A handle on the backend; a second call is another client of the same data. */
  open(): HealthStore;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function deletePrefix(url: string, prefix: string): Promise<void> {
  const raw = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await raw.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    raw.disconnect();
  }
}

const adapters: { name: string; backend: (ctx: TestContext) => Backend }[] = [
  {
    name: 'memory',
    backend: () => {
      const store = createMemoryHealthStore({ logger: quiet });
      cleanups.push(() => store.close());
      return { open: () => store };
    },
  },
  {
    name: 'redis',
    backend: (ctx) => {
      const url = services().redisUrl;
      const keyPrefix = isolatedPrefix(ctx);
      cleanups.push(() => deletePrefix(url, keyPrefix));
      return {
        open: () => {
          const store = createRedisHealthStore({ url, keyPrefix, logger: quiet });
          cleanups.push(() => store.close());
          return store;
        },
      };
    },
  },
  {
    // All-in-one with --redis-url: Redis seen through this process's own results first.
    name: 'redis, local results first',
    backend: (ctx) => {
      const url = services().redisUrl;
      const keyPrefix = isolatedPrefix(ctx);
      cleanups.push(() => deletePrefix(url, keyPrefix));
      return {
        open: () => {
          const store = withLocalResults(createRedisHealthStore({ url, keyPrefix, logger: quiet }));
          cleanups.push(() => store.close());
          return store;
        },
      };
    },
  },
];

function rec(routeId: string, over: Partial<HealthRecord> = {}): HealthRecord {
  return {
    routeId,
    ready: true,
    status: 200,
    latency_ms: 2.5,
    checked_at: Date.now(),
    consecutive_successes: 3,
    consecutive_failures: 0,
    error: null,
    ...over,
  };
}

describe.each(adapters)('HealthStore conformance: $name', ({ backend }) => {
  it('reads back what was written, equal field by field; unwritten routes are absent', async (ctx) => {
    const store = backend(ctx).open();
    const a = rec('a');
    const b = rec('b', {
      ready: false,
      status: null,
      error: 'timeout after 2 s',
      consecutive_successes: 0,
      consecutive_failures: 7,
    });
    await store.write(a, 60);
    await store.write(b, 60);
    const got = await store.readMany(['a', 'b', 'never']);
    expect(got).toEqual(
      new Map([
        ['a', a],
        ['b', b],
      ]),
    );
    expect(await store.readMany([])).toEqual(new Map());
  });

  it('replaces the previous record of a route on write', async (ctx) => {
    const store = backend(ctx).open();
    await store.write(rec('a', { consecutive_successes: 1 }), 60);
    const second = rec('a', { ready: false, status: 500, error: 'HTTP 500 from /health' });
    await store.write(second, 60);
    expect((await store.readMany(['a'])).get('a')).toEqual(second);
  });

  it('hands out copies: mutating a written or read record changes nothing stored', async (ctx) => {
    const store = backend(ctx).open();
    const original = rec('a');
    await store.write(original, 60);
    original.ready = false;
    const read1 = (await store.readMany(['a'])).get('a') as HealthRecord;
    expect(read1.ready).toBe(true);
    read1.status = 999;
    expect((await store.readMany(['a'])).get('a')?.status).toBe(200);
  });

  it('drops a record once its TTL has elapsed, not before', async (ctx) => {
    const store = backend(ctx).open();
    const started = Date.now();
    await store.write(rec('short'), 0.4);
    await store.write(rec('long'), 60);
    expect((await store.readMany(['short'])).has('short')).toBe(true);
    await waitFor('the short-lived record to expire', async () => {
      return !(await store.readMany(['short'])).has('short');
    });
    const lived = Date.now() - started;
    expect(lived).toBeGreaterThanOrEqual(350);
    expect((await store.readMany(['long'])).has('long')).toBe(true);
  });

  it('a rewrite replaces the TTL: a record rewritten with a long TTL outlives the short first one', async (ctx) => {
    const store = backend(ctx).open();
    const started = Date.now();
    await store.write(rec('a'), 0.3);
    await store.write(rec('a', { consecutive_successes: 9 }), 60);
    await store.write(rec('probe'), 0.3);
    await waitFor('a record written with the short TTL to expire', async () => {
      return !(await store.readMany(['probe'])).has('probe');
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect((await store.readMany(['a'])).get('a')?.consecutive_successes).toBe(9);
  });

  it('reads thousands of routes, more than one batch, returning exactly the live ones', async (ctx) => {
    const store = backend(ctx).open();
    const ids = Array.from({ length: 2500 }, (_, i) => `route-${i}`);
    await Promise.all(ids.filter((_, i) => i % 3 !== 0).map((id) => store.write(rec(id), 60)));
    const got = await store.readMany(ids);
    expect([...got.keys()].sort()).toEqual(ids.filter((_, i) => i % 3 !== 0).sort());
    for (const [id, r] of got) expect(r.routeId).toBe(id);
  });

  it('delivers a published change to every subscriber of any handle, and none after unsubscribe', async (ctx) => {
    const b = backend(ctx);
    const publisher = b.open();
    const subscriberStore = b.open();
    const first: HealthRecord[] = [];
    const second: HealthRecord[] = [];
    const unsubscribeFirst = await subscriberStore.subscribe((r) => first.push(r));
    await subscriberStore.subscribe((r) => second.push(r));
    const change = rec('a', { ready: false, status: 500, error: 'HTTP 500 from /health' });
    await publisher.publishChange(change);
    await waitFor(
      'both subscribers to get the change',
      () => first.length === 1 && second.length === 1,
    );
    expect(first[0]).toEqual(change);
    expect(second[0]).toEqual(change);

    await unsubscribeFirst();
    await publisher.publishChange(rec('b'));
    await publisher.publishChange(rec('c'));
    // Delivery is in publish order, so once the second subscriber has 'c', 'b' was delivered too.
    await waitFor('the remaining subscriber to get both', () => second.length === 3);
    expect(first.map((r) => r.routeId)).toEqual(['a']);
  });

  it('keeps delivering to other listeners when one listener throws', async (ctx) => {
    const store = backend(ctx).open();
    const got: string[] = [];
    await store.subscribe(() => {
      throw new Error('listener bug');
    });
    await store.subscribe((r) => got.push(r.routeId));
    await store.publishChange(rec('x'));
    await store.publishChange(rec('y'));
    await waitFor('both changes to arrive', () => got.length === 2);
    expect(got).toEqual(['x', 'y']);
  });

  it('lists live probers sorted, removes one at once on leave, and expires one after its TTL', async (ctx) => {
    const store = backend(ctx).open();
    expect(await store.members()).toEqual([]);
    await store.heartbeat('prober-b', 60);
    await store.heartbeat('prober-a', 60);
    await store.heartbeat('prober-c', 0.4);
    expect(await store.members()).toEqual(['prober-a', 'prober-b', 'prober-c']);
    await store.leave('prober-b');
    expect(await store.members()).toEqual(['prober-a', 'prober-c']);
    const started = Date.now();
    await waitFor('prober-c to expire', async () => !(await store.members()).includes('prober-c'));
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(await store.members()).toEqual(['prober-a']);
  });

  it('renews a prober on heartbeat and keeps a shorter TTL from cutting a longer one', async (ctx) => {
    const store = backend(ctx).open();
    await store.heartbeat('long', 60);
    await store.heartbeat('short', 0.3);
    await store.heartbeat('short', 60);
    await store.heartbeat('marker', 0.3);
    await waitFor('marker to expire', async () => !(await store.members()).includes('marker'));
    expect(await store.members()).toEqual(['long', 'short']);
  });

  it('answers ping while open and not after close; close is idempotent', async (ctx) => {
    const store = backend(ctx).open();
    expect(await store.ping()).toBe(true);
    await store.close();
    await store.close();
    expect(await store.ping()).toBe(false);
  });
});

describe('Redis health store specifics', () => {
  it('treats a corrupt value under a route key as no data instead of failing the read', async (ctx) => {
    const url = services().redisUrl;
    const keyPrefix = isolatedPrefix(ctx);
    cleanups.push(() => deletePrefix(url, keyPrefix));
    const store = createRedisHealthStore({ url, keyPrefix, logger: quiet });
    cleanups.push(() => store.close());
    const raw = new Redis(url);
    cleanups.push(async () => raw.disconnect());
    await raw.set(healthKeys(keyPrefix).route('bad'), '{not json', 'EX', 60);
    await raw.set(healthKeys(keyPrefix).route('partial'), '{"routeId":"partial"}', 'EX', 60);
    await store.write(rec('good'), 60);
    const got = await store.readMany(['bad', 'partial', 'good']);
    expect([...got.keys()]).toEqual(['good']);
  });

  it('keeps keys under its prefix with the TTL it was given, readable with redis-cli', async (ctx) => {
    const url = services().redisUrl;
    const keyPrefix = isolatedPrefix(ctx);
    cleanups.push(() => deletePrefix(url, keyPrefix));
    const store = createRedisHealthStore({ url, keyPrefix, logger: quiet });
    cleanups.push(() => store.close());
    const raw = new Redis(url);
    cleanups.push(async () => raw.disconnect());
    await store.write(rec('r1'), 120);
    const key = `${keyPrefix}health:route:r1`;
    const ttl = await raw.pttl(key);
    expect(ttl).toBeGreaterThan(110_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
    expect(JSON.parse((await raw.get(key)) as string)).toMatchObject({
      routeId: 'r1',
      ready: true,
    });
  });

  it('reports the backing service as unavailable through FlotillaError when Redis is unreachable', async () => {
    // A port nothing listens on: connection refused at once.
    const store = createRedisHealthStore({
      url: 'redis://127.0.0.1:1',
      logger: quiet,
      commandTimeoutMs: 2000,
    });
    cleanups.push(() => store.close());
    expect(await store.ping()).toBe(false);
    await expect(store.readMany(['a'])).rejects.toMatchObject({
      name: 'FlotillaError',
      code: 'dependency_unavailable',
      retryable: true,
    });
  });
});
