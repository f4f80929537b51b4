/**
 * The autoscaling loop. On each pass it reads the proxies' load reports once (load-windows.ts)
 * and, for every RUNNING deployment with a `scaling_policy`, reads the policy's metric, asks the
 * policy (policy.ts) and scales when it says so. It records in the deployment's history every
 * scaling operation, every evaluation that crossed a threshold and did not act (cooldown,
 * bounds, capacity, target), and the metric going missing ("autoscaling paused") and coming
 * back, each with its inputs. A hold is recorded when its cause changes, not at every pass.
 *
 * The cooldown's clock is the deployment's persisted `last_scaled_at` (manual scales set it
 * too), so a coordinator restart does not reset it. Panic mode is kept in memory: after a
 * restart nothing scales down until the windows are full again (policy.ts, `windowShortS`).
 */
import type { LoadReport } from './load-report.ts';
import { LoadWindows } from './load-windows.ts';
import {
  type Decision,
  type DecisionOutput,
  decide,
  type ResolvedPolicy,
  resolvePolicy,
  type ScalingPolicy,
  type TargetMetric,
} from './policy.ts';

/** A deployment as the autoscaler sees it. */
export interface ScalableDeployment {
  id: string;
  name: string;
  min_replicas: number;
  max_replicas: number;
  policy: ScalingPolicy | undefined;
  /** The last scaling operation, manual or automatic (epoch ms), or null. */
  lastScaledAt: number | null;
}

export interface ScalableReplica {
  id: string;
  routeId: string;
  state: string;
  leaving: boolean;
  waitingForCapacity: boolean;
}

/** The live state of a deployment, or null when it does not run here. */
export interface ScalableState {
  /** Top-level state (only RUNNING deployments are scaled). */
  state: string;
  /** Target replica count. */
  target: number;
  replicas: ScalableReplica[];
}

/** A history row the autoscaler writes (an event that changes no state). */
export interface ScalingRecord {
  deploymentId: string;
  event: 'autoscale.scaled' | 'autoscale.held' | 'autoscale.paused' | 'autoscale.resumed';
  reason: string;
  at: number;
}

export interface ScalingEvent {
  deployment_id: string;
  name: string;
  from: number;
  to: number;
  reason: string;
  at: string;
}

/** What `status` shows of a deployment's autoscaling. */
export interface AutoscalingStatus {
  metric: TargetMetric;
  /** `active`; `waiting` (metric not read yet, < 30 s); `paused` (no metric for 30 s). */
  state: 'active' | 'waiting' | 'paused';
  /** The last evaluation in one line (with its inputs). */
  last: string | null;
  /** Panic mode (concurrency) until this instant, or null. */
  panic_until: string | null;
}

/** Per-replica utilization % (engineer `usage`'s sampler; RuntimeDeps.resourceMetrics). */
export interface ResourceMetrics {
  read(
    deploymentId: string,
    replicaIds: readonly string[],
    metric: 'cpu' | 'memory',
  ): Map<string, number> | null;
}

export interface AutoscalerDeps {
  deployments(): Iterable<ScalableDeployment>;
  stateOf(deploymentId: string): ScalableState | null;
  /** The latest load report of every proxy that serves here (in-process and cluster). */
  loadReports(): Promise<LoadReport[]>;
  /** Requests in flight per route over every proxy (scale-in picks the least busy). */
  routeInflight?(): Promise<Map<string, number>>;
  resourceMetrics?: ResourceMetrics | undefined;
  /** Scales; `removalOrder` lists the replicas to remove first (least busy first). */
  scale(deploymentId: string, replicas: number, removalOrder: readonly string[]): Promise<unknown>;
  record(r: ScalingRecord): void;
  now: () => number;
  log?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

/** How long a metric may be missing before the deployment's status says autoscaling paused. */
export const METRIC_GRACE_S = 30;

const PROXY_METRICS: readonly TargetMetric[] = ['requests', 'latency', 'inflight', 'concurrency'];

interface Memory {
  missingSince: number | null;
  paused: boolean;
  panicUntil: number | null;
  /** The last recorded hold (`direction:cause`), so a lasting hold is recorded once. */
  holdKey: string | null;
  last: string | null;
  metric: TargetMetric;
}

interface MetricRead {
  /** Threshold metrics: per replica; concurrency: total stable demand. */
  value: number;
  panicValue?: number;
  /** Seconds of history in the window when it is not full yet. */
  windowShortS?: number;
  /** The inputs in words, for events. */
  detail: string;
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));

