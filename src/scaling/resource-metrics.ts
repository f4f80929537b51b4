/**
 * The `cpu` and `memory` autoscaling metrics: samples every replica's resource use through the
 * backend (ReplicaBackend.usage: the process group on the process backend, the container on
 * Docker) every `intervalMs`, and turns the readings into utilization per replica, in percent
 * of what the replica requested (its session's resource slots):
 *
 * - cpu: CPU seconds used per wall-clock second over the sliding window (`windowMs`, the oldest
 *   reading at or before the window's start to the newest), divided by the cores requested;
 *   a replica that requested no cpu is measured against one core. 100 = one requested core's
 *   worth busy; a replica spinning two cores with `cpu: 1` reads 200.
 * - memory: the newest reading's resident memory divided by the memory requested. A replica
 *   that requested no memory has no limit to measure against: it has no memory utilization
 *   (absent from `read`'s map) and a `memory` policy over it cannot act.
 *
 * What is sampled: the replicas `read` was asked about in the last `interestMs` (an autoscaler
 * reads the deployments whose policy needs these metrics, every evaluation), so nothing is
 * sampled while no policy uses them; the first read of a replica therefore finds no value yet.
 *
 * A replica without two readings in its window (just started, or its session restarted, which
 * resets its CPU counter) has no cpu value yet; one whose newest reading is older than three
 * intervals (gone, or the backend failing) has none at all.
 */
import type { ReplicaBackend, ReplicaUsage } from '../backends/backend.ts';
import type { ResourceSlots } from '../domain/session.ts';
import { type Clock, systemClock } from '../runtime/system-clock.ts';

export type ResourceMetric = 'cpu' | 'memory';

/** What the autoscaler reads (RuntimeDeps.resourceMetrics). */
export interface ResourceMetrics {
  /**
   * Utilization in percent per replica of `replicaIds` that has a value now; null when none
   * has (nothing could be sampled).
   */
  read(
    deploymentId: string,
    replicaIds: readonly string[],
    metric: ResourceMetric,
  ): Map<string, number> | null;
}

/** One reading of one replica. */
export interface UsageSample {
  /** epoch ms (the sampler's clock) */
  at: number;
  cpuSeconds: number;
  rssBytes: number;
}

export interface ResourceSampler extends ResourceMetrics {
  /** One sampling pass now (the timer runs one every intervalMs); resolves when it is done. */
  sample(): Promise<void>;
  /** The newest reading of a replica, with what it requested; undefined when there is none. */
  latest(replicaId: string): (UsageSample & { requested: ResourceSlots }) | undefined;
  /** Stops sampling. */
  close(): void;
}

export interface ResourceMetricsOptions {
  backend: Pick<ReplicaBackend, 'usage'>;
  /** Between sampling passes. Default 2000 ms. */
  intervalMs?: number;
  /** The CPU rate is taken over this much time. Default 10,000 ms. */
  windowMs?: number;
  /** Timestamps readings and schedules passes. Default the system clock. */
  clock?: Clock;
  /** The replicas to sample; default those `read` asked about in the last `interestMs`. */
  replicas?: () => Iterable<string> | Promise<Iterable<string>>;
  /** How long a replica `read` asked about is sampled without being asked again. Default 120 s. */
  interestMs?: number;
  /** Start the periodic passes at once. Default true; tests call sample() themselves. */
  autoStart?: boolean;
  log?: { warn(obj: object, msg?: string): void };
}

export const DEFAULT_SAMPLE_INTERVAL_MS = 2000;
export const DEFAULT_CPU_WINDOW_MS = 10_000;
export const DEFAULT_INTEREST_MS = 120_000;
/** Newest reading older than this many intervals: the replica has no value. */
const STALE_INTERVALS = 3;

/**
 * Percent of the requested cores used between two readings; null when no time passed between
 * them. A counter that went down (a new session of the replica) reads as no use.
 */
export function cpuUtilization(
  older: UsageSample,
  newer: UsageSample,
  requestedCores: number,
): number | null {
  const seconds = (newer.at - older.at) / 1000;
  if (!(seconds > 0)) return null;
  const cores = requestedCores > 0 ? requestedCores : 1;
  return (Math.max(0, newer.cpuSeconds - older.cpuSeconds) / seconds / cores) * 100;
}

