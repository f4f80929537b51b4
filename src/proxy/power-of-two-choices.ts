import type { Balancer, BalancerTarget } from './balancer.ts';

/**
 * Power of two choices: two distinct usable targets drawn at random, the one with fewer
 * requests in flight wins (the first drawn on a tie). Nearly as good as least connections
 * without its herd behaviour when many proxies share stale counts.
 */
export class PowerOfTwoChoicesBalancer<T extends BalancerTarget> implements Balancer<T> {
  constructor(private readonly random: () => number) {}

  pick(targets: readonly T[], usable: (t: T) => boolean): T | undefined {
    let count = 0;
    for (const t of targets) if (usable(t)) count++;
    if (count === 0) return undefined;
    const a = Math.min(count - 1, Math.floor(this.random() * count));
    if (count === 1) return nthUsable(targets, usable, 0);
    // Draw the second among the other count − 1, then shift past the first.
    let b = Math.min(count - 2, Math.floor(this.random() * (count - 1)));
    if (b >= a) b++;
    const first = nthUsable(targets, usable, a)!;
    const second = nthUsable(targets, usable, b)!;
    return second.inflight < first.inflight ? second : first;
  }
}

function nthUsable<T>(targets: readonly T[], usable: (t: T) => boolean, n: number): T | undefined {
  let seen = 0;
  for (const t of targets) {
    if (!usable(t)) continue;
    if (seen === n) return t;
    seen++;
  }
  return undefined;
}