export class Autoscaler {
  private readonly memory = new Map<string, Memory>();
  private readonly listeners = new Set<(e: ScalingEvent) => void>();
  readonly windows = new LoadWindows();

  constructor(private readonly deps: AutoscalerDeps) {}

  onScaling(listener: (e: ScalingEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One pass over every deployment that has a scaling policy; returns the scalings done. */
  async evaluate(): Promise<ScalingEvent[]> {
    const now = this.deps.now();
    const reports = await this.deps.loadReports().catch((err: unknown) => {
      this.deps.log?.warn({ err }, 'reading proxy load reports failed');
      return [] as LoadReport[];
    });
    this.windows.ingest(reports, now);
    const done: ScalingEvent[] = [];
    for (const d of [...this.deps.deployments()]) {
      if (!d.policy) {
        this.memory.delete(d.id);
        continue;
      }
      const live = this.deps.stateOf(d.id);
      if (live?.state !== 'RUNNING') continue;
      // At zero replicas (scale to zero) a request activates it, not the autoscaler.
      if (live.target === 0) continue;
      const e = await this.evaluateOne(d, d.policy, live, now).catch((err: unknown) => {
        this.deps.log?.warn({ err, deployment: d.name }, 'autoscaling a deployment failed');
        return null;
      });
      if (e) done.push(e);
    }
    return done;
  }

  /** What `status` shows; null for a deployment without a policy or not evaluated yet. */
  statusOf(deploymentId: string): AutoscalingStatus | null {
    const m = this.memory.get(deploymentId);
    if (!m) return null;
    const now = this.deps.now();
    return {
      metric: m.metric,
      state: m.paused ? 'paused' : m.missingSince !== null ? 'waiting' : 'active',
      last: m.last,
      panic_until:
        m.panicUntil !== null && m.panicUntil > now ? new Date(m.panicUntil).toISOString() : null,
    };
  }

  /** The line `status` shows while autoscaling cannot act (null when it can). */
  pausedReason(deploymentId: string): string | null {
    const m = this.memory.get(deploymentId);
    return m?.paused ? m.last : null;
  }

  /** The deployment is gone. */
  forget(deploymentId: string): void {
    this.memory.delete(deploymentId);
    this.windows.forget(deploymentId);
  }

  private async evaluateOne(
    d: ScalableDeployment,
    policy: ScalingPolicy,
    live: ScalableState,
    now: number,
  ): Promise<ScalingEvent | null> {
    const p = resolvePolicy(policy, d);
    const mem = this.memoryOf(d.id, p.metric);
    const serving = live.replicas.filter((r) => !r.leaving && r.state !== 'TERMINATING');
    const healthy = serving.filter((r) => r.state === 'HEALTHY');
    const starting = serving.filter((r) => r.state === 'STARTING').length;
    const read = this.readMetric(d, p, healthy, now);
    if (!read) {
      mem.missingSince ??= now;
      const source = PROXY_METRICS.includes(p.metric) ? 'any proxy' : 'any HEALTHY replica';
      const missingS = Math.floor((now - mem.missingSince) / 1000);
      if (missingS >= METRIC_GRACE_S) {
        const line = `autoscaling paused: no metric \`${p.metric}\` from ${source} for ${METRIC_GRACE_S} s`;
        mem.last = line;
        if (!mem.paused) {
          mem.paused = true;
          this.record(d, 'autoscale.paused', line, now);
        }
      } else {
        mem.last = `autoscaling waiting: no metric \`${p.metric}\` from ${source} yet (${missingS} s)`;
      }
      return null;
    }
    if (mem.paused) {
      this.record(
        d,
        'autoscale.resumed',
        `autoscaling resumed: metric \`${p.metric}\` read again`,
        now,
      );
    }
    mem.paused = false;
    mem.missingSince = null;
    const out = decide({
      policy: p,
      current: live.target,
      healthy: healthy.length,
      starting,
      waitingForCapacity: serving.some((r) => r.waitingForCapacity),
      now,
      lastScaledAt: d.lastScaledAt,
      panicUntil: mem.panicUntil,
      value: read.value,
      ...(read.panicValue !== undefined ? { panicValue: read.panicValue } : {}),
      ...(read.windowShortS !== undefined ? { windowShortS: read.windowShortS } : {}),
    });
    mem.panicUntil = out.panicUntil;
    const inputs = inputsLine(p, read, out);
    const { decision } = out;
    if (decision.kind === 'steady') {
      mem.holdKey = null;
      mem.last = `steady: ${decision.why} | ${inputs}`;
      return null;
    }
    if (decision.kind === 'hold') {
      const line = `held ${decision.direction} (${decision.cause}) at ${live.target} replica(s): ${decision.why} | ${inputs}`;
      mem.last = line;
      const key = `${decision.direction}:${decision.cause}`;
      if (mem.holdKey !== key) {
        mem.holdKey = key;
        this.record(d, 'autoscale.held', line, now);
      }
      return null;
    }
    return this.apply(d, live, decision, inputs, now, mem);
  }

  private async apply(
    d: ScalableDeployment,
    live: ScalableState,
    decision: Extract<Decision, { kind: 'scale' }>,
    inputs: string,
    now: number,
    mem: Memory,
  ): Promise<ScalingEvent> {
    const from = live.target;
    let order: string[] = [];
    let victim = '';
    if (decision.direction === 'down') {
      const inflight = (await this.deps.routeInflight?.().catch(() => null)) ?? new Map();
      order = removalOrder(live.replicas, inflight);
      const first = order[0];
      const r = live.replicas.find((x) => x.id === first);
      if (r) victim = `; removes ${r.id} (${r.state}, ${inflight.get(r.routeId) ?? 0} in flight)`;
    }
    await this.deps.scale(d.id, decision.to, order);
    const reason = `scaled ${from} -> ${decision.to} (${decision.direction}${decision.panic ? ', panic' : ''}): ${decision.why}${victim} | ${inputs}`;
    mem.holdKey = null;
    mem.last = reason;
    this.record(d, 'autoscale.scaled', reason, now);
    const e: ScalingEvent = {
      deployment_id: d.id,
      name: d.name,
      from,
      to: decision.to,
      reason,
      at: new Date(now).toISOString(),
    };
    this.deps.log?.info({ ...e }, 'autoscaled');
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.deps.log?.warn({ err }, 'scaling listener threw');
      }
    }
    return e;
  }

