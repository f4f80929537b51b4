import { describe, expect, it } from 'vitest';
import type { ScalingPolicy } from '../../../src/scaling/policy.ts';
import {
  decideScaleToZero,
  ScaleToZero,
  type ScaleToZeroEvent,
  scaleToZeroAfterS,
} from '../../../src/scaling/scale-to-zero.ts';

const T0 = 1_000_000;
const policy: ScalingPolicy = { min_replicas: 0, scale_to_zero_after_s: 300 };

describe('decideScaleToZero (the idle rule)', () => {
  const base = { min: 0, policy, state: 'RUNNING', target: 2, lastActiveAt: T0 };

  it('does nothing before scale_to_zero_after_s of idleness', () => {
    expect(decideScaleToZero({ ...base, now: T0 + 299_999 })).toBeNull();
  });

  it('goes to zero once the deployment has had no request for scale_to_zero_after_s', () => {
    expect(decideScaleToZero({ ...base, now: T0 + 300_000 })).toEqual({
      idleS: 300,
      reason: 'scaled to zero after 300 s idle',
    });
  });

  it('never acts without the field, with min_replicas above 0, outside RUNNING, or at zero', () => {
    const now = T0 + 10_000_000;
    expect(decideScaleToZero({ ...base, policy: { min_replicas: 0 }, now })).toBeNull();
    expect(decideScaleToZero({ ...base, policy: undefined, now })).toBeNull();
    expect(decideScaleToZero({ ...base, min: 1, now })).toBeNull();
    expect(decideScaleToZero({ ...base, state: 'PROVISIONING', now })).toBeNull();
    expect(decideScaleToZero({ ...base, target: 0, now })).toBeNull();
    expect(scaleToZeroAfterS(0, { scale_to_zero_after_s: 0 })).toBeNull();
  });
});

/** One deployment on a virtual clock; `scale` moves its target as the runtime would. */
function setup(opts: { policy?: ScalingPolicy; min?: number; target?: number } = {}) {
  let clock = T0;
  const live = { state: 'RUNNING', target: opts.target ?? 1 };
  const last = new Map<string, number>();
  const scaled: number[] = [];
  const events: ScaleToZeroEvent[] = [];
  let releaseScale: (() => void) | null = null;
  let holdScale = false;
  const s = new ScaleToZero({
    deployments: () => [
      { id: 'd1', name: 'm', min_replicas: opts.min ?? 0, policy: opts.policy ?? policy },
    ],
    stateOf: (id) => (id === 'd1' ? { ...live } : null),
    lastRequests: async () => last,
    scale: async (_id, replicas) => {
      scaled.push(replicas);
      if (holdScale) await new Promise<void>((r) => (releaseScale = r));
      live.target = replicas;
    },
    now: () => clock,
    onEvent: (e) => events.push(e),
  });
  return {
    s,
    live,
    last,
    scaled,
    events,
    advance: (ms: number) => (clock += ms),
    now: () => clock,
    holdScales: () => (holdScale = true),
    finishScale: () => releaseScale?.(),
  };
}

describe('ScaleToZero (the loop, virtual clock)', () => {
  it('counts idleness from when it first saw the deployment when no proxy reported a request', async () => {
    const t = setup();
    await t.s.evaluate();
    t.advance(299_000);
    expect(await t.s.evaluate()).toEqual([]);
    t.advance(1_000);
    const done = await t.s.evaluate();
    expect(done.map((e) => [e.kind, e.to, e.reason])).toEqual([
      ['scaled_to_zero', 0, 'scaled to zero after 300 s idle'],
    ]);
    expect(t.scaled).toEqual([0]);
    expect(t.s.zeroedReason('d1')?.reason).toBe('scaled to zero after 300 s idle');
  });

  it('a later request at any proxy restarts the idle clock', async () => {
    const t = setup();
    await t.s.evaluate();
    t.advance(200_000);
    t.last.set('d1', t.now());
    t.advance(200_000);
    expect(await t.s.evaluate()).toEqual([]);
    t.advance(100_000);
    expect((await t.s.evaluate()).length).toBe(1);
  });

  it('a manual scale up restarts the idle clock', async () => {
    const t = setup();
    await t.s.evaluate();
    t.advance(250_000);
    t.s.scaled('d1', 3);
    t.advance(250_000);
    expect(await t.s.evaluate()).toEqual([]);
  });

  it('activates a deployment at zero to one replica, and only one when asked concurrently', async () => {
    const t = setup({ target: 0 });
    t.holdScales();
    const asks = Array.from({ length: 20 }, () => t.s.activate('d1'));
    t.finishScale();
    const results = await Promise.all(asks);
    expect(results.every((r) => r === true)).toBe(true);
    expect(t.scaled).toEqual([1]);
    // Later asks (a proxy repeating its request) find it activated and do nothing.
    expect(await t.s.activate('d1')).toBe(false);
    expect(t.scaled).toEqual([1]);
    expect(t.events.map((e) => e.kind)).toEqual(['activated']);
  });

  it('an activation restarts the idle clock, so the replica it started is not drained at once', async () => {
    const t = setup({ target: 0 });
    await t.s.evaluate();
    t.advance(1_000_000);
    await t.s.activate('d1');
    t.advance(299_000);
    expect(await t.s.evaluate()).toEqual([]);
    t.advance(1_000);
    expect((await t.s.evaluate()).length).toBe(1);
  });

  it('does not activate a deployment whose policy does not scale to zero, or one with replicas', async () => {
    const noPolicy = setup({ target: 0, policy: { min_replicas: 0 } });
    expect(await noPolicy.s.activate('d1')).toBe(false);
    const running = setup({ target: 2 });
    expect(await running.s.activate('d1')).toBe(false);
    expect(await running.s.activate('unknown')).toBe(false);
    expect([...noPolicy.scaled, ...running.scaled]).toEqual([]);
  });
});
