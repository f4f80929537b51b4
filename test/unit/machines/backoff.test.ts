import { describe, expect, it } from 'vitest';
import { backoffDelayS } from '../../../machines/backoff.ts';
import { crashLoopDelayS } from '../../../machines/deployment.ts';

const s = { backoff_base_s: 1, backoff_cap_s: 60 };

describe('capped exponential backoff', () => {
  it('doubles from the base on each attempt and never exceeds the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffDelayS(n, s))).toEqual([
      1, 2, 4, 8, 16, 32, 60, 60, 60,
    ]);
    expect(backoffDelayS(-1, s)).toBe(1);
  });

  it('the crash-loop delay is no delay before the first failure, then the same backoff', () => {
    expect([0, 1, 2, 3, 8].map((n) => crashLoopDelayS(n, s))).toEqual([0, 1, 2, 4, 60]);
  });
});
