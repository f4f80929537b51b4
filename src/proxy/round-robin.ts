import type { Balancer, BalancerTarget } from './balancer.ts';

/**
 * Round robin: each usable target in turn. An unusable target is skipped without losing the
 * turn order of the others, so over n·k picks with all usable each gets exactly k.
 */
export class RoundRobinBalancer<T extends BalancerTarget> implements Balancer<T> {
  private next = 0;

  pick(targets: readonly T[], usable: (t: T) => boolean): T | undefined {
    const n = targets.length;
    if (n === 0) return undefined;
    const start = this.next % n;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      const t = targets[i]!;
      if (usable(t)) {
        this.next = i + 1;
        return t;
      }
    }
    return undefined;
  }
}