  private readMetric(
    d: ScalableDeployment,
    p: ResolvedPolicy,
    healthy: ScalableReplica[],
    now: number,
  ): MetricRead | null {
    const perReplica = Math.max(1, healthy.length);
    if (p.metric === 'cpu' || p.metric === 'memory') {
      if (healthy.length === 0) return null;
      const values = this.deps.resourceMetrics?.read(
        d.id,
        healthy.map((r) => r.id),
        p.metric,
      );
      const known = values ? [...values.values()].filter((v) => Number.isFinite(v)) : [];
      if (known.length === 0) return null;
      const avg = known.reduce((a, b) => a + b, 0) / known.length;
      return {
        value: avg,
        detail: `${p.metric} ${fmt(avg)} % averaged over ${known.length} HEALTHY replica(s)`,
      };
    }
    const stable = this.windows.read(d.id, p.stableS, now);
    if (!stable) return null;
    // Whole slices: a window within one evaluation of its length counts as full.
    const short = stable.spanS < p.stableS * 0.9 ? { windowShortS: stable.spanS } : {};
    switch (p.metric) {
      case 'requests': {
        const v = stable.requestsPerS / perReplica;
        return {
          ...short,
          value: v,
          detail: `requests ${fmt(stable.requestsPerS)}/s over ${fmt(stable.spanS)} s on ${perReplica} HEALTHY replica(s)`,
        };
      }
      case 'latency': {
        // No request answered in the window: an idle deployment has no latency to speak of.
        const v = stable.p95Ms ?? 0;
        return {
          ...short,
          value: v,
          detail: `latency p95 ${fmt(v)} ms, p50 ${fmt(stable.p50Ms ?? 0)} ms over ${fmt(stable.spanS)} s`,
        };
      }
      case 'inflight': {
        const v = stable.demandNow / perReplica;
        return {
          value: v,
          detail: `inflight ${stable.demandNow} (in flight + queued now) on ${perReplica} HEALTHY replica(s)`,
        };
      }
      default: {
        const burst = this.windows.read(d.id, p.panicS, now) ?? stable;
        return {
          ...short,
          value: stable.concurrency,
          panicValue: burst.concurrency,
          detail: `concurrency ${fmt(stable.concurrency)} over ${fmt(stable.spanS)} s (stable window ${fmt(p.stableS)} s), ${fmt(burst.concurrency)} over the panic window ${fmt(p.panicS)} s, ${stable.demandNow} now`,
        };
      }
    }
  }

