import { describe, expect, it } from 'vitest';
import type { HealthRecord } from '../../src/domain/health.ts';
import { classifyMany, classifyRoute, NO_HEALTH_DATA_REASON } from '../../src/health/classifier.ts';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';

const NOW = 1_700_000_000_000;
const opts = { maxStalenessS: 300 };

function rec(over: Partial<HealthRecord> = {}): HealthRecord {
  return {
    routeId: 'r1',
    ready: true,
    status: 200,
    latency_ms: 3.2,
    checked_at: NOW - 1000,
    consecutive_successes: 4,
    consecutive_failures: 0,
    error: null,
    ...over,
  };
}

describe('classifyRoute', () => {
  const failing = { ready: false, consecutive_successes: 0, consecutive_failures: 2 };
  it.each([
    ['no record', undefined, 'DEGRADED', NO_HEALTH_DATA_REASON],
    ['fresh and ready', rec(), 'HEALTHY', 'ready (HTTP 200 in 3 ms)'],
    [
      'ready with a 204',
      rec({ status: 204, latency_ms: 12.6 }),
      'HEALTHY',
      'ready (HTTP 204 in 13 ms)',
    ],
    [
      'HTTP 500',
      rec({ ...failing, status: 500, error: 'HTTP 500 from /health' }),
      'UNHEALTHY',
      'HTTP 500 from /health',
    ],
    [
      'timeout',
      rec({ ...failing, status: null, error: 'timeout after 2 s' }),
      'UNHEALTHY',
      'timeout after 2 s',
    ],
    [
      'connection refused',
      rec({
        ...failing,
        status: null,
        error: 'connection refused (connect ECONNREFUSED 127.0.0.1:9)',
      }),
      'UNHEALTHY',
      'connection refused (connect ECONNREFUSED 127.0.0.1:9)',
    ],
    [
      'not ready, no error text, a status',
      rec({ ...failing, status: 503 }),
      'UNHEALTHY',
      'HTTP 503',
    ],
    [
      'not ready, nothing known',
      rec({ ...failing, status: null }),
      'UNHEALTHY',
      'readiness check failed',
    ],
    [
      'stale and ready',
      rec({ checked_at: NOW - 301_000 }),
      'DEGRADED',
      'health data stale: last check 301s ago',
    ],
    [
      'stale and failing: staleness wins',
      rec({ ...failing, checked_at: NOW - 400_500, error: 'HTTP 500 from /health' }),
      'DEGRADED',
      'health data stale: last check 400s ago',
    ],
    [
      'exactly at the staleness limit is fresh',
      rec({ checked_at: NOW - 300_000 }),
      'HEALTHY',
      'ready (HTTP 200 in 3 ms)',
    ],
    [
      'one millisecond past the limit is stale',
      rec({ checked_at: NOW - 300_001 }),
      'DEGRADED',
      'health data stale: last check 300s ago',
    ],
    [
      'checked_at in the future (clock skew) is fresh',
      rec({ checked_at: NOW + 5000 }),
      'HEALTHY',
      'ready (HTTP 200 in 3 ms)',
    ],
  ] as const)('%s → %s', (_name, record, cls, reason) => {
    expect(classifyRoute(record, NOW, opts)).toEqual({ class: cls, reason });
  });

  it('uses the staleness limit it is given', () => {
    const r = rec({ checked_at: NOW - 6000 });
    expect(classifyRoute(r, NOW, { maxStalenessS: 5 }).class).toBe('DEGRADED');
    expect(classifyRoute(r, NOW, { maxStalenessS: 7 }).class).toBe('HEALTHY');
  });
});

describe('classifyMany', () => {
  it('answers for every route asked, DEGRADED where the store has nothing, with the record used', async () => {
    const store = createMemoryHealthStore({ now: () => NOW });
    await store.write(rec({ routeId: 'a' }), 60);
    await store.write(
      rec({ routeId: 'b', ready: false, status: 500, error: 'HTTP 500 from /health' }),
      60,
    );
    const out = await classifyMany(store, ['a', 'b', 'c'], NOW, opts);
    expect([...out.keys()]).toEqual(['a', 'b', 'c']);
    expect(out.get('a')).toMatchObject({ class: 'HEALTHY', record: { routeId: 'a' } });
    expect(out.get('b')).toMatchObject({ class: 'UNHEALTHY', reason: 'HTTP 500 from /health' });
    expect(out.get('c')).toEqual({
      class: 'DEGRADED',
      reason: NO_HEALTH_DATA_REASON,
      record: undefined,
    });
  });

  it('propagates a store failure instead of calling every route DEGRADED', async () => {
    const failing = {
      readMany: async () => {
        throw new Error('down');
      },
    };
    await expect(classifyMany(failing, ['a'], NOW, opts)).rejects.toThrow('down');
  });
});
