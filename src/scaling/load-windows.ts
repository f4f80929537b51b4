/**
 * The coordinator side of the proxy metrics: proxy reports (load-report.ts) in, windows out.
 *
 * Each `ingest` takes the latest report of every live proxy. Per proxy and deployment it
 * takes the difference from that proxy's previous report (a proxy seen for the first time only
 * sets its baseline; a counter that went down was reset and counts from zero) as a rate over
 * the proxy's own interval between the two reports (its `at`), applies that rate to the slice
 * since the previous ingest (a proxy that has not reported anew keeps its last rate), sums over
 * the proxies, and appends one slice per deployment to a ring that keeps `retainS` seconds. So
 * a proxy that publishes on its own clock (about once a second, read by the coordinator every
 * evaluation) neither inflates nor deflates a slice by the phase between the two. A window of W seconds is the slices that end within the last W seconds:
 *
 * - `requests`: answered requests per second (sum / window length);
 * - `concurrency`: average requests in flight + queued (∫ / window length);
 * - `latency`: p50 and p95 from the summed histogram, linearly interpolated in the bucket;
 * - `inflight`: in flight + queued now, summed over the live proxies (no window).
 *
 * A deployment has a metric while at least one live proxy reports it.
 */
import type { LoadReport } from './load-report.ts';
import { LATENCY_BUCKETS_S } from './load-report.ts';

interface Slice {
  /** When the slice starts (the previous ingest) and ends (this ingest), epoch ms. */
  start: number;
  end: number;
  requests: number;
  concurrencyMs: number;
  latency: number[];
}

interface DeploymentWindow {
  slices: Slice[];
  /** In flight + queued at the newest reports, summed over proxies. */
  demandNow: number;
  /** When a live proxy last reported this deployment. */
  seenAt: number;
}

interface ProxyBaseline {
  at: number;
  byDeployment: Map<
    string,
    {
      requests: number;
      concurrencyMs: number;
      latency: number[];
      /** Per millisecond over the proxy's last interval with a new report. */
      requestsRate: number;
      concurrencyRate: number;
    }
  >;
}

/** One window's figures for a deployment. */
export interface WindowFigures {
  /** Seconds the window actually covers (less than asked while the history is short). */
  spanS: number;
  requestsPerS: number;
  /** Average in flight + queued over the window. */
  concurrency: number;
  /** Latency percentiles in milliseconds; null without an answered request in the window. */
  p50Ms: number | null;
  p95Ms: number | null;
  /** In flight + queued now. */
  demandNow: number;
}

export class LoadWindows {
  private readonly windows = new Map<string, DeploymentWindow>();
  private readonly baselines = new Map<string, ProxyBaseline>();
  private lastIngest: number | null = null;
  /** When any proxy last reported (epoch ms), or null. */
  lastReportAt: number | null = null;

  constructor(private readonly retainS = 600) {}