  private memoryOf(id: string, metric: TargetMetric): Memory {
    let m = this.memory.get(id);
    if (!m || m.metric !== metric) {
      m = {
        missingSince: null,
        paused: false,
        panicUntil: null,
        holdKey: null,
        last: null,
        metric,
      };
      this.memory.set(id, m);
    }
    return m;
  }

  private record(d: ScalableDeployment, event: ScalingRecord['event'], reason: string, at: number) {
    try {
      this.deps.record({ deploymentId: d.id, event, reason, at });
    } catch (err) {
      this.deps.log?.warn({ err }, 'recording an autoscaling event failed');
    }
  }
}

/** The inputs of a decision in words: metric and window, value per replica, thresholds... */
function inputsLine(p: ResolvedPolicy, read: MetricRead, out: DecisionOutput): string {
  const thresholds =
    p.metric === 'concurrency'
      ? `target ${fmt(p.target)} per replica, panic at ${fmt(2 * p.target)}`
      : `target ${fmt(p.target)}, up ${fmt(p.up)}, down ${fmt(p.down)}`;
  return `${read.detail}; value per replica ${fmt(out.perReplica)}; ${thresholds}; bounds ${p.min}..${p.max}; cooldown ${fmt(p.cooldownS)} s (${out.cooldownLeftS} s left)`;
}

/**
 * Which replicas a scale-in removes first: those serving nothing (STARTING, UNHEALTHY), then
 * the fewest requests in flight, then the newest. The deployment machine applies the same
 * state rank itself and uses this order inside it (machines/deployment.ts, planReplicas).
 */
export function removalOrder(
  replicas: readonly ScalableReplica[],
  inflight: ReadonlyMap<string, number>,
): string[] {
  const rank = (r: ScalableReplica) =>
    r.state === 'STARTING' ? 0 : r.state === 'UNHEALTHY' ? 1 : 2;
  return replicas
    .filter((r) => !r.leaving && r.state !== 'TERMINATING' && r.state !== 'TERMINATED')
    .map((r, i) => ({ r, i }))
    .sort(
      (a, b) =>
        rank(a.r) - rank(b.r) ||
        (inflight.get(a.r.routeId) ?? 0) - (inflight.get(b.r.routeId) ?? 0) ||
        b.i - a.i,
    )
    .map(({ r }) => r.id);
}
