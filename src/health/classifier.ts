import type { HealthClass, HealthRecord } from '../domain/health.ts';
import type { HealthStore } from './health-store.ts';

export interface ClassifyOptions {
  /** MAX_HEALTH_STALENESS_SEC: data whose checked_at is older than this is DEGRADED. */
  maxStalenessS: number;
}

/** A route's class and the one-line reason `flotilla status` shows for it. */
export interface RouteClassification {
  class: HealthClass;
  reason: string;
}

/** What `classifyMany` yields per route: the classification plus the record it came from. */
export interface RouteHealth extends RouteClassification {
  /** The latest check (for "last health check" in status); undefined when there is no data. */
  record: HealthRecord | undefined;
}

export const NO_HEALTH_DATA_REASON = 'no health data: prober not running or Redis unreachable';

/**
 * The documented 3-state classification, in its documented order:
 * no data (never written, or TTL expired) → DEGRADED; checked_at older than maxStalenessS →
 * DEGRADED (even when the stale result was ready); ready → HEALTHY; not ready → UNHEALTHY with
 * the prober's error text as the reason.
 *
 * Pure. A checked_at in the future (clock skew between prober and coordinator hosts) counts as
 * fresh rather than negative-stale.
 */
export function classifyRoute(
  record: HealthRecord | undefined,
  nowMs: number,
  opts: ClassifyOptions,
): RouteClassification {
  if (!record) return { class: 'DEGRADED', reason: NO_HEALTH_DATA_REASON };
  const ageMs = nowMs - record.checked_at;
  if (ageMs > opts.maxStalenessS * 1000) {
    return {
      class: 'DEGRADED',
      reason: `health data stale: last check ${Math.floor(ageMs / 1000)}s ago`,
    };
  }
  if (record.ready) {
    const status = record.status === null ? 'ready' : `HTTP ${record.status}`;
    return {
      class: 'HEALTHY',
      reason: `ready (${status} in ${Math.round(record.latency_ms)} ms)`,
    };
  }
  return { class: 'UNHEALTHY', reason: notReadyReason(record) };
}

function notReadyReason(record: HealthRecord): string {
  if (record.error) return record.error;
  if (record.status !== null) return `HTTP ${record.status}`;
  return 'readiness check failed';
}

/**
 * Classifies every route in one read of the store (`readMany` batches and pipelines). Routes
 * absent from the store come back DEGRADED with the no-data reason; every id asked for is in
 * the result. Throws the store's error when the read fails: the caller decides whether a tick
 * that could not read means "keep last classes" or "everything DEGRADED".
 */
export async function classifyMany(
  store: Pick<HealthStore, 'readMany'>,
  routeIds: readonly string[],
  nowMs: number,
  opts: ClassifyOptions,
): Promise<Map<string, RouteHealth>> {
  const records = await store.readMany(routeIds);
  const out = new Map<string, RouteHealth>();
  for (const id of routeIds) {
    const record = records.get(id);
    const c = classifyRoute(record, nowMs, opts);
    out.set(id, { class: c.class, reason: c.reason, record });
  }
  return out;
}
