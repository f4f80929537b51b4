import type { HealthRecord } from '../domain/health.ts';

/**
 * Where probers put readiness results and where the coordinator reads them.
 *
 * Invariants every adapter keeps (checked by test/integration/health/health-store-conformance.test.ts):
 * - A route holds at most one record: the latest `write` replaces the previous one and restarts
 *   its TTL. A record whose TTL has elapsed is gone: `readMany` omits it, exactly as if it had
 *   never been written. Nothing else deletes records.
 * - Records come back equal to what was written (a copy: mutating either side changes nothing).
 * - `publishChange` is best effort and at most once: a subscriber that is disconnected when a
 *   change is published misses it. It is a fast path only; `readMany` on a tick stays the
 *   source of truth, so a missed message delays a reaction by at most one tick.
 * - Membership is a set of prober ids, each alive until its own TTL runs out after its last
 *   `heartbeat`; `leave` removes one at once. `members()` lists live ids sorted, so every prober
 *   that reads it sees the same order.
 * - Failures of the backing service surface as a `FlotillaError` with code
 *   `dependency_unavailable` and `retryable: true`; `ping` never throws.
 */
export interface HealthStore {
  /** Writes one route's latest result with a TTL (seconds); replaces the previous one. */
  write(record: HealthRecord, ttlS: number): Promise<void>;
  /** Reads many routes in pipelined batches; a route with no data (never written or TTL expired) is absent from the map. */
  readMany(routeIds: readonly string[]): Promise<Map<string, HealthRecord>>;
  /**
   * Optional, no I/O: the records this process wrote itself and still holds (TTL not elapsed),
   * for a classifier that must keep working while the shared service is down. Only a store that
   * keeps local results (local-first-health-store.ts) has it.
   */
  readLocal?(routeIds: readonly string[]): Map<string, HealthRecord>;
  /** Publishes a change at once (ready flipped, or first result) to subscribers. */
  publishChange(record: HealthRecord): Promise<void>;
  /**
   * Subscribes to changes published by any prober (including this process). Resolves once the
   * subscription is active: a change published after that reaches the listener. A listener that
   * throws is logged and does not affect other listeners. Returns unsubscribe.
   */
  subscribe(listener: (record: HealthRecord) => void): Promise<() => Promise<void>>;
  /** Prober membership for sharding: heartbeat this prober id with a TTL; list live members. */
  heartbeat(proberId: string, ttlS: number): Promise<void>;
  /** Live prober ids (TTL not elapsed since their last heartbeat, not left), sorted. */
  members(): Promise<string[]>;
  /** Removes a prober id from membership at once (graceful shutdown). */
  leave(proberId: string): Promise<void>;
  /** True when the backing service answers; never throws. */
  ping(): Promise<boolean>;
  /** Releases connections; idempotent. The store is unusable afterwards. */
  close(): Promise<void>;
}
