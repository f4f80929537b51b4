import type { Balancer, BalancerTarget } from './balancer.ts';

/**
 * Least connections: the usable target with the fewest requests in flight from this proxy.
 * Ties are broken by a rotating start, so equally idle targets share the traffic in turn
 * instead of the first one taking it all.
 */
export class LeastConnectionsBalancer<T extends BalancerTarget> implements Balancer<T> {
  private rotate = 0;

  pick(targets: readonly T[], usable: (t: T) => boolean): T | undefined {
    const n = targets.length;
    if (n === 0) return undefined;
    const start = this.rotate++ % n;
    if (this.rotate > 1e9) this.rotate = 0;
    let best: T | undefined;
    for (let k = 0; k < n; k++) {
      const t = targets[(start + k) % n]!;
      if ((best === undefined || t.inflight < best.inflight) && usable(t)) best = t;
    }
    return best;
  }
}
