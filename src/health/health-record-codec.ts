import type { HealthRecord } from '../domain/health.ts';

/**
 * The wire form of a HealthRecord in a store or on the change channel: compact JSON with the
 * domain field names, so `redis-cli GET` shows an operator the same fields as `flotilla status`.
 */
export function encodeHealthRecord(record: HealthRecord): string {
  // The copy keeps the record's own fields only, in one order.
  return JSON.stringify(copyHealthRecord(record));
}

/**
 * Parses a stored or published record. Returns undefined for anything that is not a complete
 * record (a foreign or corrupt value): callers treat it as "no data", which classifies as
 * DEGRADED rather than crashing a tick over one bad key.
 */
export function decodeHealthRecord(text: string): HealthRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isHealthRecord(v) ? v : undefined;
}

// Hand-written rather than zod: it runs once per route per tick (10,000+ per tick).
function isHealthRecord(v: unknown): v is HealthRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.routeId === 'string' &&
    typeof r.ready === 'boolean' &&
    (r.status === null || typeof r.status === 'number') &&
    typeof r.latency_ms === 'number' &&
    typeof r.checked_at === 'number' &&
    typeof r.consecutive_successes === 'number' &&
    typeof r.consecutive_failures === 'number' &&
    (r.error === null || typeof r.error === 'string')
  );
}

/** A detached copy, so a store never shares an object with its caller. */
export function copyHealthRecord(record: HealthRecord): HealthRecord {
  return {
    routeId: record.routeId,
    ready: record.ready,
    status: record.status,
    latency_ms: record.latency_ms,
    checked_at: record.checked_at,
    consecutive_successes: record.consecutive_successes,
    consecutive_failures: record.consecutive_failures,
    error: record.error,
  };
}
