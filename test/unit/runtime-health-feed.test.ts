import { describe, expect, it } from 'vitest';
import type { HealthRecord } from '../../src/domain/health.ts';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';
import type { ProbeTarget } from '../../src/health/prober.ts';
import { HealthFeed } from '../../src/runtime/health-feed.ts';

const spec = {
  path: '/health',
  interval_s: 5,
  timeout_s: 2,
  healthy_threshold: 1,
  unhealthy_threshold: 2,
  startup_timeout_s: 60,
};
const targets: ProbeTarget[] = [
  { routeId: 't1', replicaId: 'r1', url: 'http://127.0.0.1:1', health: spec },
  { routeId: 't2', replicaId: 'r2', url: 'http://127.0.0.1:2', health: spec },
];

function record(routeId: string, ready: boolean, checked_at: number): HealthRecord {
  return {
    routeId,
    ready,
    status: ready ? 200 : 500,
    latency_ms: 1,
    checked_at,
    consecutive_successes: ready ? 1 : 0,
    consecutive_failures: ready ? 0 : 1,
    error: ready ? null : 'HTTP 500',
  };
}

function setup() {
  let clock = 100_000;
  const health = createMemoryHealthStore({ now: () => clock });
  const sent: Array<[string, string]> = [];
  const feed = new HealthFeed({
    health,
    maxStalenessS: 15,
    now: () => clock,
    targets: () => targets,
    targetOf: (id) => targets.find((t) => t.routeId === id),
    send: (id, e) => sent.push([id, e.type]),
  });
  return { feed, health, sent, advance: (ms: number) => (clock += ms), now: () => clock };
}

describe('health feed', () => {
  it('feeds each route its class and each replica its probe result', async () => {
    const { feed, health, sent, now } = setup();
    await health.write(record('t1', true, now()), 30);
    await health.write(record('t2', false, now()), 30);
    await feed.classifyNow();
    expect(sent).toEqual(
      expect.arrayContaining([
        ['route:t1', 'route.health.healthy'],
        ['replica:r1', 'replica.health.passed'],
        ['route:t2', 'route.health.unhealthy'],
        ['replica:r2', 'replica.health.failed'],
      ]),
    );
  });

  it('feeds a replica each probe result once, however many ticks see it', async () => {
    const { feed, health, sent, now, advance } = setup();
    await health.write(record('t1', true, now()), 30);
    await feed.classifyNow();
    advance(1_000);
    await feed.classifyNow();
    expect(sent.filter(([id]) => id === 'replica:r1')).toHaveLength(1);
    expect(sent.filter(([id]) => id === 'route:t1')).toHaveLength(2);
    await health.write(record('t1', true, now()), 30);
    await feed.classifyNow();
    expect(sent.filter(([id]) => id === 'replica:r1')).toHaveLength(2);
  });

  it('classifies a route with no data as DEGRADED and gives its replica no verdict', async () => {
    const { feed, sent } = setup();
    await feed.classifyNow();
    expect(sent).toContainEqual(['route:t1', 'route.health.degraded']);
    expect(sent.some(([id]) => id.startsWith('replica:'))).toBe(false);
  });

  it('classifies a stale result as DEGRADED using its clock', async () => {
    const { feed, sent, now, advance } = setup();
    const stale = record('t1', true, now());
    advance(16_000);
    feed.onRecord(stale);
    expect(sent[0]).toEqual(['route:t1', 'route.health.degraded']);
  });

  it('feeds a result again after the replica was forgotten', () => {
    const { feed, sent, now } = setup();
    const r = record('t1', true, now());
    feed.onRecord(r);
    feed.onRecord(r);
    feed.forgetReplica('r1');
    feed.onRecord(r);
    expect(sent.filter(([id]) => id === 'replica:r1')).toHaveLength(2);
  });
});
