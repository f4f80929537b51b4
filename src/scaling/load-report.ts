/**
 * What one proxy reports of the load it sees, per deployment: CUMULATIVE counters since the
 * proxy started (requests answered, the integral of requests in flight + queued over time,
 * latency histogram counts) plus the instantaneous in-flight and queued counts. Cumulative,
 * so a reader may difference two reports over any window it likes, and a lost report loses
 * nothing; the coordinator turns them into windows (load-windows.ts).
 */

/** Upper bounds (seconds) of the latency histogram buckets; a last bucket holds the rest. */
export const LATENCY_BUCKETS_S = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
] as const;

export interface DeploymentCounters {
  name: string;
  /** Requests holding an admission slot now. */
  inflight: number;
  /** Requests waiting in the admission queue now. */
  queued: number;
  /** Requests answered since the proxy started (every status, rejections included). */
  requests: number;
  /** ∫ (in flight + queued) dt since the proxy started, in request·milliseconds. */
  concurrency_ms: number;
  /**
   * Answered requests per latency bucket since the proxy started: one count per bound of
   * {@link LATENCY_BUCKETS_S} (not cumulative across buckets), then one for everything slower.
   */
  latency: number[];
}

export interface LoadReport {
  /** The proxy's identity (host:pid:port:random for a proxy process, `local` in-process). */
  proxy: string;
  /** When the counters were read (epoch ms). */
  at: number;
  /** By deployment id: every deployment in the proxy's routing table. */
  deployments: Record<string, DeploymentCounters>;
}

/** Parses a report read from Redis; null when it is not one (another version, corrupt). */
export function parseLoadReport(text: string): LoadReport | null {
  try {
    const r = JSON.parse(text) as Partial<LoadReport>;
    if (typeof r.proxy !== 'string' || typeof r.at !== 'number') return null;
    if (!r.deployments || typeof r.deployments !== 'object') return null;
    return r as LoadReport;
  } catch {
    return null;
  }
}
