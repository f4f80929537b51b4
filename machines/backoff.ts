/**
 * Capped exponential backoff, the one rule behind every retry delay in Flotilla: the replica's
 * restart backoff, the deployment's crash-loop delay before a new replica starts, and the
 * deployment's PROVISIONING -> PENDING retry. It lives in machines/ (which may import only
 * `./` and xstate) so that machines and src/ share one copy.
 */
export interface BackoffSettings {
  /** Delay of the first retry, seconds. */
  backoff_base_s: number;
  /** No delay is longer than this, seconds. */
  backoff_cap_s: number;
}

/**
 * Seconds to wait before retry number `attempt` (0-based): base * 2^attempt, at most cap.
 * A negative attempt counts as 0.
 */
export function backoffDelayS(attempt: number, s: BackoffSettings): number {
  return Math.min(s.backoff_cap_s, s.backoff_base_s * 2 ** Math.max(0, attempt));
}
