/**
 * The balancing port: one small interface, one file per strategy (round-robin.ts,
 * least-connections.ts, weighted.ts, power-of-two-choices.ts).
 */
import type { BalancingStrategy } from '../domain/routing.ts';
import { LeastConnectionsBalancer } from './least-connections.ts';
import { PowerOfTwoChoicesBalancer } from './power-of-two-choices.ts';
import { RoundRobinBalancer } from './round-robin.ts';
import { SmoothWeightedBalancer } from './weighted.ts';

/** What a balancer sees of one candidate (a replica, or a deployment behind an endpoint). */
export interface BalancerTarget {
  /** Relative share for `weighted`; ≤ 0 means no share while a positive-weight one is usable. */
  readonly weight: number;
  /** Requests this proxy has in flight to it right now. */
  readonly inflight: number;
}

/**
 * Picks one target per request.
 *
 * Contract: `pick` returns a member of `targets` for which `usable(t)` is true, or
 * `undefined` when there is none; it never returns an unusable target. `targets` may change
 * between calls (a new routing table); a balancer keys its own state by target identity and
 * tolerates additions and removals. Balancers are synchronous and allocation-light: they run
 * on every request.
 */
export interface Balancer<T extends BalancerTarget = BalancerTarget> {
  pick(targets: readonly T[], usable: (t: T) => boolean): T | undefined;
}

/** The balancer for a deployment's routing strategy; `random` returns [0, 1) and is seedable. */
export function createBalancer<T extends BalancerTarget>(
  strategy: BalancingStrategy,
  random: () => number,
): Balancer<T> {
  switch (strategy) {
    case 'least_connections':
      return new LeastConnectionsBalancer<T>();
    case 'weighted':
      return new SmoothWeightedBalancer<T>();
    case 'power_of_two_choices':
      return new PowerOfTwoChoicesBalancer<T>(random);
    default:
      return new RoundRobinBalancer<T>();
  }
}
