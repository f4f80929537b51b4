/**
 * The proxy side of autoscaling: per-deployment load counters of one proxy (load-report.ts).
 *
 * In flight and queued come from the proxy's admission status; their time integral is sampled
 * every `sampleMs` (250 ms). Requests answered and their latency come from the proxy's own
 * request-duration histogram (`flotilla_proxy_request_duration_seconds`, one series per
 * deployment name), so the request path pays nothing extra for autoscaling.
 */
import type { Registry } from 'prom-client';
import { type DeploymentCounters, LATENCY_BUCKETS_S, type LoadReport } from './load-report.ts';

/** The proxy as the counters read it. */
export interface LoadSource {
  /** The deployments in the proxy's routing table now. */
  deployments(): Iterable<{ deploymentId: string; name: string }>;
  /** In flight and queued at this proxy for a deployment (by name). */
  status(name: string): { inflight: number; queued: number };
  /** The proxy's metrics registry (its request-duration histogram is read). */
  metrics: Registry;
}

export const REQUEST_DURATION_METRIC = 'flotilla_proxy_request_duration_seconds';
export const DEFAULT_SAMPLE_MS = 250;

export interface LoadCounters {
  /** The cumulative counters now. */
  report(): Promise<LoadReport>;
  /** Stops sampling. */
  stop(): void;
}

interface Integral {
  value: number;
  at: number;
}

export function startLoadCounters(opts: {
  source: LoadSource;
  proxyId: string;
  now?: () => number;
  sampleMs?: number;
}): LoadCounters {
  const now = opts.now ?? Date.now;
  const integrals = new Map<string, Integral>();
  const sample = () => {
    const t = now();
    const seen = new Set<string>();
    for (const d of opts.source.deployments()) {
      seen.add(d.deploymentId);
      const s = opts.source.status(d.name);
      const i = integrals.get(d.deploymentId);
      if (!i) integrals.set(d.deploymentId, { value: 0, at: t });
      else {
        i.value += (s.inflight + s.queued) * Math.max(0, t - i.at);
        i.at = t;
      }
    }
    for (const id of integrals.keys()) if (!seen.has(id)) integrals.delete(id);
  };
  sample();
  const timer = setInterval(sample, opts.sampleMs ?? DEFAULT_SAMPLE_MS);
  timer.unref();

  return {
    async report() {
      sample();
      const histogram = await readHistogram(opts.source.metrics);
      const deployments: Record<string, DeploymentCounters> = {};
      for (const d of opts.source.deployments()) {
        const s = opts.source.status(d.name);
        const h = histogram.get(d.name);
        deployments[d.deploymentId] = {
          name: d.name,
          inflight: s.inflight,
          queued: s.queued,
          requests: h?.count ?? 0,
          concurrency_ms: Math.round(integrals.get(d.deploymentId)?.value ?? 0),
          latency: h?.buckets ?? new Array(LATENCY_BUCKETS_S.length + 1).fill(0),
        };
      }
      return { proxy: opts.proxyId, at: now(), deployments };
    },
    stop: () => clearInterval(timer),
  };
}

/** Per deployment name: answered requests and per-bucket (not cumulative) counts. */
async function readHistogram(
  registry: Registry,
): Promise<Map<string, { count: number; buckets: number[] }>> {
  const out = new Map<string, { count: number; buckets: number[] }>();
  const metric = registry.getSingleMetric(REQUEST_DURATION_METRIC);
  if (!metric) return out;
  const { values } = await metric.get();
  // Prometheus buckets are cumulative (`le`): collect them, then take differences.
  const cumulative = new Map<string, Map<number, number>>();
  for (const v of values) {
    const name = String(v.labels.deployment ?? '');
    const metricName = (v as { metricName?: string }).metricName ?? '';
    if (metricName.endsWith('_count')) {
      const e = out.get(name) ?? { count: 0, buckets: [] };
      e.count = v.value;
      out.set(name, e);
    } else if (metricName.endsWith('_bucket')) {
      const le = v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le);
      const m = cumulative.get(name) ?? new Map<number, number>();
      m.set(le, v.value);
      cumulative.set(name, m);
    }
  }
  for (const [name, m] of cumulative) {
    const e = out.get(name) ?? { count: 0, buckets: [] };
    let below = 0;
    e.buckets = [...LATENCY_BUCKETS_S, Number.POSITIVE_INFINITY].map((le) => {
      const c = m.get(le) ?? below;
      const n = Math.max(0, c - below);
      below = c;
      return n;
    });
    out.set(name, e);
  }
  return out;
}
