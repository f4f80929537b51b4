import { describe, expect, it } from 'vitest';
import type { HealthRecord } from '../../src/domain/health.ts';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';

function rec(routeId: string, checked_at = 0): HealthRecord {
  return {
    routeId,
    ready: true,
    status: 200,
    latency_ms: 1,
    checked_at,
    consecutive_successes: 1,
    consecutive_failures: 0,
    error: null,
  };
}

describe('memory health store with a manual clock', () => {
  it('keeps a record until exactly its TTL has passed, then it is absent', async () => {
    let t = 1000;
    const store = createMemoryHealthStore({ now: () => t });
    await store.write(rec('r'), 2);
    t += 1999;
    expect((await store.readMany(['r'])).has('r')).toBe(true);
    t += 1;
    expect((await store.readMany(['r'])).has('r')).toBe(false);
  });

  it('restarts the TTL on every write', async () => {
    let t = 0;
    const store = createMemoryHealthStore({ now: () => t });
    await store.write(rec('r'), 2);
    t = 1500;
    await store.write(rec('r', 1500), 2);
    t = 3000;
    expect((await store.readMany(['r'])).get('r')?.checked_at).toBe(1500);
    t = 3500;
    expect((await store.readMany(['r'])).size).toBe(0);
  });

  it('expires prober membership after its TTL and renews it on heartbeat', async () => {
    let t = 0;
    const store = createMemoryHealthStore({ now: () => t });
    await store.heartbeat('b', 1);
    await store.heartbeat('a', 3);
    expect(await store.members()).toEqual(['a', 'b']);
    t = 999;
    await store.heartbeat('b', 1);
    t = 1500;
    expect(await store.members()).toEqual(['a', 'b']);
    t = 1999;
    expect(await store.members()).toEqual(['a']);
    t = 3000;
    expect(await store.members()).toEqual([]);
  });
});
