import { describe, expect, it } from 'vitest';
import { decideScale } from '../../src/scaling/policy.ts';

const base = { current: 2, min: 1, max: 4, lastScaledAt: null, now: 1_000_000 };
const policy = { scale_up_threshold: 2, scale_down_threshold: 0.5, cooldown_period: 60 };

describe('autoscaling decision', () => {
  it('adds a replica above the scale-up threshold', () => {
    expect(decideScale({ ...base, metric: 3, policy })?.replicas).toBe(3);
  });
  it('removes a replica below the scale-down threshold', () => {
    expect(decideScale({ ...base, metric: 0.1, policy })?.replicas).toBe(1);
  });
  it('keeps the count between the thresholds', () => {
    expect(decideScale({ ...base, metric: 1, policy })).toBeNull();
  });
  it('never goes above max or below min (nor below one replica)', () => {
    expect(decideScale({ ...base, current: 4, metric: 9, policy })).toBeNull();
    expect(decideScale({ ...base, current: 1, metric: 0, policy })).toBeNull();
    expect(decideScale({ ...base, min: 0, current: 1, metric: 0, policy })).toBeNull();
  });
  it('waits out the cooldown after a scaling action', () => {
    expect(decideScale({ ...base, metric: 9, policy, lastScaledAt: base.now - 30_000 })).toBeNull();
    expect(
      decideScale({ ...base, metric: 9, policy, lastScaledAt: base.now - 61_000 })?.replicas,
    ).toBe(3);
  });
  it('makes no decision without a metric', () => {
    expect(decideScale({ ...base, metric: null, policy })).toBeNull();
  });
});
