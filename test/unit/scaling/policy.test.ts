import { describe, expect, it } from 'vitest';
import {
  type DecisionInput,
  decide,
  POLICY_DEFAULTS,
  resolvePolicy,
  type ScalingPolicy,
} from '../../../src/scaling/policy.ts';

const NOW = 10_000_000;
const bounds = { min_replicas: 0, max_replicas: 10 };

function input(policy: ScalingPolicy, over: Partial<DecisionInput> = {}): DecisionInput {
  return {
    policy: resolvePolicy(policy, bounds),
    current: 2,
    healthy: 2,
    starting: 0,
    waitingForCapacity: false,
    now: NOW,
    lastScaledAt: null,
    panicUntil: null,
    value: 50,
    ...over,
  };
}

describe('policy defaults', () => {
  it('are the reference ScalingHandler values: min 1, max 10, cpu, 70, 80, 30, cooldown 60 s, ±1', () => {
    const p = resolvePolicy({}, bounds);
    expect(p).toMatchObject({
      min: 1,
      max: 10,
      metric: 'cpu',
      target: 70,
      up: 80,
      down: 30,
      cooldownS: 60,
      maxStep: 1,
      stableS: 60,
      panicS: 6,
    });
    expect(POLICY_DEFAULTS.min_replicas).toBe(1);
  });

  it('derives absent thresholds from target_value in the reference proportions (70 -> 80/30)', () => {
    const p = resolvePolicy({ target_metric: 'requests', target_value: 7 }, bounds);
    expect(p.up).toBeCloseTo(8);
    expect(p.down).toBeCloseTo(3);
  });

  it('keeps the policy bounds inside the deployment bounds', () => {
    const p = resolvePolicy(
      { min_replicas: 0, max_replicas: 50 },
      { min_replicas: 2, max_replicas: 6 },
    );
    expect([p.min, p.max]).toEqual([2, 6]);
    // min_replicas 0 is accepted, but the autoscaler keeps one replica: going to zero is the
    // idle rule's (scale_to_zero_after_s), which also activates it again.
    expect(resolvePolicy({ min_replicas: 0 }, bounds).min).toBe(1);
  });
});

describe('threshold metrics (cpu, memory, requests, latency, inflight)', () => {
  it('adds one replica above scale_up_threshold (the ±1 step)', () => {
    const out = decide(input({}, { value: 95 }));
    expect(out.decision).toMatchObject({ kind: 'scale', direction: 'up', to: 3 });
  });

  it('aims for target_value when max_step allows more than one', () => {
    // 2 replicas at 140 % with target 70: 4 replicas bring it to 70.
    const out = decide(input({ max_step: 5 }, { value: 140 }));
    expect(out.decision).toMatchObject({ kind: 'scale', to: 4 });
  });

  it('removes one replica below scale_down_threshold', () => {
    const out = decide(input({}, { value: 10 }));
    expect(out.decision).toMatchObject({ kind: 'scale', direction: 'down', to: 1 });
  });

  it('does not remove a replica when the rest would carry more than target_value', () => {
    // 3 replicas at 29 %: below 30, but 2 replicas would carry 43.5 % (fine); 2 replicas
    // at 29 with target 20 would carry 58 > 20: held (target).
    const out = decide(
      input({ target_value: 20, scale_down_threshold: 30, scale_up_threshold: 80 }, { value: 29 }),
    );
    expect(out.decision).toMatchObject({ kind: 'hold', direction: 'down', cause: 'target' });
  });

  it('does not scale down before the averaging window is full (after a start or restart), but scales up', () => {
    const down = decide(input({ target_metric: 'requests' }, { value: 1, windowShortS: 4 }));
    expect(down.decision).toMatchObject({ kind: 'hold', direction: 'down', cause: 'window' });
    expect((down.decision as { why: string }).why).toMatch(/holds 4 s of history/);
    const up = decide(input({ target_metric: 'requests' }, { value: 200, windowShortS: 4 }));
    expect(up.decision).toMatchObject({ kind: 'scale', direction: 'up' });
  });

  it('keeps the count between the thresholds (no event)', () => {
    expect(decide(input({}, { value: 50 })).decision.kind).toBe('steady');
    expect(decide(input({}, { value: 80 })).decision.kind).toBe('steady');
    expect(decide(input({}, { value: 30 })).decision.kind).toBe('steady');
  });

  it('holds at max_replicas and at min_replicas, naming the bound', () => {
    const up = decide(input({ max_replicas: 2 }, { value: 99 }));
    expect(up.decision).toMatchObject({ kind: 'hold', cause: 'bounds', direction: 'up' });
    expect((up.decision as { why: string }).why).toContain('max_replicas 2');
    const down = decide(input({}, { current: 1, healthy: 1, value: 0 }));
    expect(down.decision).toMatchObject({ kind: 'hold', cause: 'bounds', direction: 'down' });
  });

  it('holds within the cooldown and says how long is left; acts once it has passed', () => {
    const within = decide(input({}, { value: 99, lastScaledAt: NOW - 45_000 }));
    expect(within.decision).toMatchObject({ kind: 'hold', cause: 'cooldown' });
    expect(within.cooldownLeftS).toBe(15);
    const after = decide(input({}, { value: 99, lastScaledAt: NOW - 60_000 }));
    expect(after.decision).toMatchObject({ kind: 'scale', to: 3 });
  });

  it('holds a scale-up while a replica already waits for node capacity', () => {
    const out = decide(input({}, { value: 99, waitingForCapacity: true }));
    expect(out.decision).toMatchObject({ kind: 'hold', cause: 'capacity' });
  });
});

