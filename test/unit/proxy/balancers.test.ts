import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BalancingStrategies } from '../../../src/domain/routing.ts';
import { createBalancer } from '../../../src/proxy/balancer.ts';
import { LeastConnectionsBalancer } from '../../../src/proxy/least-connections.ts';
import { PowerOfTwoChoicesBalancer } from '../../../src/proxy/power-of-two-choices.ts';
import { RoundRobinBalancer } from '../../../src/proxy/round-robin.ts';
import { SmoothWeightedBalancer } from '../../../src/proxy/weighted.ts';
import { seededRandom } from './seeded-random.ts';

interface T {
  name: string;
  weight: number;
  inflight: number;
}
const t = (name: string, weight = 1, inflight = 0): T => ({ name, weight, inflight });
const all = () => true;

describe('round robin', () => {
  it('gives each target exactly k of n·k picks, in turn', () => {
    const targets = [t('a'), t('b'), t('c')];
    const b = new RoundRobinBalancer<T>();
    const picks = Array.from({ length: 9 }, () => b.pick(targets, all)!.name);
    expect(picks.join('')).toBe('abcabcabc');
  });

  it('skips an unusable target without disturbing the others', () => {
    const targets = [t('a'), t('b'), t('c')];
    const b = new RoundRobinBalancer<T>();
    const picks = Array.from({ length: 6 }, () => b.pick(targets, (x) => x.name !== 'b')!.name);
    expect(picks.join('')).toBe('acacac');
  });

  it('returns undefined when nothing is usable or there are no targets', () => {
    const b = new RoundRobinBalancer<T>();
    expect(b.pick([t('a')], () => false)).toBeUndefined();
    expect(b.pick([], all)).toBeUndefined();
  });
});

describe('smooth weighted round robin', () => {
  it('spreads 5:1:1 the way nginx does (a a b a c a a)', () => {
    const targets = [t('a', 5), t('b', 1), t('c', 1)];
    const b = new SmoothWeightedBalancer<T>();
    const picks = Array.from({ length: 7 }, () => b.pick(targets, all)!.name);
    expect(picks.join(' ')).toBe('a a b a c a a');
  });

  it('matches the weights exactly over any multiple of their sum', () => {
    const targets = [t('a', 3), t('b', 2), t('c', 5)];
    const b = new SmoothWeightedBalancer<T>();
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const n = b.pick(targets, all)!.name;
      counts[n] = (counts[n] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 300, b: 200, c: 500 });
  });

  it('gives weight 0 no share while a positive weight is usable, and equal shares when none is', () => {
    const b = new SmoothWeightedBalancer<T>();
    const targets = [t('a', 1), t('b', 0)];
    for (let i = 0; i < 10; i++) expect(b.pick(targets, all)!.name).toBe('a');
    const names = Array.from({ length: 4 }, () => b.pick(targets, (x) => x.name === 'b')!.name);
    expect(names).toEqual(['b', 'b', 'b', 'b']);
    const zeros = [t('x', 0), t('y', 0)];
    const z = Array.from({ length: 4 }, () => b.pick(zeros, all)!.name).sort();
    expect(z).toEqual(['x', 'x', 'y', 'y']);
  });

  it('hands an unusable target’s share to the others', () => {
    const targets = [t('a', 1), t('b', 1), t('c', 2)];
    const b = new SmoothWeightedBalancer<T>();
    const counts: Record<string, number> = {};
    for (let i = 0; i < 300; i++) {
      const n = b.pick(targets, (x) => x.name !== 'c')!.name;
      counts[n] = (counts[n] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 150, b: 150 });
  });
});

describe('least connections', () => {
  it('picks the target with the fewest in flight', () => {
    const b = new LeastConnectionsBalancer<T>();
    const targets = [t('a', 1, 3), t('b', 1, 1), t('c', 1, 2)];
    for (let i = 0; i < 5; i++) expect(b.pick(targets, all)!.name).toBe('b');
  });

  it('shares ties in turn instead of always taking the first', () => {
    const b = new LeastConnectionsBalancer<T>();
    const targets = [t('a'), t('b'), t('c')];
    const picks = new Set(Array.from({ length: 3 }, () => b.pick(targets, all)!.name));
    expect(picks.size).toBe(3);
  });
});

describe('power of two choices', () => {
  it('takes the less loaded of two distinct draws', () => {
    const random = seededRandom(7);
    const b = new PowerOfTwoChoicesBalancer<T>(random);
    const targets = [t('a', 1, 10), t('b', 1, 0)];
    // With two targets both are always drawn, so the idle one always wins.
    for (let i = 0; i < 20; i++) expect(b.pick(targets, all)!.name).toBe('b');
  });

  it('never picks the most loaded of three (it can only win a draw against itself)', () => {
    const b = new PowerOfTwoChoicesBalancer<T>(seededRandom(11));
    const targets = [t('a', 1, 0), t('b', 1, 1), t('c', 1, 9)];
    for (let i = 0; i < 200; i++) expect(b.pick(targets, all)!.name).not.toBe('c');
  });
});

describe('every strategy', () => {
  it('returns a usable target, or undefined exactly when none is usable', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...BalancingStrategies),
        fc.array(
          fc.record({
            weight: fc.integer({ min: 0, max: 5 }),
            inflight: fc.nat(5),
            usable: fc.boolean(),
          }),
          {
            maxLength: 8,
          },
        ),
        fc.integer(),
        fc.integer({ min: 1, max: 20 }),
        (strategy, specs, seed, picks) => {
          const targets = specs.map((s, i) => ({ ...s, name: String(i) }));
          const b = createBalancer<(typeof targets)[number]>(strategy, seededRandom(seed));
          const anyUsable = targets.some((x) => x.usable);
          for (let i = 0; i < picks; i++) {
            const p = b.pick(targets, (x) => x.usable);
            if (!anyUsable) expect(p).toBeUndefined();
            else expect(p?.usable).toBe(true);
          }
        },
      ),
      { seed: 42 },
    );
  });
});
