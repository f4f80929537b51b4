import { describe, expect, it } from 'vitest';
import {
  Autoscaler,
  type ResourceMetrics,
  removalOrder,
  type ScalableDeployment,
  type ScalableReplica,
  type ScalingRecord,
} from '../../../src/scaling/autoscaler.ts';
import type { LoadReport } from '../../../src/scaling/load-report.ts';
import type { ScalingPolicy } from '../../../src/scaling/policy.ts';

const zeros = () => new Array(16).fill(0);

/**
 * One deployment on a virtual clock, fed by fake proxies whose cumulative counters the test
 * drives (`load(proxy, demand)` integrates `demand` in flight since the last tick).
 */
function harness(opts: {
  policy: ScalingPolicy | undefined;
  replicas?: number;
  lastScaledAt?: number | null;
  resourceMetrics?: ResourceMetrics;
  proxies?: string[];
}) {
  let clock = 1_000_000;
  const records: ScalingRecord[] = [];
  const scales: Array<{ to: number; order: readonly string[] }> = [];
  const replicas: ScalableReplica[] = Array.from({ length: opts.replicas ?? 1 }, (_, i) => ({
    id: `r${i + 1}`,
    routeId: `t${i + 1}`,
    state: 'HEALTHY',
    leaving: false,
    waitingForCapacity: false,
  }));
  const d: ScalableDeployment = {
    id: 'd1',
    name: 'echo',
    min_replicas: 0,
    max_replicas: 10,
    policy: opts.policy,
    lastScaledAt: opts.lastScaledAt ?? null,
  };
  const live = { state: 'RUNNING', target: replicas.length, replicas };
  // Per proxy: cumulative counters and the demand (in flight) since the last tick.
  const proxies = new Map(
    (opts.proxies ?? ['p1']).map((p) => [p, { concurrencyMs: 0, requests: 0, demand: 0 }]),
  );
  let lastTick = clock;
  let reportsUp = true;
  const inflight = new Map<string, number>();
  const scaler = new Autoscaler({
    deployments: () => [d],
    stateOf: () => live,
    loadReports: async () => {
      if (!reportsUp) return [];
      const out: LoadReport[] = [];
      for (const [proxy, c] of proxies) {
        out.push({
          proxy,
          at: clock,
          deployments: {
            d1: {
              name: 'echo',
              inflight: c.demand,
              queued: 0,
              requests: c.requests,
              concurrency_ms: c.concurrencyMs,
              latency: zeros(),
            },
          },
        });
      }
      return out;
    },
    routeInflight: async () => inflight,
    ...(opts.resourceMetrics ? { resourceMetrics: opts.resourceMetrics } : {}),
    scale: async (_id, to, order) => {
      scales.push({ to, order });
      live.target = to;
      d.lastScaledAt = clock;
      while (replicas.length < to) {
        const n = replicas.length + 1;
        replicas.push({
          id: `r${n}`,
          routeId: `t${n}`,
          state: 'STARTING',
          leaving: false,
          waitingForCapacity: false,
        });
      }
      while (replicas.length > to) replicas.pop();
    },
    record: (r) => records.push(r),
    now: () => clock,
  });
  /** Advances the clock by `ms` with `demand` requests in flight at each proxy, then evaluates. */
  const tick = async (ms: number, demand: number) => {
    clock += ms;
    for (const c of proxies.values()) {
      c.concurrencyMs += demand * (clock - lastTick);
      c.requests += demand;
      c.demand = demand;
    }
    lastTick = clock;
    return scaler.evaluate();
  };
  return {
    scaler,
    records,
    scales,
    live,
    replicas,
    d,
    inflight,
    tick,
    now: () => clock,
    proxiesDown: () => {
      reportsUp = false;
    },
    proxiesUp: () => {
      reportsUp = true;
    },
  };
}