/** Percent of the requested memory resident; null when no memory was requested (no limit). */
export function memoryUtilization(rssBytes: number, requestedBytes: number): number | null {
  return requestedBytes > 0 ? (rssBytes / requestedBytes) * 100 : null;
}

interface Series {
  /** Oldest first; the first is the newest reading at or before the window's start. */
  samples: UsageSample[];
  requested: ResourceSlots;
}

export function createResourceMetrics(opts: ResourceMetricsOptions): ResourceSampler {
  const clock = opts.clock ?? systemClock;
  const intervalMs = opts.intervalMs ?? DEFAULT_SAMPLE_INTERVAL_MS;
  const windowMs = opts.windowMs ?? DEFAULT_CPU_WINDOW_MS;
  const interestMs = opts.interestMs ?? DEFAULT_INTEREST_MS;
  /** Replica id -> when read() last asked about it. */
  const askedAt = new Map<string, number>();
  const replicas =
    opts.replicas ??
    (() => {
      const now = clock.now();
      for (const [id, at] of askedAt) if (now - at > interestMs) askedAt.delete(id);
      return askedAt.keys();
    });
  const series = new Map<string, Series>();
  let timer: unknown;
  let closed = false;
  let running: Promise<void> | undefined;
  let failing = false;

  function record(replicaId: string, usage: ReplicaUsage, at: number): void {
    const sample: UsageSample = { at, cpuSeconds: usage.cpuSeconds, rssBytes: usage.rssBytes };
    const s = series.get(replicaId);
    const last = s?.samples.at(-1);
    if (!s || !last || usage.cpuSeconds < last.cpuSeconds) {
      // First reading, or a new session whose counter started again.
      series.set(replicaId, { samples: [sample], requested: usage.requested });
      return;
    }
    s.requested = usage.requested;
    s.samples.push(sample);
    while (s.samples.length > 2 && s.samples[1]!.at <= at - windowMs) s.samples.shift();
  }

  async function pass(): Promise<void> {
    let ids: string[];
    try {
      ids = [...(await replicas())];
      const at = clock.now();
      const readings = await Promise.all(ids.map((id) => opts.backend.usage(id).catch(() => null)));
      ids.forEach((id, i) => {
        const usage = readings[i];
        if (usage) record(id, usage, at);
        else series.delete(id);
      });
      failing = false;
    } catch (err) {
      if (!failing) opts.log?.warn({ err }, 'sampling replica resource use failed; retrying');
      failing = true;
      return;
    }
    const wanted = new Set(ids);
    for (const id of series.keys()) if (!wanted.has(id)) series.delete(id);
  }

  function sample(): Promise<void> {
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  }

  function schedule(): void {
    if (closed) return;
    timer = clock.setTimeout(() => {
      void sample().finally(schedule);
    }, intervalMs);
    (timer as { unref?: () => void } | undefined)?.unref?.();
  }

  function utilizationOf(replicaId: string, metric: ResourceMetric, now: number): number | null {
    const s = series.get(replicaId);
    const newest = s?.samples.at(-1);
    if (!s || !newest || now - newest.at > STALE_INTERVALS * intervalMs) return null;
    if (metric === 'memory') return memoryUtilization(newest.rssBytes, s.requested.mem);
    const oldest = s.samples[0]!;
    return oldest === newest ? null : cpuUtilization(oldest, newest, s.requested.cpu);
  }

  if (opts.autoStart !== false) {
    void sample();
    schedule();
  }

  return {
    read(_deploymentId, replicaIds, metric) {
      const now = clock.now();
      const out = new Map<string, number>();
      for (const id of replicaIds) {
        askedAt.set(id, now);
        const v = utilizationOf(id, metric, now);
        if (v !== null) out.set(id, v);
      }
      return out.size > 0 ? out : null;
    },
    sample,
    latest(replicaId) {
      const s = series.get(replicaId);
      const newest = s?.samples.at(-1);
      return s && newest ? { ...newest, requested: { ...s.requested } } : undefined;
    },
    close() {
      closed = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    },
  };
}
