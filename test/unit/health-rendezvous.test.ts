import { describe, expect, it } from 'vitest';
import { rendezvousOwner } from '../../src/health/rendezvous.ts';

const routes = Array.from({ length: 3000 }, (_, i) => `route-${i}`);

describe('rendezvous ownership', () => {
  it('gives every route exactly one owner, the same whatever the member order', () => {
    const m = ['p1', 'p2', 'p3'];
    for (const r of routes.slice(0, 200)) {
      const owner = rendezvousOwner(r, m);
      expect(m).toContain(owner);
      expect(rendezvousOwner(r, [...m].reverse())).toBe(owner);
    }
    expect(rendezvousOwner('x', [])).toBeUndefined();
  });

  it('spreads routes roughly evenly over the members', () => {
    const m = ['prober-a', 'prober-b', 'prober-c', 'prober-d'];
    const counts = new Map<string, number>();
    for (const r of routes) {
      const o = rendezvousOwner(r, m) as string;
      counts.set(o, (counts.get(o) ?? 0) + 1);
    }
    for (const id of m) {
      // 750 expected each; allow ±20%.
      expect(counts.get(id)).toBeGreaterThan(600);
      expect(counts.get(id)).toBeLessThan(900);
    }
  });

  it('moves only the routes of a member that leaves', () => {
    const before = ['a', 'b', 'c'];
    const after = ['a', 'c'];
    let moved = 0;
    for (const r of routes) {
      const o1 = rendezvousOwner(r, before);
      const o2 = rendezvousOwner(r, after);
      if (o1 !== 'b') expect(o2).toBe(o1);
      else moved++;
    }
    expect(moved).toBeGreaterThan(0);
  });
});