describe('concurrency (stable and panic windows)', () => {
  const c: ScalingPolicy = { target_metric: 'concurrency', target_value: 2, cooldown_period: 30 };

  it('sets the count from the stable window: ceil(demand / target)', () => {
    const out = decide(input(c, { current: 1, healthy: 1, value: 5, panicValue: 3 }));
    expect(out.decision).toMatchObject({ kind: 'scale', direction: 'up', to: 3, panic: false });
  });

  it('panics at twice the target per replica and scales at once by what the demand needs, in cooldown too', () => {
    const out = decide(
      input(c, { current: 1, healthy: 1, value: 2, panicValue: 9, lastScaledAt: NOW - 1_000 }),
    );
    expect(out.decision).toMatchObject({ kind: 'scale', direction: 'up', to: 5, panic: true });
    expect(out.panicUntil).toBe(NOW + 60_000);
  });

  it('counts STARTING replicas as capacity: no panic when they cover the burst', () => {
    // 9 in flight over 1 HEALTHY + 4 STARTING with target 2: 1.8 per replica, no panic, and
    // the 5 replicas on the way are enough.
    const out = decide(input(c, { current: 5, healthy: 1, starting: 4, value: 9, panicValue: 9 }));
    expect(out.decision.kind).toBe('steady');
    expect(out.panicUntil).toBeNull();
  });

  it('does not scale down while panicking, even when the demand dropped', () => {
    const out = decide(
      input(c, { current: 5, healthy: 5, value: 1, panicValue: 0, panicUntil: NOW + 10_000 }),
    );
    expect(out.decision).toMatchObject({ kind: 'hold', direction: 'down', cause: 'target' });
    expect(out.panicUntil).toBe(NOW + 10_000);
  });

  it('leaves panic once the stable window passed without a burst, then scales down one step after the cooldown', () => {
    const out = decide(
      input(c, { current: 5, healthy: 5, value: 1, panicValue: 0, panicUntil: NOW - 1 }),
    );
    expect(out.panicUntil).toBeNull();
    expect(out.decision).toMatchObject({ kind: 'scale', direction: 'down', to: 4 });
    const cooling = decide(
      input(c, { current: 5, healthy: 5, value: 1, panicValue: 0, lastScaledAt: NOW - 5_000 }),
    );
    expect(cooling.decision).toMatchObject({ kind: 'hold', cause: 'cooldown', direction: 'down' });
  });

  it('panic is bounded by max_replicas and says so', () => {
    const out = decide(
      input({ ...c, max_replicas: 3 }, { current: 3, healthy: 3, value: 30, panicValue: 30 }),
    );
    expect(out.decision).toMatchObject({ kind: 'hold', cause: 'bounds', direction: 'up' });
  });

  it('holds at min_replicas when idle (bounds), and is steady when the count fits the demand', () => {
    const idle = decide(input(c, { current: 1, healthy: 1, value: 0, panicValue: 0 }));
    expect(idle.decision).toMatchObject({ kind: 'hold', cause: 'bounds', direction: 'down' });
    const fits = decide(input(c, { current: 2, healthy: 2, value: 3.5, panicValue: 3.5 }));
    expect(fits.decision.kind).toBe('steady');
  });
});