const concurrency: ScalingPolicy = {
  target_metric: 'concurrency',
  target_value: 2,
  cooldown_period: 10,
  stable_window_s: 20,
  panic_window_s: 4,
};

describe('autoscaler', () => {
  it('leaves a deployment without scaling_policy alone (no autoscaling, no status)', async () => {
    const h = harness({ policy: undefined });
    await h.tick(2_000, 50);
    await h.tick(2_000, 50);
    expect(h.scales).toEqual([]);
    expect(h.records).toEqual([]);
    expect(h.scaler.statusOf('d1')).toBeNull();
  });

  it('panics on a burst summed over two proxies and scales up at once by what the demand needs', async () => {
    const h = harness({ policy: { ...concurrency, panic_window_s: 2 }, proxies: ['p1', 'p2'] });
    await h.tick(2_000, 0);
    await h.tick(2_000, 0);
    // 4 in flight at each proxy: 8 on one replica, target 2 -> panic, 4 replicas.
    const [e] = await h.tick(2_000, 4);
    expect(e).toMatchObject({ from: 1, to: 4 });
    expect(h.scales.map((s) => s.to)).toEqual([4]);
    const rec = h.records.find((r) => r.event === 'autoscale.scaled');
    expect(rec?.reason).toMatch(/scaled 1 -> 4 \(up, panic\)/);
    // The inputs are in the event: metric, windows, value per replica, target, bounds, cooldown.
    expect(rec?.reason).toMatch(/stable window 20 s/);
    expect(rec?.reason).toMatch(/panic window 2 s/);
    expect(rec?.reason).toMatch(/value per replica/);
    expect(rec?.reason).toMatch(/bounds 1\.\.10/);
    expect(rec?.reason).toMatch(/cooldown 10 s \(0 s left\)/);
    expect(h.scaler.statusOf('d1')?.panic_until).not.toBeNull();
  });

  it('does not scale down while panicking; scales down step by step after the panic and each cooldown', async () => {
    const h = harness({ policy: concurrency });
    await h.tick(2_000, 0);
    await h.tick(2_000, 8); // panic: 8 / 2 -> 4 replicas
    expect(h.live.target).toBe(4);
    for (const r of h.replicas) r.state = 'HEALTHY';
    // Load gone: the panic lasts a stable window (20 s) from the last burst.
    for (let i = 0; i < 9; i++) await h.tick(2_000, 0);
    expect(h.live.target).toBe(4);
    expect(h.records.some((r) => r.event === 'autoscale.held' && /panick/.test(r.reason))).toBe(
      true,
    );
    for (let i = 0; i < 30; i++) await h.tick(2_000, 0);
    expect(h.scales.map((s) => s.to)).toEqual([4, 3, 2, 1]);
  });

  it('records a hold once per cause, with the cooldown left', async () => {
    const h = harness({
      policy: { target_metric: 'inflight', target_value: 2, cooldown_period: 60 },
      lastScaledAt: 1_000_000 - 30_000,
    });
    await h.tick(2_000, 10);
    await h.tick(2_000, 10);
    await h.tick(2_000, 10);
    const holds = h.records.filter((r) => r.event === 'autoscale.held');
    expect(holds).toHaveLength(1);
    expect(holds[0]?.reason).toMatch(/held up \(cooldown\)/);
    expect(holds[0]?.reason).toMatch(/cooldown 60 s \(28 s left\)/);
    expect(h.scales).toEqual([]);
  });

  it('a restarted autoscaler keeps the persisted cooldown (manual scale included)', async () => {
    // A manual scale 20 s ago, stored as last_scaled_at; a fresh Autoscaler (a coordinator
    // restart) reads it and waits the rest of the cooldown.
    const h = harness({
      policy: { target_metric: 'inflight', target_value: 2, cooldown_period: 60 },
      lastScaledAt: 1_000_000 - 20_000,
    });
    await h.tick(2_000, 10);
    expect(h.scales).toEqual([]);
    for (let i = 0; i < 18; i++) await h.tick(2_000, 10);
    expect(h.scales).toEqual([]);
    await h.tick(2_000, 10);
    expect(h.scales.map((s) => s.to)).toEqual([2]);
  });

  it('says "autoscaling paused" after 30 s without the metric, and when it is back', async () => {
    const h = harness({ policy: { target_metric: 'latency', target_value: 100 } });
    h.proxiesDown();
    await h.tick(2_000, 0);
    expect(h.scaler.statusOf('d1')?.state).toBe('waiting');
    for (let i = 0; i < 15; i++) await h.tick(2_000, 0);
    expect(h.scaler.statusOf('d1')?.state).toBe('paused');
    expect(h.scaler.pausedReason('d1')).toBe(
      'autoscaling paused: no metric `latency` from any proxy for 30 s',
    );
    expect(h.records.filter((r) => r.event === 'autoscale.paused')).toHaveLength(1);
    h.proxiesUp();
    await h.tick(2_000, 0);
    expect(h.scaler.statusOf('d1')?.state).toBe('active');
    expect(h.records.at(-1)?.event).toMatch(/autoscale\.(resumed|held)/);
    expect(h.records.some((r) => r.event === 'autoscale.resumed')).toBe(true);
  });

  it('reads cpu as the average over HEALTHY replicas from resourceMetrics', async () => {
    const asked: string[][] = [];
    const h = harness({
      policy: {},
      replicas: 2,
      resourceMetrics: {
        read: (_d, ids, metric) => {
          asked.push([...ids, metric]);
          return new Map([
            ['r1', 90],
            ['r2', 100],
          ]);
        },
      },
    });
    h.replicas.push({
      id: 'r3',
      routeId: 't3',
      state: 'STARTING',
      leaving: false,
      waitingForCapacity: false,
    });
    h.live.target = 3;
    await h.tick(2_000, 0);
    expect(asked[0]).toEqual(['r1', 'r2', 'cpu']);
    expect(h.scales.map((s) => s.to)).toEqual([4]);
    expect(h.records[0]?.reason).toMatch(/cpu 95 % averaged over 2 HEALTHY replica\(s\)/);
  });

  it('pauses cpu autoscaling when nothing samples the replicas', async () => {
    const h = harness({ policy: { target_metric: 'cpu' } });
    for (let i = 0; i < 16; i++) await h.tick(2_000, 0);
    expect(h.scaler.pausedReason('d1')).toBe(
      'autoscaling paused: no metric `cpu` from any HEALTHY replica for 30 s',
    );
  });

  it('scale-in removes the least busy replica, and says which', async () => {
    const h = harness({
      policy: { target_metric: 'inflight', target_value: 10, cooldown_period: 0 },
      replicas: 3,
    });
    h.inflight.set('t1', 3);
    h.inflight.set('t2', 0);
    h.inflight.set('t3', 5);
    await h.tick(2_000, 0);
    expect(h.scales[0]?.to).toBe(2);
    expect(h.scales[0]?.order[0]).toBe('r2');
    expect(h.records[0]?.reason).toMatch(/removes r2 \(HEALTHY, 0 in flight\)/);
  });
});

describe('scale-in choice', () => {
  const r = (id: string, state: string, leaving = false): ScalableReplica => ({
    id,
    routeId: `t-${id}`,
    state,
    leaving,
    waitingForCapacity: false,
  });

  it('orders STARTING, then UNHEALTHY, then HEALTHY by fewest in flight; leaving ones are out', () => {
    const order = removalOrder(
      [
        r('a', 'HEALTHY'),
        r('b', 'UNHEALTHY'),
        r('c', 'HEALTHY'),
        r('d', 'STARTING'),
        r('e', 'HEALTHY', true),
      ],
      new Map([
        ['t-a', 4],
        ['t-c', 1],
      ]),
    );
    expect(order).toEqual(['d', 'b', 'c', 'a']);
  });
});
