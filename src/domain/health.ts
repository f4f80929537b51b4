/** One readiness check result for a route, as the prober writes it to the health store. */
export interface HealthRecord {
  routeId: string;
  ready: boolean;
  /** HTTP status, or null when no response arrived. */
  status: number | null;
  latency_ms: number;
  /** epoch milliseconds */
  checked_at: number;
  consecutive_successes: number;
  consecutive_failures: number;
  error: string | null;
}

/** The 3-state classification of a route's health data. */
export const HealthClasses = ['HEALTHY', 'UNHEALTHY', 'DEGRADED'] as const;
export type HealthClass = (typeof HealthClasses)[number];

export const HEALTH_DEFAULTS = {
  ROUTE_HEALTH_TTL_SEC: 120,
  MAX_HEALTH_STALENESS_SEC: 300,
  HEALTH_CHECK_INTERVAL_SEC: 5,
  EVICTION_INTERVAL_SEC: 60,
} as const;
