import type { Balancer, BalancerTarget } from './balancer.ts';

/**
 * Smooth weighted round robin, as nginx does it: on each pick every usable target's current
 * weight grows by its weight, the largest wins and loses the total. Over any window of
 * sum(weights) picks each target gets exactly its weight, spread evenly (5:1:1 gives
 * a a b a c a a, not a a a a a b c).
 *
 * Targets with weight ≤ 0 get no share while any usable target has a positive weight; when
 * none has, all usable targets count as weight 1 (serving beats refusing on a misconfigured
 * weight). Used for replicas (`weighted` strategy) and for an endpoint's deployments.
 */
export class SmoothWeightedBalancer<T extends BalancerTarget> implements Balancer<T> {
  private current = new Map<T, number>();
  private lastTargets: readonly T[] | undefined;

  pick(targets: readonly T[], usable: (t: T) => boolean): T | undefined {
    if (targets !== this.lastTargets) this.retain(targets);
    let anyPositive = false;
    for (const t of targets) {
      if (t.weight > 0 && usable(t)) {
        anyPositive = true;
        break;
      }
    }
    let total = 0;
    let best: T | undefined;
    let bestCurrent = Number.NEGATIVE_INFINITY;
    for (const t of targets) {
      const w = anyPositive ? t.weight : 1;
      if (w <= 0 || !usable(t)) continue;
      const c = (this.current.get(t) ?? 0) + w;
      this.current.set(t, c);
      total += w;
      if (c > bestCurrent) {
        bestCurrent = c;
        best = t;
      }
    }
    if (best !== undefined) this.current.set(best, bestCurrent - total);
    return best;
  }

  /** Keeps the current weights of targets still present; forgets the rest. */
  private retain(targets: readonly T[]): void {
    const next = new Map<T, number>();
    for (const t of targets) {
      const c = this.current.get(t);
      if (c !== undefined) next.set(t, c);
    }
    this.current = next;
    this.lastTargets = targets;
  }
}