  ingest(reports: readonly LoadReport[], now: number): void {
    const sums = new Map<
      string,
      { requests: number; concurrencyMs: number; latency: number[]; demand: number }
    >();
    const live = new Set<string>();
    const sliceMs = this.lastIngest === null ? 0 : Math.max(0, now - this.lastIngest);
    for (const r of reports) {
      live.add(r.proxy);
      this.lastReportAt = now;
      const before = this.baselines.get(r.proxy);
      const next: ProxyBaseline = { at: r.at, byDeployment: new Map() };
      for (const [id, c] of Object.entries(r.deployments)) {
        const latency = Array.isArray(c.latency) ? c.latency.map(Number) : [];
        const prev = before?.byDeployment.get(id);
        const dtMs = prev && before ? r.at - before.at : 0;
        // A new report: its rates over the proxy's own interval; none since: the last rates.
        const requestsRate =
          dtMs > 0 && prev ? delta(c.requests, prev.requests) / dtMs : (prev?.requestsRate ?? 0);
        const concurrencyRate =
          dtMs > 0 && prev
            ? delta(c.concurrency_ms, prev.concurrencyMs) / dtMs
            : (prev?.concurrencyRate ?? 0);
        next.byDeployment.set(id, {
          requests: c.requests,
          concurrencyMs: c.concurrency_ms,
          latency,
          requestsRate,
          concurrencyRate,
        });
        const s = sums.get(id) ?? {
          requests: 0,
          concurrencyMs: 0,
          latency: new Array(LATENCY_BUCKETS_S.length + 1).fill(0),
          demand: 0,
        };
        s.demand += (c.inflight ?? 0) + (c.queued ?? 0);
        if (prev) {
          s.requests += requestsRate * sliceMs;
          s.concurrencyMs += concurrencyRate * sliceMs;
          for (let i = 0; i < s.latency.length; i++) {
            s.latency[i] = (s.latency[i] ?? 0) + delta(latency[i] ?? 0, prev.latency[i] ?? 0);
          }
        }
        sums.set(id, s);
      }
      this.baselines.set(r.proxy, next);
    }
    for (const id of this.baselines.keys()) if (!live.has(id)) this.baselines.delete(id);
    const cutoff = now - this.retainS * 1000;
    for (const [id, s] of sums) {
      const w = this.windows.get(id) ?? { slices: [], demandNow: 0, seenAt: now };
      if (this.lastIngest !== null) {
        w.slices.push({
          start: this.lastIngest,
          end: now,
          requests: s.requests,
          concurrencyMs: s.concurrencyMs,
          latency: s.latency,
        });
      }
      w.demandNow = s.demand;
      w.seenAt = now;
      while (w.slices.length > 0 && (w.slices[0]?.end ?? now) < cutoff) w.slices.shift();
      this.windows.set(id, w);
    }
    for (const [id, w] of this.windows) {
      if (!sums.has(id)) {
        w.demandNow = 0;
        if (w.seenAt < cutoff) this.windows.delete(id);
      }
    }
    this.lastIngest = now;
  }

  /** When a live proxy last reported the deployment (epoch ms), or null if never. */
  seenAt(deploymentId: string): number | null {
    return this.windows.get(deploymentId)?.seenAt ?? null;
  }

  /**
   * The deployment's figures over the last `windowS` seconds, or null when no live proxy
   * reported it at the last ingest.
   */
  read(deploymentId: string, windowS: number, now: number): WindowFigures | null {
    const w = this.windows.get(deploymentId);
    if (!w || w.seenAt !== this.lastIngest) return null;
    const from = now - windowS * 1000;
    // Whole slices: the window is rounded out to the evaluation that began its first slice.
    const slices = w.slices.filter((s) => s.end > from);
    const spanMs = Math.max(0, now - (slices[0]?.start ?? now));
    let requests = 0;
    let concurrencyMs = 0;
    const latency = new Array<number>(LATENCY_BUCKETS_S.length + 1).fill(0);
    for (const s of slices) {
      requests += s.requests;
      concurrencyMs += s.concurrencyMs;
      s.latency.forEach((n, i) => {
        latency[i] = (latency[i] ?? 0) + n;
      });
    }
    const spanS = spanMs / 1000;
    return {
      spanS,
      requestsPerS: spanS > 0 ? requests / spanS : 0,
      // No history yet: the demand now is the best estimate of the average.
      concurrency: spanMs > 0 ? concurrencyMs / spanMs : w.demandNow,
      p50Ms: quantileMs(latency, 0.5),
      p95Ms: quantileMs(latency, 0.95),
      demandNow: w.demandNow,
    };
  }

  forget(deploymentId: string): void {
    this.windows.delete(deploymentId);
  }
}

function delta(now: number, before: number): number {
  // A counter below its previous value was reset (its proxy forgot the deployment): count anew.
  return now >= before ? now - before : now;
}

/**
 * The q-quantile of per-bucket counts in milliseconds, interpolated linearly inside its bucket
 * (as Prometheus' histogram_quantile); the open last bucket answers its lower bound.
 */
export function quantileMs(counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i] ?? 0;
    if (below + n >= rank && n > 0) {
      const lower = i === 0 ? 0 : (LATENCY_BUCKETS_S[i - 1] ?? 0);
      const upper = LATENCY_BUCKETS_S[i];
      if (upper === undefined) return lower * 1000;
      return (lower + ((upper - lower) * (rank - below)) / n) * 1000;
    }
    below += n;
  }
  return (LATENCY_BUCKETS_S[LATENCY_BUCKETS_S.length - 1] ?? 0) * 1000;
}
